//! A token bucket: bursts up to its size, refills at a constant rate.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::clock::{Clock, DefaultClock};
use crate::error::{ConfigError, Denied};
use crate::gcra::Gcra;
use crate::limiter::{KeyedLimiter, Limiter};
use crate::range::check_gcra;

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
/// Valid ranges (checked by [`TokenBucket::try_new`], which names the
/// argument and its range in a [`ConfigError::OutOfRange`]):
///
/// | argument | valid range |
/// |---|---|
/// | `rate_per_sec` | 1 to [`MAX_RATE_PER_SEC`](crate::MAX_RATE_PER_SEC) (10⁹: one per nanosecond) |
/// | `burst` | 1 to `u32::MAX` |
///
/// [`TokenBucket::new`] never fails: a rate or burst of 0 builds a bucket
/// that denies every request with
/// [`DenyReason::ExceedsCapacity`](crate::DenyReason::ExceedsCapacity), and a
/// rate above 10⁹ is applied as 10⁹. No argument can overflow the arithmetic:
/// `burst · interval` is at most `u32::MAX · 10⁹ < 2⁶⁴` nanoseconds.
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
    /// Never. A zero rate or burst gives a bucket that denies everything, a
    /// rate above 10⁹ is applied as 10⁹ (see above).
    pub fn new(rate_per_sec: u32, burst: u32) -> Self {
        Self::with_clock(rate_per_sec, burst, DefaultClock::default())
    }

    /// Like [`TokenBucket::new`], rejecting an argument outside its range:
    /// `rate_per_sec` 1 to 10⁹, `burst` 1 to `u32::MAX`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::OutOfRange`] naming `rate_per_sec` or `burst`.
    ///
    /// # Examples
    ///
    /// ```
    /// use seckill_ratelimit::TokenBucket;
    ///
    /// let err = TokenBucket::try_new(0, 10).unwrap_err();
    /// assert_eq!(err.to_string(), "rate_per_sec must be 1 to 1000000000, got 0");
    /// assert!(TokenBucket::try_new(5, 10).is_ok());
    /// ```
    pub fn try_new(rate_per_sec: u32, burst: u32) -> Result<Self, ConfigError> {
        Self::try_with_clock(rate_per_sec, burst, DefaultClock::default())
    }
}

impl<C: Clock> TokenBucket<C> {
    /// A full bucket on the given clock (a [`ManualClock`](crate::ManualClock) in tests).
    ///
    /// # Panics
    ///
    /// Never; out-of-range arguments as in [`TokenBucket::new`].
    pub fn with_clock(rate_per_sec: u32, burst: u32, clock: C) -> Self {
        Self {
            cell: Gcra::new(rate_per_sec, burst),
            clock,
        }
    }

    /// Like [`TokenBucket::with_clock`], rejecting an argument outside its
    /// range (as [`TokenBucket::try_new`]).
    ///
    /// # Errors
    ///
    /// [`ConfigError::OutOfRange`] naming `rate_per_sec` or `burst`.
    pub fn try_with_clock(rate_per_sec: u32, burst: u32, clock: C) -> Result<Self, ConfigError> {
        check_gcra(rate_per_sec, burst, "burst")?;
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

impl<C: Clock> KeyedLimiter for TokenBucket<C> {
    /// The cell's TAT alone.
    type State = AtomicU64;

    fn new_state(&self) -> AtomicU64 {
        AtomicU64::new(0)
    }

    #[inline]
    fn try_acquire_state(&self, state: &AtomicU64, n: u32, now: u64) -> Result<(), Denied> {
        self.cell.rate.try_acquire(state, n, now)
    }

    fn state_idle_from(&self, state: &AtomicU64, _now: u64) -> u64 {
        state.load(Ordering::Acquire)
    }
}
