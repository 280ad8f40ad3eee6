//! Property tests over random configurations: `Keyed`'s capacity and
//! eviction order, the leaky bucket's meter and pacer, and the range checks
//! of every constructor (invalid always rejected, valid always accepted).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::*;
use seckill_ratelimit::{
    ConfigError, DenyReason, FixedWindow, Keyed, LeakyBucket, MAX_KEYS, MAX_RATE_PER_SEC,
    MAX_SLIDING_LIMIT, MAX_WINDOW, MIN_WINDOW, ManualClock, SlidingWindow, TokenBucket,
};

#[path = "support/prop.rs"]
mod proptest_support;
use proptest_support::proptest_config;

const MS: u64 = 1_000_000;

/// Token buckets of 1,000/s (1 ms per token) and a burst of 4, keyed by u32,
/// on a manual clock; idle keys stay for an hour unless room is needed.
fn keyed(clock: &ManualClock, max_keys: usize) -> Keyed<u32, TokenBucket<ManualClock>> {
    let c = clock.clone();
    Keyed::new(TokenBucket::with_clock(1_000, 4, c.clone()))
        .try_max_keys(max_keys)
        .unwrap()
        .try_idle_ttl(Duration::from_secs(3_600))
        .unwrap()
}

/// Regression: with `max_keys` from 64 to 127 the map held only 64 keys (one
/// per shard), so limited keys were forgotten while the map was not full.
#[test]
fn every_max_keys_holds_that_many_limited_keys() {
    for max_keys in [1, 2, 63, 64, 65, 100, 127, 128, 129, 1_000, 4_097] {
        let clock = ManualClock::new();
        let map = keyed(&clock, max_keys);
        for key in 0..max_keys as u32 {
            map.try_acquire(&key, 4).unwrap(); // emptied: limited for 4 ms
        }
        assert_eq!(map.len(), max_keys, "max_keys = {max_keys}");
        for key in 0..max_keys as u32 {
            let denied = map.try_acquire(&key, 1).unwrap_err();
            assert_eq!(
                denied.reason,
                DenyReason::RateExceeded,
                "max_keys = {max_keys}: key {key} was forgotten and let through"
            );
        }
    }
}

/// Regression: eviction picked victims per shard, so a limited key could go
/// while an idle key or a key closer to idle was kept in another shard.
/// A full map of 100 makes room for 100 / 8 = 12: the idle key, then the
/// eleven keys idle soonest, never one of the keys limited longest.
#[test]
fn an_idle_key_anywhere_goes_before_a_limited_one() {
    let clock = ManualClock::new();
    let map = keyed(&clock, 100);
    map.try_acquire(&0, 1).unwrap(); // idle from 1 ms
    for key in 1..=11 {
        map.try_acquire(&key, 3).unwrap(); // idle from 3 ms
    }
    for key in 12..100 {
        map.try_acquire(&key, 4).unwrap(); // idle from 4 ms
    }
    clock.advance(Duration::from_millis(2)); // key 0 is idle now
    map.try_acquire(&1_000, 1).unwrap();
    assert_eq!(map.len(), 100 - 12 + 1);
    for key in 0..=11 {
        assert!(!map.contains_key(&key), "key {key} should have gone first");
    }
    for key in 12..100 {
        assert!(map.try_acquire(&key, 4).is_err(), "key {key} was evicted");
    }
}

/// When the model says a key's bucket is back to full (idle) at this time.
fn idle_from(tat: u64) -> u64 {
    tat
}

proptest! {
    #![proptest_config(proptest_config(128))]

    /// Random sizes (dense in the 1..=200 band, which holds 64..=127) and
    /// random schedules: every decision matches a model in which a key
    /// forgets its state only when evicted; no key is evicted while the map
    /// holds fewer than `max_keys`; the map never holds more; and every
    /// evicted key was at least as close to idle as every key kept.
    #[test]
    fn keyed_capacity_and_eviction_order(
        max_keys in prop_oneof![1usize..=200, 1usize..=1_500],
        key_space in 1u32..4,
        steps in proptest::collection::vec((0u32..1_000_000, 1u32..=4, 0u64..3), 1..1_500),
    ) {
        let clock = ManualClock::new();
        let map = keyed(&clock, max_keys);
        let keys = (max_keys as u32).saturating_mul(key_space).max(2);
        // The model: each held key's theoretical arrival time (ns).
        let mut held: HashMap<u32, u64> = HashMap::new();
        let mut now = 0u64;
        for (raw, n, advance_ms) in steps {
            let key = raw % keys;
            now += advance_ms * MS;
            clock.advance(Duration::from_millis(advance_ms));
            let was_held = held.contains_key(&key);
            let tat = held.get(&key).copied().unwrap_or(0);
            let next = tat.max(now) + u64::from(n) * MS;
            let model_ok = next <= now + 4 * MS;
            let got = map.try_acquire(&key, n);
            prop_assert_eq!(got.is_ok(), model_ok, "key {} n {} at {}", key, n, now);
            if !model_ok {
                prop_assert_eq!(got.unwrap_err().retry_after, Duration::from_nanos(next - 4 * MS - now));
            }
            if was_held {
                if model_ok {
                    held.insert(key, next);
                }
                prop_assert_eq!(map.len(), held.len(), "a hit changed the map");
                continue;
            }
            // A new key: room is made only when the map was full.
            let len = map.len();
            prop_assert!(len <= max_keys);
            if held.len() < max_keys {
                prop_assert_eq!(len, held.len() + 1, "evicted while not full");
            } else {
                let (kept, evicted): (Vec<_>, Vec<_>) = held
                    .iter()
                    .map(|(&k, &t)| (k, idle_from(t)))
                    .partition(|(k, _)| map.contains_key(k));
                prop_assert!(!evicted.is_empty(), "full, yet nothing was evicted");
                let latest_evicted = evicted.iter().map(|&(_, t)| t.max(now)).max().unwrap();
                let earliest_kept = kept.iter().map(|&(_, t)| t).min().unwrap_or(u64::MAX);
                prop_assert!(
                    latest_evicted <= earliest_kept,
                    "evicted a key idle from {} while keeping one idle from {} (now {})",
                    latest_evicted, earliest_kept, now
                );
                for (k, _) in evicted {
                    held.remove(&k);
                }
                prop_assert_eq!(len, held.len() + 1);
            }
            held.insert(key, if model_ok { next } else { 0 });
        }
    }

}

proptest! {
    #![proptest_config(proptest_config(256))]

    /// The meter never admits more than `capacity + rate·t` over any
    /// schedule, and always admits once enough has drained.
    #[test]
    fn leaky_meter_never_overflows(
        rate in 1u32..100_000,
        capacity in 1u32..100,
        steps in proptest::collection::vec((0u64..5_000_000, 1u32..4), 1..300),
    ) {
        let clock = ManualClock::new();
        let meter = LeakyBucket::with_clock(rate, capacity, clock.clone());
        let interval = u128::from(1_000_000_000u32.div_ceil(rate));
        let mut admitted: u128 = 0;
        let mut elapsed: u128 = 0;
        for (advance, n) in steps {
            clock.advance(Duration::from_nanos(advance));
            elapsed += u128::from(advance);
            match meter.try_acquire(n) {
                Ok(()) => admitted += u128::from(n),
                Err(denied) if n > capacity => {
                    prop_assert_eq!(denied.reason, DenyReason::ExceedsCapacity);
                }
                Err(denied) => {
                    prop_assert_eq!(denied.reason, DenyReason::RateExceeded);
                    clock.advance(denied.retry_after);
                    elapsed += denied.retry_after.as_nanos();
                    prop_assert!(meter.try_acquire(n).is_ok(), "retry_after was too short");
                    admitted += u128::from(n);
                }
            }
            prop_assert!(admitted <= u128::from(capacity) + elapsed / interval);
        }
    }

}

proptest! {
    #![proptest_config(proptest_config(64))]

    /// The pacer hands out slots exactly `interval` apart, in call order,
    /// whatever the capacity and the sizes asked for.
    #[test]
    fn pacer_slots_are_exactly_one_interval_apart(
        // Whole-millisecond intervals: tokio's timer counts milliseconds.
        rate in proptest::sample::select(vec![1u32, 2, 4, 5, 8, 10, 20, 25, 40, 50, 100, 125, 200, 250, 500, 1_000]),
        capacity in 1u32..10,
        sizes in proptest::collection::vec(1u32..4, 1..40),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            let pacer = LeakyBucket::with_clock(rate, capacity, seckill_ratelimit::TokioClock::new());
            let start = tokio::time::Instant::now();
            let interval = pacer.interval();
            let mut booked = 0u32;
            for n in sizes {
                pacer.acquire_many(n).await;
                prop_assert_eq!(start.elapsed(), interval * booked);
                booked += n;
            }
            Ok(())
        })?;
    }

}

proptest! {
    #![proptest_config(proptest_config(512))]

    /// Every constructor accepts exactly its documented range.
    #[test]
    fn constructors_accept_exactly_their_range(
        rate in prop_oneof![Just(0u32), 1..=MAX_RATE_PER_SEC, MAX_RATE_PER_SEC..=u32::MAX],
        capacity in prop_oneof![Just(0u32), 1..=u32::MAX],
        sliding_limit in prop_oneof![Just(0u32), 1..=MAX_SLIDING_LIMIT, MAX_SLIDING_LIMIT..=u32::MAX],
        window_ns in prop_oneof![0u64..2_000_000, any::<u64>()],
        window_max in any::<bool>(),
        max_keys in prop_oneof![Just(0usize), 1..=MAX_KEYS, MAX_KEYS..=usize::MAX],
    ) {
        let window = if window_max { Duration::MAX } else { Duration::from_nanos(window_ns) };
        let rate_ok = (1..=MAX_RATE_PER_SEC).contains(&rate);
        let window_ok = (MIN_WINDOW..=MAX_WINDOW).contains(&window);
        let out_of_range = |e: ConfigError, field: &str| match e {
            ConfigError::OutOfRange { field: f, .. } | ConfigError::DurationOutOfRange { field: f, .. } => f == field,
            _ => false,
        };

        let tb = TokenBucket::try_new(rate, capacity);
        prop_assert_eq!(tb.is_ok(), rate_ok && capacity > 0);
        if let Err(e) = tb {
            prop_assert!(out_of_range(e, if rate_ok { "burst" } else { "rate_per_sec" }), "{}", e);
        }
        let lb = LeakyBucket::try_new(rate, capacity);
        prop_assert_eq!(lb.is_ok(), rate_ok && capacity > 0);
        if let Err(e) = lb {
            prop_assert!(out_of_range(e, if rate_ok { "capacity" } else { "rate_per_sec" }), "{}", e);
        }
        let limit_ok = (1..=MAX_SLIDING_LIMIT).contains(&sliding_limit);
        // Small limits only when the window is valid: a valid sliding window allocates its log.
        let limit = if limit_ok && window_ok { sliding_limit.min(1_024) } else { sliding_limit };
        let sw = SlidingWindow::try_new(limit, window);
        prop_assert_eq!(sw.is_ok(), limit_ok && window_ok);
        if let Err(e) = sw {
            prop_assert!(out_of_range(e, if limit_ok { "window" } else { "limit" }), "{}", e);
        }
        let fw = FixedWindow::try_new(capacity, window);
        prop_assert_eq!(fw.is_ok(), capacity > 0 && window_ok);
        if let Err(e) = fw {
            prop_assert!(out_of_range(e, if capacity > 0 { "window" } else { "limit" }), "{}", e);
        }
        let km = Keyed::<u64, TokenBucket>::new(TokenBucket::new(1, 1)).try_max_keys(max_keys);
        prop_assert_eq!(km.is_ok(), (1..=MAX_KEYS).contains(&max_keys));
        if let Err(e) = km {
            prop_assert!(out_of_range(e, "max_keys"), "{}", e);
        }

        // The infallible constructors never panic and never admit past their limits.
        let clock = ManualClock::new();
        clock.set(window_ns);
        let bucket = TokenBucket::with_clock(rate, capacity, clock.clone());
        prop_assert!(bucket.try_acquire(capacity.saturating_add(1)).is_err() || capacity == u32::MAX);
        let fixed = FixedWindow::with_clock(capacity, window, clock.clone());
        let _ = fixed.try_acquire(capacity);
        prop_assert!(fixed.try_acquire(1).is_err());
        let big = SlidingWindow::with_clock(sliding_limit.max(MAX_SLIDING_LIMIT + 1), window, clock);
        prop_assert_eq!(big.limit(), 0, "an out-of-range limit allocates nothing");
    }
}
