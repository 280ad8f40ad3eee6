//! Which algorithm a Redis limiter runs, with its parameters.

use std::time::Duration;

use crate::error::ConfigError;
use crate::sliding_window::check_window;
use crate::token_bucket::check_rate;

/// The algorithm and limits of a [`RedisLimiter`](crate::RedisLimiter); the
/// same four as in process, with the same meaning.
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
    /// At most `limit` in any window of length `window` (whole milliseconds).
    SlidingWindow {
        /// Admissions per window.
        limit: u32,
        /// The window length.
        window: Duration,
    },
    /// At most `limit` per window aligned to the Unix epoch (whole milliseconds).
    FixedWindow {
        /// Admissions per window.
        limit: u32,
        /// The window length.
        window: Duration,
    },
}

impl Algorithm {
    /// Checks the limits can work.
    ///
    /// # Errors
    ///
    /// [`ConfigError::ZeroRate`], [`ConfigError::ZeroCapacity`] or
    /// [`ConfigError::WindowTooShort`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        match *self {
            Algorithm::TokenBucket {
                rate_per_sec,
                burst: capacity,
            }
            | Algorithm::LeakyBucket {
                rate_per_sec,
                capacity,
            } => check_rate(rate_per_sec, capacity),
            Algorithm::SlidingWindow { limit, window }
            | Algorithm::FixedWindow { limit, window } => check_window(limit, window),
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
    /// up, at least 1): the local share of one app instance.
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
