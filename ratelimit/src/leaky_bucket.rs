//! A leaky bucket: as a meter it rejects what would overflow; as a pacer it
//! spaces callers at a constant rate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::clock::{Clock, DefaultClock};
use crate::error::{ConfigError, Denied};
use crate::gcra::Gcra;
use crate::limiter::{KeyedLimiter, Limiter};
use crate::range::check_gcra;

/// A lock-free leaky bucket that drains `rate_per_sec` units per second and
/// holds at most `capacity`.
///
/// - **Meter** ([`LeakyBucket::try_acquire`]): a request pours `n` units in;
///   it passes if the bucket does not overflow, otherwise it is denied with
///   the time until enough has leaked out. (Mathematically the same as a
///   token bucket with `burst = capacity`.)
/// - **Pacer** ([`LeakyBucket::acquire`]): every caller books the next free
///   slot and sleeps until it, so what leaves is a constant stream of one
///   unit per `1/rate` — no burst at all, whatever the capacity.
///
/// Both views share one `AtomicU64` (the time the bucket will be empty).
///
/// Valid ranges (checked by [`LeakyBucket::try_new`], which names the
/// argument and its range in a [`ConfigError::OutOfRange`]):
///
/// | argument | valid range |
/// |---|---|
/// | `rate_per_sec` | 1 to [`MAX_RATE_PER_SEC`](crate::MAX_RATE_PER_SEC) (10⁹: one per nanosecond) |
/// | `capacity` | 1 to `u32::MAX` |
/// | `n` of [`LeakyBucket::acquire_many`] | any `u32` (0 returns at once) |
///
/// [`LeakyBucket::new`] never fails: a rate or capacity of 0 builds a
/// bucket that denies every metered request and whose pacer never grants,
/// and a rate above 10⁹ is applied as 10⁹. The pacer's bookings saturate at
/// `u64::MAX` nanoseconds of the clock (584 years) instead of overflowing.
///
/// # Examples
///
/// ```
/// use seckill_ratelimit::LeakyBucket;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let pacer = LeakyBucket::new(1_000, 1);
/// let start = tokio::time::Instant::now();
/// for _ in 0..5 {
///     pacer.acquire().await; // one call per millisecond
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct LeakyBucket<C: Clock = DefaultClock> {
    cell: Gcra,
    clock: C,
}

impl LeakyBucket<DefaultClock> {
    /// An empty bucket of `capacity` draining at `rate_per_sec`, on the default clock.
    ///
    /// # Panics
    ///
    /// Never. A zero rate or capacity gives a bucket that never grants, a
    /// rate above 10⁹ is applied as 10⁹ (see above).
    pub fn new(rate_per_sec: u32, capacity: u32) -> Self {
        Self::with_clock(rate_per_sec, capacity, DefaultClock::default())
    }

    /// Like [`LeakyBucket::new`], rejecting an argument outside its range:
    /// `rate_per_sec` 1 to 10⁹, `capacity` 1 to `u32::MAX`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::OutOfRange`] naming `rate_per_sec` or `capacity`.
    ///
    /// # Examples
    ///
    /// ```
    /// use seckill_ratelimit::LeakyBucket;
    ///
    /// let err = LeakyBucket::try_new(2_000_000_000, 10).unwrap_err();
    /// assert_eq!(err.to_string(), "rate_per_sec must be 1 to 1000000000, got 2000000000");
    /// ```
    pub fn try_new(rate_per_sec: u32, capacity: u32) -> Result<Self, ConfigError> {
        Self::try_with_clock(rate_per_sec, capacity, DefaultClock::default())
    }
}

impl<C: Clock> LeakyBucket<C> {
    /// An empty bucket on the given clock.
    ///
    /// For the pacer under tokio's paused clock, use [`TokioClock`](crate::TokioClock)
    /// so the bucket's time and the sleeps agree.
    ///
    /// # Panics
    ///
    /// Never; out-of-range arguments as in [`LeakyBucket::new`].
    pub fn with_clock(rate_per_sec: u32, capacity: u32, clock: C) -> Self {
        Self {
            cell: Gcra::new(rate_per_sec, capacity),
            clock,
        }
    }

    /// Like [`LeakyBucket::with_clock`], rejecting an argument outside its
    /// range (as [`LeakyBucket::try_new`]).
    ///
    /// # Errors
    ///
    /// [`ConfigError::OutOfRange`] naming `rate_per_sec` or `capacity`.
    pub fn try_with_clock(rate_per_sec: u32, capacity: u32, clock: C) -> Result<Self, ConfigError> {
        check_gcra(rate_per_sec, capacity, "capacity")?;
        Ok(Self::with_clock(rate_per_sec, capacity, clock))
    }

    /// Meter: pours `n` units in if they fit, without waiting. `n == 0` always passes.
    ///
    /// # Errors
    ///
    /// [`Denied`] with the exact time until `n` units fit; with
    /// [`DenyReason::ExceedsCapacity`](crate::DenyReason::ExceedsCapacity)
    /// when `n > capacity`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use seckill_ratelimit::{LeakyBucket, ManualClock};
    ///
    /// let meter = LeakyBucket::with_clock(2, 3, ManualClock::new());
    /// assert!(meter.try_acquire(3).is_ok());
    /// assert_eq!(meter.try_acquire(1).unwrap_err().retry_after, Duration::from_millis(500));
    /// ```
    #[inline]
    pub fn try_acquire(&self, n: u32) -> Result<(), Denied> {
        self.cell.try_acquire(n, self.clock.now())
    }

    /// Pacer: waits for this caller's slot, so callers leave one per `1/rate`.
    ///
    /// Callers are served in the order they call; the queue is unbounded
    /// (bound it with a timeout or by metering first). On a bucket built with
    /// a zero rate or capacity this never completes.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before its slot gives the slot back if no later
    /// caller booked after it; otherwise the slot is skipped (a gap in the
    /// output, never an excess).
    pub async fn acquire(&self) {
        self.acquire_many(1).await;
    }

    /// Pacer for `n` units at once: waits for the first of `n` consecutive
    /// slots and books them all (the next caller waits `n/rate` longer).
    ///
    /// # Cancel safety
    ///
    /// As [`LeakyBucket::acquire`].
    pub async fn acquire_many(&self, n: u32) {
        if n == 0 {
            return;
        }
        let Some((wait, booked)) = self.cell.reserve(n, self.clock.now()) else {
            std::future::pending::<()>().await;
            return;
        };
        if wait == 0 {
            return;
        }
        let mut booking = Booking {
            cell: &self.cell,
            n,
            booked,
            done: false,
        };
        tokio::time::sleep(Duration::from_nanos(wait)).await;
        booking.done = true;
    }

    /// Units drained per second, as applied (0 for a bucket built with a
    /// zero rate or capacity).
    pub fn rate(&self) -> u32 {
        self.cell.rate()
    }

    /// The bucket size (0 for a bucket built with a zero rate or capacity).
    pub fn capacity(&self) -> u32 {
        self.cell.capacity()
    }

    /// The spacing between two paced callers.
    pub fn interval(&self) -> Duration {
        Duration::from_nanos(self.cell.interval())
    }
}

/// Gives a booked slot back if the waiting future is dropped.
struct Booking<'a> {
    cell: &'a Gcra,
    n: u32,
    booked: u64,
    done: bool,
}

impl Drop for Booking<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.cell.cancel(self.n, self.booked);
        }
    }
}

impl<C: Clock> Limiter for LeakyBucket<C> {
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

impl<C: Clock> KeyedLimiter for LeakyBucket<C> {
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
