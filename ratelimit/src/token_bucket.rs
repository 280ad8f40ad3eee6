//! A token bucket: bursts up to its size, refills at a constant rate.

use crate::clock::{Clock, DefaultClock};
use crate::error::{ConfigError, Denied};
use crate::gcra::Gcra;
use crate::limiter::Limiter;

/// A lock-free token bucket of `burst` tokens refilled at `rate_per_sec`.
///
/// A full bucket lets `burst` requests through at once; after that exactly
/// `rate_per_sec` pass per second. The state is one `AtomicU64` (the GCRA
/// "theoretical arrival time", as in governor), updated with a
/// compare-and-swap: no lock, no background task, `Send + Sync`.
///
/// The refill interval is `10⁹ / rate` nanoseconds rounded up, so the rate is
/// exact when it divides 10⁹ and otherwise never above the configured one.
///
/// A rate or burst of 0 given to [`TokenBucket::new`] builds a bucket that
/// denies every request with [`DenyReason::ExceedsCapacity`](crate::DenyReason::ExceedsCapacity);
/// [`TokenBucket::try_new`] reports it as an error instead.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use seckill_ratelimit::{ManualClock, TokenBucket};
///
/// let clock = ManualClock::new();
/// let bucket = TokenBucket::with_clock(100, 10, clock.clone());
/// for _ in 0..10 {
///     assert!(bucket.try_acquire(1).is_ok()); // the burst
/// }
/// let denied = bucket.try_acquire(1).unwrap_err();
/// assert_eq!(denied.retry_after, Duration::from_millis(10)); // 1/100 s
/// clock.advance(denied.retry_after);
/// assert!(bucket.try_acquire(1).is_ok());
/// ```
#[derive(Debug)]
pub struct TokenBucket<C: Clock = DefaultClock> {
    cell: Gcra,
    clock: C,
}

impl TokenBucket<DefaultClock> {
    /// A full bucket of `burst` tokens refilled at `rate_per_sec`, on the default clock.
    ///
    /// # Panics
    ///
    /// Never. A zero rate or burst gives a bucket that denies everything (see above).
    pub fn new(rate_per_sec: u32, burst: u32) -> Self {
        Self::with_clock(rate_per_sec, burst, DefaultClock::default())
    }

    /// Like [`TokenBucket::new`], rejecting a zero rate or burst.
    ///
    /// # Errors
    ///
    /// [`ConfigError::ZeroRate`] or [`ConfigError::ZeroCapacity`].
    ///
    /// # Examples
    ///
    /// ```
    /// use seckill_ratelimit::{ConfigError, TokenBucket};
    ///
    /// assert_eq!(TokenBucket::try_new(0, 10).unwrap_err(), ConfigError::ZeroRate);
    /// assert!(TokenBucket::try_new(5, 10).is_ok());
    /// ```
    pub fn try_new(rate_per_sec: u32, burst: u32) -> Result<Self, ConfigError> {
        Self::try_with_clock(rate_per_sec, burst, DefaultClock::default())
    }
}

impl<C: Clock> TokenBucket<C> {
    /// A full bucket on the given clock (a [`ManualClock`](crate::ManualClock) in tests).
    pub fn with_clock(rate_per_sec: u32, burst: u32, clock: C) -> Self {
        Self {
            cell: Gcra::new(rate_per_sec, burst),
            clock,
        }
    }

    /// Like [`TokenBucket::with_clock`], rejecting a zero rate or burst.
    ///
    /// # Errors
    ///
    /// [`ConfigError::ZeroRate`] or [`ConfigError::ZeroCapacity`].
    pub fn try_with_clock(rate_per_sec: u32, burst: u32, clock: C) -> Result<Self, ConfigError> {
        check_rate(rate_per_sec, burst)?;
        Ok(Self::with_clock(rate_per_sec, burst, clock))
    }

    /// Takes `n` tokens now, or says how long until they are there.
    /// `n == 0` always passes.
    ///
    /// # Errors
    ///
    /// [`Denied`] with the exact `retry_after` when fewer than `n` tokens are
    /// left; with [`DenyReason::ExceedsCapacity`](crate::DenyReason::ExceedsCapacity)
    /// (and `retry_after == Duration::MAX`) when `n > burst`.
    #[inline]
    pub fn try_acquire(&self, n: u32) -> Result<(), Denied> {
        self.cell.try_acquire(n, self.clock.now())
    }

    /// Tokens refilled per second, as applied (see the rounding above; 0 for
    /// a bucket built with a zero rate or burst).
    pub fn rate(&self) -> u32 {
        self.cell.rate()
    }

    /// The bucket size (0 for a bucket built with a zero rate or burst).
    pub fn burst(&self) -> u32 {
        self.cell.capacity()
    }
}

impl<C: Clock> Limiter for TokenBucket<C> {
    type Clock = C;

    fn clock(&self) -> &C {
        &self.clock
    }

    #[inline]
    fn try_acquire_at(&self, n: u32, now: u64) -> Result<(), Denied> {
        self.cell.try_acquire(n, now)
    }

    fn idle_from(&self, _now: u64) -> u64 {
        self.cell.idle_from()
    }
}

/// Rejects a zero rate or capacity.
pub(crate) fn check_rate(rate_per_sec: u32, capacity: u32) -> Result<(), ConfigError> {
    if rate_per_sec == 0 {
        return Err(ConfigError::ZeroRate);
    }
    if capacity == 0 {
        return Err(ConfigError::ZeroCapacity);
    }
    Ok(())
}
