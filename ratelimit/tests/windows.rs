//! Sliding and fixed windows: the edge where a fixed window lets 2x through.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use proptest::prelude::*;

#[path = "support/prop.rs"]
mod proptest_support;
use seckill_ratelimit::{DenyReason, FixedWindow, ManualClock, SlidingWindow};

fn admit_all(limiter: impl Fn() -> bool) -> u32 {
    let mut n = 0;
    while limiter() {
        n += 1;
    }
    n
}

#[test]
fn at_a_window_edge_fixed_lets_twice_the_limit_through_and_sliding_does_not() {
    let second = Duration::from_secs(1);
    let clock = ManualClock::new();
    let fixed = FixedWindow::with_clock(10, second, clock.clone());
    let sliding = SlidingWindow::with_clock(10, second, clock.clone());

    clock.advance(Duration::from_millis(900));
    assert_eq!(admit_all(|| fixed.try_acquire(1).is_ok()), 10);
    assert_eq!(admit_all(|| sliding.try_acquire(1).is_ok()), 10);

    // 100 ms later a new fixed window starts: 20 admitted within 100 ms.
    clock.advance(Duration::from_millis(100));
    assert_eq!(admit_all(|| fixed.try_acquire(1).is_ok()), 10);
    // The sliding window still holds the 10 from 100 ms ago, for 900 ms more.
    let denied = sliding.try_acquire(1).unwrap_err();
    assert_eq!(denied.retry_after, Duration::from_millis(900));
    assert_eq!(denied.reason, DenyReason::RateExceeded);

    clock.advance(denied.retry_after);
    assert_eq!(admit_all(|| sliding.try_acquire(1).is_ok()), 10);
}

#[test]
fn fixed_window_retry_after_is_the_next_window_start() {
    let clock = ManualClock::new();
    let fixed = FixedWindow::with_clock(3, Duration::from_millis(250), clock.clone());
    clock.advance(Duration::from_millis(1_010));
    fixed.try_acquire(3).unwrap();
    assert_eq!(
        fixed.try_acquire(1).unwrap_err().retry_after,
        Duration::from_millis(240)
    );
    assert_eq!(
        fixed.try_acquire(4).unwrap_err().reason,
        DenyReason::ExceedsCapacity
    );
}

#[test]
fn sliding_window_admits_several_units_at_once() {
    let clock = ManualClock::new();
    let sliding = SlidingWindow::with_clock(5, Duration::from_secs(1), clock.clone());
    sliding.try_acquire(2).unwrap();
    clock.advance(Duration::from_millis(300));
    sliding.try_acquire(3).unwrap();
    clock.advance(Duration::from_millis(300));
    // 3 more need the 2 from t=0 and 1 from t=300 ms to leave: at t=1.3 s.
    assert_eq!(
        sliding.try_acquire(3).unwrap_err().retry_after,
        Duration::from_millis(700)
    );
    assert_eq!(
        sliding.try_acquire(2).unwrap_err().retry_after,
        Duration::from_millis(400)
    );
    assert_eq!(
        sliding.try_acquire(6).unwrap_err().reason,
        DenyReason::ExceedsCapacity
    );
}

proptest! {
    #![proptest_config(proptest_support::proptest_config(256))]

    #[test]
    fn no_window_ever_holds_more_than_the_limit(
        limit in 1u32..20,
        window_ms in 1u64..1_000,
        steps in proptest::collection::vec((0u64..300_000_000, 1u32..5), 1..300),
    ) {
        let window = Duration::from_millis(window_ms);
        let clock = ManualClock::new();
        let sliding = SlidingWindow::with_clock(limit, window, clock.clone());
        let mut admitted: Vec<u64> = Vec::new();
        let mut now = 0u64;
        for (advance, n) in steps {
            clock.advance(Duration::from_nanos(advance));
            now += advance;
            let in_window = admitted.iter().filter(|&&t| t + window.as_nanos() as u64 > now).count() as u32;
            match sliding.try_acquire(n) {
                Ok(()) => {
                    prop_assert!(in_window + n <= limit);
                    admitted.extend(std::iter::repeat_n(now, n as usize));
                }
                Err(denied) if n > limit => prop_assert_eq!(denied.reason, DenyReason::ExceedsCapacity),
                Err(denied) => {
                    // Denied only when full, and exactly until enough leave.
                    prop_assert!(in_window + n > limit);
                    let mut live: Vec<u64> = admitted.iter().copied()
                        .filter(|&t| t + window.as_nanos() as u64 > now).collect();
                    live.sort();
                    let must_leave = (in_window + n - limit) as usize;
                    let leaves_at = live[must_leave - 1] + window.as_nanos() as u64;
                    prop_assert_eq!(denied.retry_after, Duration::from_nanos(leaves_at - now));
                }
            }
        }
    }

    #[test]
    fn fixed_window_counts_per_aligned_window(
        limit in 1u32..20,
        steps in proptest::collection::vec((0u64..400_000_000, 1u32..5), 1..300),
    ) {
        let window = 1_000_000_000u64;
        let clock = ManualClock::new();
        let fixed = FixedWindow::with_clock(limit, Duration::from_nanos(window), clock.clone());
        let (mut now, mut current, mut count) = (0u64, 0u64, 0u32);
        for (advance, n) in steps {
            clock.advance(Duration::from_nanos(advance));
            now += advance;
            if now / window != current {
                current = now / window;
                count = 0;
            }
            match fixed.try_acquire(n) {
                Ok(()) => {
                    count += n;
                    prop_assert!(count <= limit);
                }
                Err(denied) if n > limit => prop_assert_eq!(denied.reason, DenyReason::ExceedsCapacity),
                Err(denied) => {
                    prop_assert!(count + n > limit);
                    prop_assert_eq!(denied.retry_after, Duration::from_nanos((current + 1) * window - now));
                }
            }
        }
    }
}
