//! Why a limiter said no, and why a configuration is rejected.

use std::time::Duration;

/// A request the limiter turned away.
///
/// `retry_after` is the shortest wait after which the same request would pass
/// if nobody else takes the capacity first. It is exact for the in-process
/// limiters and for the Redis ones (to the microsecond of Redis's clock).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use seckill_ratelimit::{DenyReason, ManualClock, TokenBucket};
///
/// let bucket = TokenBucket::with_clock(10, 1, ManualClock::new());
/// bucket.try_acquire(1).unwrap();
/// let denied = bucket.try_acquire(1).unwrap_err();
/// assert_eq!(denied.retry_after, Duration::from_millis(100));
/// assert_eq!(denied.reason, DenyReason::RateExceeded);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error("rate limited: {reason}; retry after {retry_after:?}")]
#[non_exhaustive]
pub struct Denied {
    /// How long to wait before the same request can pass.
    /// [`Duration::MAX`] when it never can (see [`DenyReason::ExceedsCapacity`]).
    pub retry_after: Duration,
    /// Why the request was denied.
    pub reason: DenyReason,
}

impl Denied {
    pub(crate) fn rate_exceeded(retry_after: Duration) -> Self {
        Self {
            retry_after,
            reason: DenyReason::RateExceeded,
        }
    }

    pub(crate) fn exceeds_capacity() -> Self {
        Self {
            retry_after: Duration::MAX,
            reason: DenyReason::ExceedsCapacity,
        }
    }

    /// The duration to send in an HTTP `Retry-After` header: whole seconds,
    /// rounded up, at least 1.
    ///
    /// # Examples
    ///
    /// ```
    /// use seckill_ratelimit::{ManualClock, TokenBucket};
    ///
    /// let bucket = TokenBucket::with_clock(10, 1, ManualClock::new());
    /// bucket.try_acquire(1).unwrap();
    /// assert_eq!(bucket.try_acquire(1).unwrap_err().retry_after_secs(), 1);
    /// ```
    pub fn retry_after_secs(&self) -> u64 {
        let secs = self.retry_after.as_secs();
        let secs = if self.retry_after.subsec_nanos() > 0 {
            secs.saturating_add(1)
        } else {
            secs
        };
        secs.max(1)
    }
}

/// Why a request was denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DenyReason {
    /// Over the limit now; it passes after `retry_after`.
    RateExceeded,
    /// The request asks for more than the limiter can ever grant at once
    /// (`n` above the burst, capacity or window limit, or a limiter built with
    /// a zero rate or limit). Retrying never helps.
    ExceedsCapacity,
    /// The shared store (Redis) failed and the limiter's failure policy is to
    /// fail closed.
    BackendUnavailable,
}

impl std::fmt::Display for DenyReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DenyReason::RateExceeded => "over the rate limit",
            DenyReason::ExceedsCapacity => {
                "the request asks for more than the limiter can ever grant at once"
            }
            DenyReason::BackendUnavailable => {
                "the rate-limit store is unavailable and the policy is to fail closed"
            }
        })
    }
}

/// A limiter configuration that cannot work, reported by the `try_new`
/// constructors and the `try_` builders.
///
/// The in-process limiters and [`Keyed`](crate::Keyed) report
/// [`ConfigError::OutOfRange`] and [`ConfigError::DurationOutOfRange`], which
/// name the argument and its valid range; the four older variants are no
/// longer returned by them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The rate is 0 per second: nothing would ever be replenished.
    #[error("the rate is 0: give at least 1 request per second")]
    ZeroRate,
    /// The burst, capacity or window limit is 0: nothing would ever pass.
    #[error("the burst/capacity/limit is 0: give at least 1")]
    ZeroCapacity,
    /// A sliding window limit above 16,777,216: the in-process log keeps
    /// 16 bytes per unit of limit (256 MiB at this bound).
    #[error(
        "the sliding window limit is above 16,777,216: use a token bucket for limits this large"
    )]
    LimitTooLarge,
    /// The window is shorter than 1 millisecond (Redis keeps time in
    /// microseconds and expiries in milliseconds).
    #[error("the window is shorter than 1 ms: give a window of at least 1 millisecond")]
    WindowTooShort,
    /// A number outside its documented range (the in-process constructors
    /// and builders): `field` names the argument, `range` its valid values.
    #[error("{field} must be {range}, got {got}")]
    OutOfRange {
        /// The argument, as named in the constructor (`rate_per_sec`, `burst`, `max_keys`…).
        field: &'static str,
        /// The valid values, e.g. `1 to 1000000000`.
        range: &'static str,
        /// The value given.
        got: u64,
    },
    /// A duration outside its documented range (the in-process constructors
    /// and builders): `field` names the argument, `range` its valid values.
    #[error("{field} must be {range}, got {got:?}")]
    DurationOutOfRange {
        /// The argument, as named in the constructor (`window`, `idle_ttl`).
        field: &'static str,
        /// The valid values, e.g. `1 ms to 584 years (u64::MAX ns)`.
        range: &'static str,
        /// The duration given.
        got: Duration,
    },
}
