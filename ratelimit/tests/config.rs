//! Bad configurations: a clear error from `try_new`, documented behaviour from `new`, never a panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use seckill_ratelimit::{
    ConfigError, DenyReason, FixedWindow, Keyed, LeakyBucket, MAX_IDLE_TTL, MAX_KEYS,
    MAX_RATE_PER_SEC, MAX_SLIDING_LIMIT, MAX_WINDOW, MIN_WINDOW, ManualClock, SlidingWindow,
    TokenBucket,
};

/// The message of a rejected configuration.
fn message<T: std::fmt::Debug>(result: Result<T, ConfigError>) -> String {
    result.unwrap_err().to_string()
}

#[test]
fn try_new_names_the_field_and_its_range() {
    let second = Duration::from_secs(1);
    assert_eq!(
        message(TokenBucket::try_new(0, 10)),
        "rate_per_sec must be 1 to 1000000000, got 0"
    );
    assert_eq!(
        message(TokenBucket::try_new(1_000_000_001, 10)),
        "rate_per_sec must be 1 to 1000000000, got 1000000001"
    );
    assert_eq!(
        message(TokenBucket::try_new(10, 0)),
        "burst must be 1 to 4294967295, got 0"
    );
    assert_eq!(
        message(LeakyBucket::try_new(0, 1)),
        "rate_per_sec must be 1 to 1000000000, got 0"
    );
    assert_eq!(
        message(LeakyBucket::try_new(1, 0)),
        "capacity must be 1 to 4294967295, got 0"
    );
    assert_eq!(
        message(SlidingWindow::try_new(0, second)),
        "limit must be 1 to 16777216, got 0"
    );
    assert_eq!(
        message(SlidingWindow::try_new(MAX_SLIDING_LIMIT + 1, second)),
        "limit must be 1 to 16777216, got 16777217"
    );
    assert_eq!(
        message(SlidingWindow::try_new(5, Duration::from_micros(999))),
        "window must be 1 ms to 18446744073709551615 ns (about 584 years), got 999µs"
    );
    assert_eq!(
        message(FixedWindow::try_new(0, second)),
        "limit must be 1 to 4294967295, got 0"
    );
    assert_eq!(
        FixedWindow::try_new(5, Duration::ZERO).unwrap_err(),
        ConfigError::DurationOutOfRange {
            field: "window",
            range: "1 ms to 18446744073709551615 ns (about 584 years)",
            got: Duration::ZERO,
        }
    );
    let keyed = || Keyed::<u64, TokenBucket>::new(TokenBucket::new(1, 1));
    assert_eq!(
        message(keyed().try_max_keys(0)),
        "max_keys must be 1 to 16777216, got 0"
    );
    assert_eq!(
        message(keyed().try_max_keys(MAX_KEYS + 1)),
        "max_keys must be 1 to 16777216, got 16777217"
    );
    assert!(message(keyed().try_idle_ttl(Duration::MAX)).starts_with("idle_ttl must be 0 to "));
}

#[test]
fn the_ends_of_every_range_are_accepted() {
    TokenBucket::try_new(1, 1).unwrap();
    TokenBucket::try_new(MAX_RATE_PER_SEC, u32::MAX).unwrap();
    LeakyBucket::try_new(MAX_RATE_PER_SEC, u32::MAX).unwrap();
    SlidingWindow::try_new(1, MIN_WINDOW).unwrap();
    FixedWindow::try_new(u32::MAX, MAX_WINDOW).unwrap();
    SlidingWindow::try_new(1, MAX_WINDOW).unwrap();
    let keyed = || Keyed::<u64, TokenBucket>::new(TokenBucket::new(1, 1));
    assert_eq!(keyed().try_max_keys(1).unwrap().capacity(), 1);
    assert_eq!(keyed().try_max_keys(MAX_KEYS).unwrap().capacity(), MAX_KEYS);
    keyed().try_idle_ttl(Duration::ZERO).unwrap();
    keyed().try_idle_ttl(MAX_IDLE_TTL).unwrap();
    // The infallible builders clamp into the range.
    assert_eq!(keyed().max_keys(0).capacity(), 1);
    assert_eq!(keyed().max_keys(usize::MAX).capacity(), MAX_KEYS);
}

#[test]
fn windows_of_duration_max_saturate_without_overflow() {
    let clock = ManualClock::new();
    clock.set(u64::MAX - 5);
    let sliding = SlidingWindow::with_clock(2, Duration::MAX, clock.clone());
    assert_eq!(sliding.window(), MAX_WINDOW);
    sliding.try_acquire(2).unwrap();
    let denied = sliding.try_acquire(1).unwrap_err();
    assert_eq!(denied.reason, DenyReason::RateExceeded);
    assert_eq!(denied.retry_after, Duration::from_nanos(5));

    let fixed = FixedWindow::with_clock(1, Duration::MAX, clock.clone());
    assert_eq!(fixed.window(), MAX_WINDOW);
    fixed.try_acquire(1).unwrap();
    let denied = fixed.try_acquire(1).unwrap_err();
    assert_eq!(denied.reason, DenyReason::RateExceeded);
    assert_eq!(denied.retry_after, Duration::from_nanos(5));

    // A bucket whose refill would end past the clock's end denies instead
    // of saturating into free tokens.
    let bucket = TokenBucket::with_clock(1, u32::MAX, clock.clone());
    let denied = bucket.try_acquire(1).unwrap_err();
    assert_eq!(denied.reason, DenyReason::RateExceeded);
    let late = ManualClock::new();
    late.set(u64::MAX / 2);
    let bucket = TokenBucket::with_clock(1, u32::MAX, late.clone());
    bucket.try_acquire(u32::MAX).unwrap();
    assert_eq!(
        bucket.try_acquire(1).unwrap_err().retry_after,
        Duration::from_secs(1)
    );
    // Keyed with the longest idle time: sweeps never overflow.
    let c = late.clone();
    let keyed = Keyed::new(TokenBucket::with_clock(1, 1, c.clone()))
        .max_keys(2)
        .idle_ttl(Duration::MAX);
    for key in 0..10u64 {
        keyed.try_acquire(&key, 1).unwrap();
    }
    assert_eq!(keyed.len(), 2);
    assert_eq!(keyed.evict_idle(), 0);
}

#[test]
fn rates_above_the_clock_resolution_are_applied_as_one_per_nanosecond() {
    let clock = ManualClock::new();
    let bucket = TokenBucket::with_clock(u32::MAX, 1, clock.clone());
    assert_eq!(bucket.rate(), MAX_RATE_PER_SEC);
    bucket.try_acquire(1).unwrap();
    assert_eq!(
        bucket.try_acquire(1).unwrap_err().retry_after,
        Duration::from_nanos(1)
    );
    assert_eq!(
        LeakyBucket::new(u32::MAX, 1).interval(),
        Duration::from_nanos(1)
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
