//! Where limiters read the time: a trait, the real clocks and a manual clock for tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A monotonic source of time for the in-process limiters.
///
/// `now` returns nanoseconds elapsed since an origin fixed when the clock was
/// created. It must never go backwards; it may stand still (a manual clock).
/// Clocks are cheap to clone and every clone shares one origin.
///
/// # Examples
///
/// ```
/// use seckill_ratelimit::{Clock, ManualClock};
///
/// let clock = ManualClock::new();
/// assert_eq!(clock.now(), 0);
/// clock.advance(std::time::Duration::from_millis(3));
/// assert_eq!(clock.now(), 3_000_000);
/// ```
pub trait Clock: Clone + Send + Sync + 'static {
    /// Nanoseconds since this clock's origin.
    fn now(&self) -> u64;
}

/// The clock limiters use unless given another.
///
/// With the default `quanta` feature this is [`QuantaClock`] (a calibrated
/// CPU counter, the cheapest to read); without it, [`StdClock`].
#[cfg(feature = "quanta")]
pub type DefaultClock = QuantaClock;

/// The clock limiters use unless given another.
///
/// With the default `quanta` feature this is `QuantaClock` (a calibrated
/// CPU counter, the cheapest to read); without it, [`StdClock`].
#[cfg(not(feature = "quanta"))]
pub type DefaultClock = StdClock;

/// The operating system's monotonic clock ([`std::time::Instant`]).
///
/// Zero-sized: every `StdClock` shares one process-wide origin, so limiters
/// built at different times agree on the time (which [`Keyed`](crate::Keyed)
/// relies on).
///
/// # Examples
///
/// ```
/// use seckill_ratelimit::{Clock, StdClock};
///
/// let clock = StdClock::new();
/// let a = clock.now();
/// assert!(clock.now() >= a);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct StdClock;

impl StdClock {
    /// The process-wide monotonic clock.
    pub fn new() -> Self {
        Self
    }
}

impl Clock for StdClock {
    #[inline]
    fn now(&self) -> u64 {
        static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        saturating_nanos(ORIGIN.get_or_init(std::time::Instant::now).elapsed())
    }
}

/// A calibrated CPU time-stamp counter (the `quanta` crate), falling back to
/// the operating system's monotonic clock where the counter is not reliable.
///
/// Zero-sized: every `QuantaClock` shares one process-wide origin, so
/// limiters built at different times agree on the time (which
/// [`Keyed`](crate::Keyed) relies on).
///
/// # Examples
///
/// ```
/// use seckill_ratelimit::{Clock, QuantaClock};
///
/// let clock = QuantaClock::new();
/// let a = clock.now();
/// assert!(clock.now() >= a);
/// ```
#[cfg(feature = "quanta")]
#[derive(Debug, Clone, Copy, Default)]
pub struct QuantaClock;

#[cfg(feature = "quanta")]
impl QuantaClock {
    /// The process-wide TSC clock (calibrated on first use).
    pub fn new() -> Self {
        Self
    }
}

#[cfg(feature = "quanta")]
impl Clock for QuantaClock {
    #[inline]
    fn now(&self) -> u64 {
        static CLOCK: std::sync::OnceLock<(quanta::Clock, u64)> = std::sync::OnceLock::new();
        let (clock, origin) = CLOCK.get_or_init(|| {
            let clock = quanta::Clock::new();
            let origin = clock.raw();
            (clock, origin)
        });
        clock.delta_as_nanos(*origin, clock.raw())
    }
}

/// Tokio's clock ([`tokio::time::Instant`]).
///
/// Under `#[tokio::test(start_paused = true)]` this clock moves only when the
/// runtime auto-advances or `tokio::time::advance` is called, so the limiter's
/// arithmetic and the pacer's sleeps see one virtual time.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use seckill_ratelimit::{Clock, TokioClock};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let clock = TokioClock::new();
/// tokio::time::sleep(Duration::from_secs(1)).await;
/// assert_eq!(clock.now(), 1_000_000_000);
/// # }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    origin: tokio::time::Instant,
}

impl TokioClock {
    /// A clock whose origin is tokio's now.
    pub fn new() -> Self {
        Self {
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    #[inline]
    fn now(&self) -> u64 {
        saturating_nanos(tokio::time::Instant::now().saturating_duration_since(self.origin))
    }
}

/// A clock that moves only when told to: for deterministic tests.
///
/// Clones share the same time.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use seckill_ratelimit::{ManualClock, TokenBucket};
///
/// let clock = ManualClock::new();
/// let bucket = TokenBucket::with_clock(1, 1, clock.clone());
/// assert!(bucket.try_acquire(1).is_ok());
/// assert!(bucket.try_acquire(1).is_err());
/// clock.advance(Duration::from_secs(1));
/// assert!(bucket.try_acquire(1).is_ok());
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock standing at 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward by `by` (saturating at `u64::MAX` nanoseconds).
    pub fn advance(&self, by: Duration) {
        let by = saturating_nanos(by);
        let _ = self
            .nanos
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                Some(now.saturating_add(by))
            });
    }

    /// Moves the clock to `nanos` since its origin; a time in the past is ignored
    /// (the clock never goes backwards).
    pub fn set(&self, nanos: u64) {
        self.nanos.fetch_max(nanos, Ordering::AcqRel);
    }
}

impl Clock for ManualClock {
    #[inline]
    fn now(&self) -> u64 {
        self.nanos.load(Ordering::Acquire)
    }
}

/// A duration in nanoseconds, saturating at `u64::MAX` (584 years).
pub(crate) fn saturating_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
