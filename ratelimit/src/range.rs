//! The valid range of every number and duration the in-process limiters
//! take, and the checks the `try_` constructors run.

use std::time::Duration;

use crate::error::ConfigError;
use crate::sliding_window::MAX_SLIDING_LIMIT;

/// The highest `rate_per_sec` of a [`TokenBucket`](crate::TokenBucket) or
/// [`LeakyBucket`](crate::LeakyBucket): one unit per nanosecond, the
/// resolution of the limiters' clocks. `new` applies this rate to a higher one.
pub const MAX_RATE_PER_SEC: u32 = 1_000_000_000;

/// The shortest window of a [`SlidingWindow`](crate::SlidingWindow) or
/// [`FixedWindow`](crate::FixedWindow): 1 ms.
pub const MIN_WINDOW: Duration = Duration::from_millis(1);

/// The longest window of a [`SlidingWindow`](crate::SlidingWindow) or
/// [`FixedWindow`](crate::FixedWindow): `u64::MAX` nanoseconds (about 584
/// years), the span of the limiters' clocks. `new` saturates a longer one
/// (such as [`Duration::MAX`]) to it.
pub const MAX_WINDOW: Duration = Duration::from_nanos(u64::MAX);

const RATE_RANGE: &str = "1 to 1000000000";
const U32_RANGE: &str = "1 to 4294967295";
const SLIDING_RANGE: &str = "1 to 16777216";
const WINDOW_RANGE: &str = "1 ms to 18446744073709551615 ns (about 584 years)";

/// `rate_per_sec` in 1..=[`MAX_RATE_PER_SEC`], the capacity (named
/// `capacity_field`) at least 1.
pub(crate) fn check_gcra(
    rate_per_sec: u32,
    capacity: u32,
    capacity_field: &'static str,
) -> Result<(), ConfigError> {
    if !(1..=MAX_RATE_PER_SEC).contains(&rate_per_sec) {
        return Err(ConfigError::OutOfRange {
            field: "rate_per_sec",
            range: RATE_RANGE,
            got: u64::from(rate_per_sec),
        });
    }
    if capacity == 0 {
        return Err(ConfigError::OutOfRange {
            field: capacity_field,
            range: U32_RANGE,
            got: 0,
        });
    }
    Ok(())
}

/// Which window limiter is checked: their limits differ.
#[derive(Clone, Copy)]
pub(crate) enum WindowKind {
    Sliding,
    Fixed,
}

/// `limit` in its range (1 to [`MAX_SLIDING_LIMIT`] for a sliding window,
/// 1 to `u32::MAX` for a fixed one) and `window` in [`MIN_WINDOW`]..=[`MAX_WINDOW`].
pub(crate) fn check_window(
    kind: WindowKind,
    limit: u32,
    window: Duration,
) -> Result<(), ConfigError> {
    let (max, range) = match kind {
        WindowKind::Sliding => (MAX_SLIDING_LIMIT, SLIDING_RANGE),
        WindowKind::Fixed => (u32::MAX, U32_RANGE),
    };
    if !(1..=max).contains(&limit) {
        return Err(ConfigError::OutOfRange {
            field: "limit",
            range,
            got: u64::from(limit),
        });
    }
    if !(MIN_WINDOW..=MAX_WINDOW).contains(&window) {
        return Err(ConfigError::DurationOutOfRange {
            field: "window",
            range: WINDOW_RANGE,
            got: window,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_field_and_range() {
        assert_eq!(
            check_gcra(0, 1, "burst").unwrap_err().to_string(),
            "rate_per_sec must be 1 to 1000000000, got 0"
        );
        assert_eq!(
            check_gcra(1, 0, "capacity").unwrap_err().to_string(),
            "capacity must be 1 to 4294967295, got 0"
        );
        assert_eq!(
            check_window(WindowKind::Sliding, 1 << 25, MIN_WINDOW)
                .unwrap_err()
                .to_string(),
            "limit must be 1 to 16777216, got 33554432"
        );
        assert_eq!(
            check_window(WindowKind::Fixed, 1, Duration::MAX)
                .unwrap_err()
                .to_string(),
            format!("window must be {WINDOW_RANGE}, got {:?}", Duration::MAX)
        );
    }
}
