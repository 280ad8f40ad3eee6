//! Token bucket behaviour on a manual clock, and its arithmetic against an
//! independent model.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use proptest::prelude::*;

#[path = "support/prop.rs"]
mod proptest_support;
use seckill_ratelimit::{DenyReason, ManualClock, TokenBucket};

#[test]
fn a_burst_passes_at_once_then_exactly_rate_per_second() {
    let clock = ManualClock::new();
    let bucket = TokenBucket::with_clock(100, 10, clock.clone());
    for _ in 0..10 {
        bucket.try_acquire(1).unwrap();
    }
    let denied = bucket.try_acquire(1).unwrap_err();
    assert_eq!(denied.reason, DenyReason::RateExceeded);
    assert_eq!(denied.retry_after, Duration::from_millis(10));

    // Over each of the next five seconds, polled every millisecond: exactly 100.
    for _ in 0..5 {
        let mut admitted = 0;
        for _ in 0..1000 {
            clock.advance(Duration::from_millis(1));
            while bucket.try_acquire(1).is_ok() {
                admitted += 1;
            }
        }
        assert_eq!(admitted, 100);
    }
}

#[test]
fn retry_after_is_exact() {
    let clock = ManualClock::new();
    let bucket = TokenBucket::with_clock(4, 4, clock.clone());
    bucket.try_acquire(4).unwrap();
    clock.advance(Duration::from_millis(100));
    // 3 tokens missing, 0.1 s of the first refill (0.25 s) done.
    let denied = bucket.try_acquire(3).unwrap_err();
    assert_eq!(denied.retry_after, Duration::from_millis(650));
    clock.advance(denied.retry_after - Duration::from_nanos(1));
    assert_eq!(
        bucket.try_acquire(3).unwrap_err().retry_after,
        Duration::from_nanos(1)
    );
    clock.advance(Duration::from_nanos(1));
    bucket.try_acquire(3).unwrap();
    assert!(bucket.try_acquire(1).is_err());
}

#[test]
fn an_idle_bucket_refills_only_up_to_the_burst() {
    let clock = ManualClock::new();
    let bucket = TokenBucket::with_clock(10, 3, clock.clone());
    clock.advance(Duration::from_secs(3600));
    bucket.try_acquire(3).unwrap();
    assert!(bucket.try_acquire(1).is_err());
}

/// An independent model: a token count kept in nanoseconds of refill.
struct Model {
    interval: u128,
    cap: u128,
    credit: u128,
}

impl Model {
    fn new(rate: u32, burst: u32) -> Self {
        let interval = 1_000_000_000u128.div_ceil(u128::from(rate));
        Self {
            interval,
            cap: interval * u128::from(burst),
            credit: interval * u128::from(burst),
        }
    }

    fn advance(&mut self, nanos: u128) {
        self.credit = (self.credit + nanos).min(self.cap);
    }

    fn take(&mut self, n: u32) -> Result<(), Duration> {
        let cost = self.interval * u128::from(n);
        if cost <= self.credit {
            self.credit -= cost;
            Ok(())
        } else {
            Err(Duration::from_nanos((cost - self.credit) as u64))
        }
    }
}

proptest! {
    #![proptest_config(proptest_support::proptest_config(256))]

    #[test]
    fn matches_the_token_count_model(
        rate in 1u32..5_000,
        burst in 1u32..50,
        steps in proptest::collection::vec((0u64..20_000_000, 1u32..8), 1..200),
    ) {
        let clock = ManualClock::new();
        let bucket = TokenBucket::with_clock(rate, burst, clock.clone());
        let mut model = Model::new(rate, burst);
        for (advance, n) in steps {
            clock.advance(Duration::from_nanos(advance));
            model.advance(u128::from(advance));
            let got = bucket.try_acquire(n);
            if n > burst {
                prop_assert_eq!(got.unwrap_err().reason, DenyReason::ExceedsCapacity);
                continue;
            }
            match model.take(n) {
                Ok(()) => prop_assert!(got.is_ok()),
                Err(wait) => prop_assert_eq!(got.unwrap_err().retry_after, wait),
            }
        }
    }

    #[test]
    fn never_more_than_burst_plus_the_rate(
        rate in 1u32..100_000,
        burst in 1u32..100,
        steps in proptest::collection::vec(0u64..5_000_000, 1..300),
    ) {
        let clock = ManualClock::new();
        let bucket = TokenBucket::with_clock(rate, burst, clock.clone());
        let mut admitted: u128 = 0;
        let mut elapsed: u128 = 0;
        let first_drain = u128::from(steps[0]);
        for advance in steps {
            clock.advance(Duration::from_nanos(advance));
            elapsed += u128::from(advance);
            while bucket.try_acquire(1).is_ok() {
                admitted += 1;
            }
            // Never above the configured rate.
            let since_first = elapsed - first_drain;
            let ceiling = u128::from(burst) + since_first * u128::from(rate) / 1_000_000_000;
            prop_assert!(admitted <= ceiling);
        }
    }
}
