//! Which algorithm a Redis limiter runs, with its parameters.

use std::time::Duration;

use super::config;
use crate::error::ConfigError;

/// The algorithm and limits of a [`RedisLimiter`](crate::RedisLimiter); the
/// same four as in process, with the same meaning.
///
/// Valid ranges, checked by [`Algorithm::validate`] (and so by
/// [`RedisLimiter::new`](crate::RedisLimiter::new)):
///
/// | field | range |
/// |---|---|
/// | `rate_per_sec`, `burst`, `capacity`, `limit` | 1 to 4,294,967,295 (`u32::MAX`) |
/// | `burst / rate_per_sec`, `capacity / rate_per_sec` (full refill / drain time) | at most 365 days |
/// | `window` | 1 ms to 365 days (31,536,000,000 ms), rounded up to whole ms |
///
/// Every key a script writes expires within that time (+ 1 ms), and no
/// value makes a script's work grow: each call costs O(1) commands (the
/// sliding window O(log n) in its sorted set, with one member per admitted
/// call, whatever `limit` or the number of permits asked).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use seckill_ratelimit::Algorithm;
///
/// let per_user = Algorithm::TokenBucket { rate_per_sec: 5, burst: 10 };
/// let per_ip = Algorithm::SlidingWindow { limit: 100, window: Duration::from_secs(60) };
/// assert!(per_user.validate().is_ok() && per_ip.validate().is_ok());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Algorithm {
    /// A burst of `burst`, then `rate_per_sec` per second.
    TokenBucket {
        /// Tokens refilled per second.
        rate_per_sec: u32,
        /// The bucket size.
        burst: u32,
    },
    /// Drains `rate_per_sec` per second, holds `capacity`: a meter with
    /// `try_acquire`, a pacer with `acquire`.
    LeakyBucket {
        /// Units drained per second.
        rate_per_sec: u32,
        /// The bucket size.
        capacity: u32,
    },
    /// At most `limit` in any window of length `window` (whole milliseconds,
    /// rounded up).
    SlidingWindow {
        /// Admissions per window.
        limit: u32,
        /// The window length.
        window: Duration,
    },
    /// At most `limit` per window aligned to the Unix epoch (whole
    /// milliseconds, rounded up).
    FixedWindow {
        /// Admissions per window.
        limit: u32,
        /// The window length.
        window: Duration,
    },
}

impl Algorithm {
    /// Checks every field is in its range (see the table above).
    ///
    /// # Errors
    ///
    /// [`ConfigError::OutOfRange`] or [`ConfigError::DurationOutOfRange`] naming the first field out of range,
    /// its range and the value given.
    ///
    /// # Examples
    ///
    /// ```
    /// use seckill_ratelimit::Algorithm;
    ///
    /// let err = Algorithm::TokenBucket { rate_per_sec: 0, burst: 10 }.validate().unwrap_err();
    /// assert_eq!(err.to_string(), "rate_per_sec must be 1 to 4294967295, got 0");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        match *self {
            Algorithm::TokenBucket {
                rate_per_sec,
                burst,
            } => check_bucket(rate_per_sec, "burst", burst),
            Algorithm::LeakyBucket {
                rate_per_sec,
                capacity,
            } => check_bucket(rate_per_sec, "capacity", capacity),
            Algorithm::SlidingWindow { limit, window }
            | Algorithm::FixedWindow { limit, window } => {
                config::positive("limit", limit)?;
                config::window(window)
            }
        }
    }

    /// The most units one request can ask for.
    pub fn capacity(&self) -> u32 {
        match *self {
            Algorithm::TokenBucket { burst, .. } => burst,
            Algorithm::LeakyBucket { capacity, .. } => capacity,
            Algorithm::SlidingWindow { limit, .. } | Algorithm::FixedWindow { limit, .. } => limit,
        }
    }

    /// The same algorithm with every limit divided by `instances` (rounded
    /// up, at least 1; `0` counts as 1): the local share of one app instance.
    pub fn share(&self, instances: u32) -> Algorithm {
        let part = |v: u32| v.div_ceil(instances.max(1)).max(1);
        match *self {
            Algorithm::TokenBucket {
                rate_per_sec,
                burst,
            } => Algorithm::TokenBucket {
                rate_per_sec: part(rate_per_sec),
                burst: part(burst),
            },
            Algorithm::LeakyBucket {
                rate_per_sec,
                capacity,
            } => Algorithm::LeakyBucket {
                rate_per_sec: part(rate_per_sec),
                capacity: part(capacity),
            },
            Algorithm::SlidingWindow { limit, window } => Algorithm::SlidingWindow {
                limit: part(limit),
                window,
            },
            Algorithm::FixedWindow { limit, window } => Algorithm::FixedWindow {
                limit: part(limit),
                window,
            },
        }
    }

    /// How long a key's state matters after its last use (full refill,
    /// drain or window time).
    pub(crate) fn memory(&self) -> Duration {
        match *self {
            Algorithm::TokenBucket {
                rate_per_sec,
                burst: capacity,
            }
            | Algorithm::LeakyBucket {
                rate_per_sec,
                capacity,
            } => Duration::try_from_secs_f64(f64::from(capacity) / f64::from(rate_per_sec.max(1)))
                .unwrap_or(Duration::MAX),
            Algorithm::SlidingWindow { window, .. } | Algorithm::FixedWindow { window, .. } => {
                window
            }
        }
    }
}

fn check_bucket(rate_per_sec: u32, size: &'static str, value: u32) -> Result<(), ConfigError> {
    config::positive("rate_per_sec", rate_per_sec)?;
    config::positive(size, value)?;
    // Whole seconds of refill or drain, rounded up.
    let secs = u64::from(value).div_ceil(u64::from(rate_per_sec));
    if secs > config::MAX_WINDOW.as_secs() {
        let field = if size == "burst" {
            "burst / rate_per_sec (the full refill time)"
        } else {
            "capacity / rate_per_sec (the full drain time)"
        };
        return Err(config::duration(
            field,
            "at most 365 days (31536000 s)",
            Duration::from_secs(secs),
        ));
    }
    Ok(())
}
