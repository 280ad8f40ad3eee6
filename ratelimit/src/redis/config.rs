//! The valid ranges of every number and duration a Redis limiter takes; an
//! out-of-range value is a [`ConfigError`] naming the field and its range.

use std::time::Duration;

use crate::error::ConfigError;

/// The shortest window of the sliding and fixed window algorithms.
pub(crate) const MIN_WINDOW: Duration = Duration::from_millis(1);
/// The longest window, and the longest refill or drain time of the token and
/// leaky buckets: 365 days, so every key's `PEXPIRE` stays far inside Redis's
/// range and every microsecond time the scripts compute stays exact in Lua's
/// doubles (below 2^53).
pub(crate) const MAX_WINDOW: Duration = Duration::from_secs(365 * 24 * 3600);
pub(crate) const WINDOW_RANGE: &str = "1 ms to 365 days (31536000000 ms)";

pub(crate) const MIN_TIMEOUT: Duration = Duration::from_millis(1);
pub(crate) const MAX_TIMEOUT: Duration = Duration::from_secs(60);
pub(crate) const TIMEOUT_RANGE: &str = "1 ms to 60 s";

pub(crate) const MAX_PROBE_INTERVAL: Duration = Duration::from_secs(24 * 3600);
pub(crate) const PROBE_INTERVAL_RANGE: &str = "0 to 24 hours";

pub(crate) const MAX_INSTANCES: u32 = 65_536;
pub(crate) const INSTANCES_RANGE: &str = "1 to 65536";

pub(crate) const COUNT_RANGE: &str = "1 to 4294967295";

fn number(field: &'static str, range: &'static str, got: u32) -> ConfigError {
    ConfigError::OutOfRange {
        field,
        range,
        got: u64::from(got),
    }
}

pub(crate) fn duration(field: &'static str, range: &'static str, got: Duration) -> ConfigError {
    ConfigError::DurationOutOfRange { field, range, got }
}

/// `value` must be at least 1 (every `u32` above is accepted).
pub(crate) fn positive(field: &'static str, value: u32) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(number(field, COUNT_RANGE, value));
    }
    Ok(())
}

pub(crate) fn window(value: Duration) -> Result<(), ConfigError> {
    if !(MIN_WINDOW..=MAX_WINDOW).contains(&value) {
        return Err(duration("window", WINDOW_RANGE, value));
    }
    Ok(())
}

pub(crate) fn timeout(value: Duration) -> Result<(), ConfigError> {
    if !(MIN_TIMEOUT..=MAX_TIMEOUT).contains(&value) {
        return Err(duration("timeout", TIMEOUT_RANGE, value));
    }
    Ok(())
}

pub(crate) fn probe_interval(value: Duration) -> Result<(), ConfigError> {
    if value > MAX_PROBE_INTERVAL {
        return Err(duration("probe_interval", PROBE_INTERVAL_RANGE, value));
    }
    Ok(())
}

pub(crate) fn instances(value: u32) -> Result<(), ConfigError> {
    if !(1..=MAX_INSTANCES).contains(&value) {
        return Err(number("instances", INSTANCES_RANGE, value));
    }
    Ok(())
}

/// Whole milliseconds, rounded up (a window is never shortened).
pub(crate) fn ceil_millis(value: Duration) -> u64 {
    let millis = value.as_millis();
    let millis = if value.subsec_nanos().is_multiple_of(1_000_000) {
        millis
    } else {
        millis + 1
    };
    u64::try_from(millis).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_field_and_range() {
        assert_eq!(
            window(Duration::ZERO).unwrap_err().to_string(),
            "window must be 1 ms to 365 days (31536000000 ms), got 0ns"
        );
        assert_eq!(
            instances(0).unwrap_err().to_string(),
            "instances must be 1 to 65536, got 0"
        );
        assert!(matches!(
            positive("limit", 0),
            Err(ConfigError::OutOfRange {
                field: "limit",
                got: 0,
                ..
            })
        ));
        assert!(window(MAX_WINDOW).is_ok() && window(MIN_WINDOW).is_ok());
        assert!(window(MAX_WINDOW + Duration::from_nanos(1)).is_err());
        assert!(timeout(MAX_TIMEOUT).is_ok() && timeout(Duration::ZERO).is_err());
        assert!(probe_interval(Duration::ZERO).is_ok());
        assert!(probe_interval(MAX_PROBE_INTERVAL + Duration::from_nanos(1)).is_err());
    }

    #[test]
    fn windows_round_up_to_whole_milliseconds() {
        assert_eq!(ceil_millis(Duration::from_millis(5)), 5);
        assert_eq!(ceil_millis(Duration::from_micros(1_001)), 2);
        assert_eq!(ceil_millis(MAX_WINDOW), 31_536_000_000);
    }
}
