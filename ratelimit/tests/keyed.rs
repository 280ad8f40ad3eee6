//! Keyed limiters: bounded under a flood of distinct keys, idle keys evicted, keys independent.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use seckill_ratelimit::{FixedWindow, Keyed, ManualClock, SlidingWindow, TokenBucket};

fn per_ip(clock: &ManualClock, max_keys: usize) -> Keyed<String, TokenBucket<ManualClock>> {
    let c = clock.clone();
    Keyed::new(TokenBucket::with_clock(5, 10, c.clone()))
        .max_keys(max_keys)
        .idle_ttl(Duration::from_secs(60))
}

#[test]
fn a_million_distinct_keys_stay_within_max_keys() {
    let clock = ManualClock::new();
    let keyed = per_ip(&clock, 10_000);
    let mut peak = 0;
    for i in 0..1_000_000u32 {
        if i % 1_000 == 0 {
            clock.advance(Duration::from_millis(1));
        }
        keyed
            .try_acquire(&format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255), 1)
            .unwrap();
        if i % 10_000 == 0 {
            peak = peak.max(keyed.len());
        }
    }
    peak = peak.max(keyed.len());
    assert!(peak <= 10_000, "held {peak} keys");
    assert!(
        keyed.len() >= 5_000,
        "eviction makes room for an eighth of max_keys at a time"
    );
}

#[test]
fn a_key_being_limited_survives_a_flood_of_new_keys() {
    let clock = ManualClock::new();
    let keyed = per_ip(&clock, 1_000);
    let attacker = "198.51.100.66".to_string();
    for _ in 0..10 {
        keyed.try_acquire(&attacker, 1).unwrap();
    }
    for i in 0..100_000u32 {
        keyed.try_acquire(&format!("flood-{i}"), 1).unwrap();
        if i % 100 == 0 {
            clock.advance(Duration::from_micros(1));
            // The attacker keeps hammering its own key: it stays recently used.
            assert!(keyed.try_acquire(&attacker, 1).is_err());
        }
    }
    assert!(keyed.contains_key(&attacker));
    assert!(keyed.len() <= 1_000);
}

#[test]
fn idle_keys_are_evicted() {
    let clock = ManualClock::new();
    let keyed = per_ip(&clock, 100_000);
    for i in 0..5_000 {
        keyed.try_acquire(&format!("user-{i}"), 1).unwrap();
    }
    assert_eq!(keyed.len(), 5_000);
    // Each bucket is full again 200 ms after its one request (5/s), and
    // idle 60 s after that.
    clock.advance(Duration::from_millis(60_199));
    assert_eq!(keyed.evict_idle(), 0);
    clock.advance(Duration::from_millis(1));
    assert_eq!(keyed.evict_idle(), 5_000);
    assert!(keyed.is_empty());

    // Without an explicit call: shards sweep themselves as new keys arrive.
    for i in 0..5_000 {
        keyed.try_acquire(&format!("user-{i}"), 1).unwrap();
    }
    clock.advance(Duration::from_secs(61));
    for i in 0..5_000 {
        keyed.try_acquire(&format!("new-{i}"), 1).unwrap();
    }
    assert_eq!(keyed.len(), 5_000);
    assert!(!keyed.contains_key("user-1"));
}

#[test]
fn a_key_still_limited_is_not_evicted_as_idle() {
    let clock = ManualClock::new();
    let c = clock.clone();
    // 1 per second: 600 tokens take 10 minutes to refill.
    let keyed: Keyed<String, TokenBucket<ManualClock>> =
        Keyed::new(TokenBucket::with_clock(1, 600, c.clone())).idle_ttl(Duration::from_secs(60));
    keyed.try_acquire("u", 600).unwrap();
    clock.advance(Duration::from_secs(120));
    assert_eq!(
        keyed.evict_idle(),
        0,
        "forgetting it would hand out a new burst"
    );
    clock.advance(Duration::from_secs(600));
    assert_eq!(keyed.evict_idle(), 1);
}

#[test]
fn one_keys_flood_does_not_limit_another() {
    let clock = ManualClock::new();
    let keyed = per_ip(&clock, 1_000);
    for _ in 0..10 {
        keyed.try_acquire("a", 1).unwrap();
    }
    for _ in 0..10_000 {
        assert!(keyed.try_acquire("a", 1).is_err());
    }
    for _ in 0..10 {
        keyed.try_acquire("b", 1).unwrap();
    }
    assert!(keyed.try_acquire("b", 1).is_err());
    assert!(keyed.remove("a"));
    keyed.try_acquire("a", 10).unwrap();
}

#[test]
fn any_limiter_can_be_keyed() {
    let clock = ManualClock::new();
    let c = clock.clone();
    let windows: Keyed<u64, SlidingWindow<ManualClock>> = Keyed::new(SlidingWindow::with_clock(
        2,
        Duration::from_secs(1),
        c.clone(),
    ));
    windows.try_acquire(&1, 2).unwrap();
    assert!(windows.try_acquire(&1, 1).is_err());
    windows.try_acquire(&2, 2).unwrap();

    let c = clock.clone();
    let fixed: Keyed<u64, FixedWindow<ManualClock>> = Keyed::new(FixedWindow::with_clock(
        1,
        Duration::from_secs(1),
        c.clone(),
    ))
    .max_keys(1);
    fixed.try_acquire(&1, 1).unwrap();
    fixed.try_acquire(&2, 1).unwrap();
    assert_eq!(fixed.len(), 1);
}
