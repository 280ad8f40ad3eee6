//! Bad configurations: a clear error from `try_new`, documented behaviour from `new`, never a panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use seckill_ratelimit::{
    ConfigError, DenyReason, FixedWindow, LeakyBucket, SlidingWindow, TokenBucket,
};

#[test]
fn try_new_names_what_is_wrong() {
    assert_eq!(
        TokenBucket::try_new(0, 10).unwrap_err(),
        ConfigError::ZeroRate
    );
    assert_eq!(
        TokenBucket::try_new(10, 0).unwrap_err(),
        ConfigError::ZeroCapacity
    );
    assert_eq!(
        LeakyBucket::try_new(0, 1).unwrap_err(),
        ConfigError::ZeroRate
    );
    assert_eq!(
        LeakyBucket::try_new(1, 0).unwrap_err(),
        ConfigError::ZeroCapacity
    );
    let second = Duration::from_secs(1);
    assert_eq!(
        SlidingWindow::try_new(0, second).unwrap_err(),
        ConfigError::ZeroCapacity
    );
    assert_eq!(
        SlidingWindow::try_new(5, Duration::from_micros(999)).unwrap_err(),
        ConfigError::WindowTooShort
    );
    assert_eq!(
        FixedWindow::try_new(0, second).unwrap_err(),
        ConfigError::ZeroCapacity
    );
    assert_eq!(
        FixedWindow::try_new(5, Duration::ZERO).unwrap_err(),
        ConfigError::WindowTooShort
    );
    assert!(
        ConfigError::ZeroRate.to_string().contains("at least 1"),
        "the message says what to do"
    );
}

#[test]
fn new_with_zeros_denies_everything_without_dividing_by_zero() {
    let never = |r: Result<(), seckill_ratelimit::Denied>| {
        let denied = r.unwrap_err();
        assert_eq!(denied.reason, DenyReason::ExceedsCapacity);
        assert_eq!(denied.retry_after, Duration::MAX);
    };
    never(TokenBucket::new(0, 10).try_acquire(1));
    never(TokenBucket::new(10, 0).try_acquire(1));
    never(TokenBucket::new(0, 0).try_acquire(1));
    never(LeakyBucket::new(0, 5).try_acquire(1));
    never(SlidingWindow::new(0, Duration::from_secs(1)).try_acquire(1));
    never(SlidingWindow::new(3, Duration::ZERO).try_acquire(1));
    never(SlidingWindow::new(u32::MAX, Duration::from_secs(1)).try_acquire(1));
    never(FixedWindow::new(0, Duration::from_secs(1)).try_acquire(1));
    never(FixedWindow::new(3, Duration::ZERO).try_acquire(1));
    assert_eq!(TokenBucket::new(0, 10).burst(), 0);
}

#[test]
fn n_above_the_burst_is_a_permanent_denial_and_zero_always_passes() {
    let bucket = TokenBucket::new(10, 5);
    let denied = bucket.try_acquire(6).unwrap_err();
    assert_eq!(denied.reason, DenyReason::ExceedsCapacity);
    assert_eq!(denied.retry_after, Duration::MAX);
    assert_eq!(denied.retry_after_secs(), Duration::MAX.as_secs());
    bucket.try_acquire(u32::MAX).unwrap_err();
    bucket.try_acquire(0).unwrap();
    bucket.try_acquire(5).unwrap(); // the failed requests took nothing
}

#[test]
fn extreme_rates_do_not_overflow() {
    let bucket = TokenBucket::new(u32::MAX, u32::MAX);
    bucket.try_acquire(u32::MAX).unwrap();
    let slow = TokenBucket::new(1, u32::MAX);
    slow.try_acquire(u32::MAX).unwrap();
    let denied = slow.try_acquire(u32::MAX).unwrap_err();
    assert!(denied.retry_after > Duration::from_secs(4_000_000_000));
}

#[tokio::test(start_paused = true)]
async fn a_zero_rate_pacer_never_grants() {
    let pacer = LeakyBucket::new(0, 1);
    assert!(
        tokio::time::timeout(Duration::from_secs(3600), pacer.acquire())
            .await
            .is_err()
    );
}
