//! Property tests: random valid configurations and random submission
//! patterns through the real batcher (Tokio's paused clock, so virtual time
//! makes every case fast and deterministic), checking its guarantees; and
//! random out-of-range settings, always rejected.
//!
//! Reproducible: a fixed seed (`common::DEFAULT_SEED`, or `PROPTEST_RNG_SEED`);
//! more cases with `PROPTEST_CASES`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use seckill_batcher::{
    Batch, BatchError, Batcher, BuildError, FailedBatch, Stats, SubmitError, Trigger,
    TrySubmitError, WaitError,
};

#[derive(Debug, Clone)]
struct Config {
    max_batch_size: usize,
    max_delay: Duration,
    buckets: usize,
    capacity: usize,
    retries: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
}

fn config() -> impl Strategy<Value = Config> {
    (
        1usize..=12,
        0u64..=40,
        1usize..=4,
        1usize..=24,
        0u32..=3,
        0u64..=20,
        0u64..=30,
    )
        .prop_map(
            |(size, delay, buckets, capacity, retries, initial, extra)| Config {
                max_batch_size: size,
                max_delay: Duration::from_millis(delay),
                buckets,
                capacity,
                retries,
                initial_backoff: Duration::from_millis(initial),
                max_backoff: Duration::from_millis(initial + extra),
            },
        )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    Submit,
    Wait,
    Try,
}

/// What an item makes its batch do in the handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Fine,
    /// Its batch fails on the first attempt only.
    Flaky,
    /// Its batch fails (or panics) on every attempt.
    Poison,
    PoisonPanic,
}

#[derive(Debug, Clone)]
struct Op {
    key: u8,
    how: How,
    fate: Fate,
    /// Virtual milliseconds the key's producer sleeps before this submit.
    gap_ms: u64,
}

fn op() -> impl Strategy<Value = Op> {
    (
        0u8..8,
        prop_oneof![Just(How::Submit), Just(How::Wait), Just(How::Try)],
        prop_oneof![
            12 => Just(Fate::Fine),
            2 => Just(Fate::Flaky),
            1 => Just(Fate::Poison),
            1 => Just(Fate::PoisonPanic),
        ],
        prop_oneof![3 => Just(0u64), 1 => 0u64..=15],
    )
        .prop_map(|(key, how, fate, gap_ms)| Op {
            key,
            how,
            fate,
            gap_ms,
        })
}

#[derive(Debug, Clone)]
struct Call {
    bucket: usize,
    trigger: Trigger,
    attempt: u32,
    items: Vec<usize>,
    ok: bool,
}

/// How a submit ended, as its producer saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Accepted,
    WaitedOk,
    WaitedFailed,
    Rejected,
}

fn assert_grew(prev: &Stats, next: &Stats) {
    let pairs = [
        (prev.submitted, next.submitted),
        (prev.handled, next.handled),
        (prev.failed, next.failed),
        (prev.abandoned, next.abandoned),
        (prev.retries, next.retries),
        (prev.panics, next.panics),
        (prev.batches(), next.batches()),
    ];
    for (a, b) in pairs {
        assert!(b >= a, "a counter went back: {prev:?} then {next:?}");
    }
    assert!(
        next.submitted >= next.handled + next.failed + next.abandoned,
        "{next:?}"
    );
}

/// Runs one case on a paused current-thread runtime and checks everything.
fn run_case(cfg: Config, ops: Vec<Op>, handler_ms: u64, shutdown_at_ms: Option<u64>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async move {
        let fates: Arc<Vec<Fate>> = Arc::new(ops.iter().map(|o| o.fate).collect());
        let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
        type DeadLetters = Vec<(u32, Vec<usize>)>;
        let dead: Arc<Mutex<DeadLetters>> = Arc::default();
        let (log, dead_log) = (calls.clone(), dead.clone());
        let batcher = Batcher::builder()
            .max_batch_size(cfg.max_batch_size)
            .max_delay(cfg.max_delay)
            .buckets(cfg.buckets)
            .capacity(cfg.capacity)
            .retries(cfg.retries)
            .backoff(cfg.initial_backoff, cfg.max_backoff)
            .on_failure(move |failed: FailedBatch<usize, String>| {
                let attempts = failed.attempts();
                let items = failed
                    .try_into_items()
                    .expect("the callback owns the items");
                dead_log.lock().unwrap().push((attempts, items));
            })
            .build(move |batch: Batch<usize>| {
                let (fates, log) = (fates.clone(), log.clone());
                async move {
                    tokio::time::sleep(Duration::from_millis(handler_ms)).await;
                    let fate = |f: Fate| batch.iter().any(|&i| fates[i] == f);
                    let panics = fate(Fate::PoisonPanic);
                    let flaky_now = batch.attempt() == 1 && fate(Fate::Flaky);
                    let ok = !(panics || fate(Fate::Poison) || flaky_now);
                    log.lock().unwrap().push(Call {
                        bucket: batch.bucket(),
                        trigger: batch.trigger(),
                        attempt: batch.attempt(),
                        items: batch.to_vec(),
                        ok,
                    });
                    if panics {
                        panic!("poisoned");
                    }
                    if ok {
                        Ok(())
                    } else {
                        Err("refused".to_string())
                    }
                }
            })
            .unwrap();

        // One producer per key, submitting that key's items in order.
        let mut by_key: BTreeMap<u8, Vec<(usize, Op)>> = BTreeMap::new();
        for (id, op) in ops.iter().enumerate() {
            by_key.entry(op.key).or_default().push((id, op.clone()));
        }
        let producers: Vec<_> = by_key
            .into_values()
            .map(|mine| {
                let batcher = batcher.clone();
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    for (id, op) in mine {
                        tokio::time::sleep(Duration::from_millis(op.gap_ms)).await;
                        let outcome = match op.how {
                            How::Submit => match batcher.submit(&op.key, id).await {
                                Ok(()) => Seen::Accepted,
                                Err(SubmitError::Closed(back)) => {
                                    assert_eq!(back, id);
                                    Seen::Rejected
                                }
                                Err(e) => panic!("{e:?}"),
                            },
                            How::Wait => match batcher.submit_and_wait(&op.key, id).await {
                                Ok(()) => Seen::WaitedOk,
                                Err(WaitError::Batch(BatchError::Failed(_)))
                                | Err(WaitError::Batch(BatchError::Panicked(_))) => {
                                    Seen::WaitedFailed
                                }
                                Err(WaitError::Closed(back)) => {
                                    assert_eq!(back, id);
                                    Seen::Rejected
                                }
                                Err(e) => panic!("{e:?}"),
                            },
                            How::Try => match batcher.try_submit(&op.key, id) {
                                Ok(()) => Seen::Accepted,
                                Err(TrySubmitError::Full(back) | TrySubmitError::Closed(back)) => {
                                    assert_eq!(back, id);
                                    Seen::Rejected
                                }
                                Err(e) => panic!("{e:?}"),
                            },
                        };
                        seen.push((id, op.key, outcome));
                    }
                    seen
                })
            })
            .collect();
        let reader = {
            let batcher = batcher.clone();
            tokio::spawn(async move {
                let mut prev = batcher.stats();
                while !batcher.is_closed() {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    let next = batcher.stats();
                    assert_grew(&prev, &next);
                    prev = next;
                }
                prev
            })
        };
        let stopper = shutdown_at_ms.map(|at| {
            let batcher = batcher.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(at)).await;
                batcher.shutdown().await;
            })
        });
        let mut seen = Vec::new();
        for producer in producers {
            seen.extend(producer.await.unwrap());
        }
        let accepted: HashSet<usize> = seen
            .iter()
            .filter(|s| s.2 != Seen::Rejected)
            .map(|s| s.0)
            .collect();
        if stopper.is_none() {
            // Quiescent: everything accepted was handled or failed.
            batcher.flush().await;
            let stats = batcher.stats();
            assert_eq!(stats.submitted, accepted.len() as u64, "{stats:?}");
            assert_eq!(stats.pending(), 0, "{stats:?}");
        }
        batcher.shutdown().await;
        if let Some(stopper) = stopper {
            stopper.await.unwrap();
        }
        let last_read = reader.await.unwrap();
        let stats = batcher.stats();
        assert_grew(&last_read, &stats);

        let calls = calls.lock().unwrap().clone();
        let dead = dead.lock().unwrap().clone();
        let key_of: Vec<u8> = ops.iter().map(|o| o.key).collect();
        // Shapes: sizes within max, the right trigger for the size, the
        // right bucket for each item.
        for call in &calls {
            assert!(
                !call.items.is_empty() && call.items.len() <= cfg.max_batch_size,
                "{call:?}"
            );
            if call.trigger == Trigger::Size {
                assert_eq!(call.items.len(), cfg.max_batch_size, "{call:?}");
            }
            if call.trigger == Trigger::Time {
                assert!(call.items.len() < cfg.max_batch_size, "{call:?}");
            }
            for &item in &call.items {
                assert_eq!(batcher.bucket_of(&key_of[item]), call.bucket);
            }
        }
        // Exactly once: every accepted item in exactly one successful call
        // or exactly one dead letter; rejected items nowhere.
        let mut times = vec![0u32; ops.len()];
        for call in calls.iter().filter(|c| c.ok) {
            for &item in &call.items {
                times[item] += 1;
            }
        }
        let mut dead_items = HashSet::new();
        for (attempts, items) in &dead {
            assert_eq!(*attempts, cfg.retries + 1);
            for &item in items {
                times[item] += 1;
                dead_items.insert(item);
            }
        }
        let everything: Vec<usize> = calls.iter().flat_map(|c| c.items.clone()).collect();
        for (id, key, outcome) in &seen {
            let id = *id;
            match outcome {
                Seen::Rejected => assert!(!everything.contains(&id), "rejected {id} was handled"),
                _ => assert_eq!(times[id], 1, "item {id} (key {key}): {outcome:?}"),
            }
            match outcome {
                Seen::WaitedOk => assert!(!dead_items.contains(&id)),
                Seen::WaitedFailed => assert!(dead_items.contains(&id)),
                _ => {}
            }
        }
        // Per-key order: first attempts see each key's items in submit order
        // (ids of one key increase in submit order).
        let mut last: BTreeMap<u8, usize> = BTreeMap::new();
        for call in calls.iter().filter(|c| c.attempt == 1) {
            for &item in &call.items {
                let key = key_of[item];
                if let Some(prev) = last.insert(key, item) {
                    assert!(prev < item, "key {key}: {item} after {prev}");
                }
            }
        }
        // A retry repeats exactly the batch before it in that bucket.
        for (i, call) in calls.iter().enumerate().filter(|(_, c)| c.attempt > 1) {
            let before = calls[..i]
                .iter()
                .rev()
                .find(|c| c.bucket == call.bucket)
                .unwrap();
            assert_eq!(
                (&before.items, before.attempt + 1),
                (&call.items, call.attempt)
            );
        }
        // Stats add up.
        let handled = times.iter().sum::<u32>() as u64 - dead_items.len() as u64;
        assert_eq!(stats.submitted, accepted.len() as u64, "{stats:?}");
        assert_eq!(stats.handled, handled, "{stats:?}");
        assert_eq!(stats.failed, dead_items.len() as u64, "{stats:?}");
        assert_eq!((stats.abandoned, stats.pending()), (0, 0), "{stats:?}");
        assert_eq!(stats.submitted, stats.handled + stats.failed);
        assert_eq!(
            stats.batches(),
            calls.iter().filter(|c| c.attempt == 1).count() as u64
        );
        assert_eq!(
            stats.retries,
            calls.iter().filter(|c| c.attempt > 1).count() as u64
        );
        let panics = calls
            .iter()
            .filter(|c| c.items.iter().any(|&i| ops[i].fate == Fate::PoisonPanic))
            .count();
        assert_eq!(stats.panics, panics as u64);
    });
}

proptest! {
    #![proptest_config(common::proptest_config(48))]

    /// Every accepted item is handled exactly once or dead-lettered exactly
    /// once (with `retries + 1` attempts); rejected items come back and are
    /// never handled; per-key order holds; batch sizes stay within
    /// `max_batch_size`; shutdown (at the end or racing the producers) is
    /// lossless; counters never decrease and add up.
    #[test]
    fn random_configs_and_submissions_keep_every_guarantee(
        cfg in config(),
        ops in prop::collection::vec(op(), 1..200),
        handler_ms in 0u64..=3,
        shutdown_at_ms in prop::option::weighted(0.3, 0u64..=60),
    ) {
        run_case(cfg, ops, handler_ms, shutdown_at_ms);
    }
}

/// One setting set out of its range; the others valid.
#[derive(Debug, Clone)]
enum Bad {
    MaxBatchSize(usize),
    MaxDelay(Duration),
    Buckets(usize),
    Capacity(usize),
    Retries(u32),
    InitialBackoff(Duration),
    MaxBackoff(Duration, Duration),
}

fn beyond(limit: Duration) -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::MAX),
        (1u64..=u64::MAX / 2).prop_map(move |ns| limit.saturating_add(Duration::from_nanos(ns))),
    ]
}

fn bad() -> impl Strategy<Value = Bad> {
    prop_oneof![
        prop_oneof![Just(0usize), (1usize << 20) + 1..=usize::MAX].prop_map(Bad::MaxBatchSize),
        beyond(Duration::from_secs(3600)).prop_map(Bad::MaxDelay),
        prop_oneof![Just(0usize), 1025usize..=usize::MAX].prop_map(Bad::Buckets),
        prop_oneof![Just(0usize), (1usize << 24) + 1..=usize::MAX].prop_map(Bad::Capacity),
        (101u32..=u32::MAX).prop_map(Bad::Retries),
        beyond(Duration::from_secs(60)).prop_map(Bad::InitialBackoff),
        prop_oneof![
            (0u64..=60_000)
                .prop_flat_map(|initial| {
                    (Just(initial), 0..initial.max(1)).prop_map(|(i, m)| {
                        (
                            Duration::from_millis(i),
                            Duration::from_millis(m.min(i.saturating_sub(1))),
                        )
                    })
                })
                .prop_filter("max below initial", |(i, m)| m < i),
            (0u64..=60_000, beyond(Duration::from_secs(600)))
                .prop_map(|(i, m)| (Duration::from_millis(i), m)),
        ]
        .prop_map(|(i, m)| Bad::MaxBackoff(i, m)),
    ]
}

proptest! {
    #![proptest_config(common::proptest_config(512))]

    /// A setting out of its range is always rejected with an error naming
    /// it, its range and the value; the same builder with every value in
    /// range passes validation (outside a runtime it then stops at
    /// `NoRuntime`, having spawned nothing).
    #[test]
    fn out_of_range_settings_are_always_rejected(cfg in config(), bad in bad()) {
        let valid = || {
            Batcher::<u64, String>::builder()
                .max_batch_size(cfg.max_batch_size)
                .max_delay(cfg.max_delay)
                .buckets(cfg.buckets)
                .capacity(cfg.capacity)
                .retries(cfg.retries)
                .backoff(cfg.initial_backoff, cfg.max_backoff)
        };
        let handler = |_: Batch<u64>| async { Ok::<(), String>(()) };
        prop_assert_eq!(valid().build(handler).unwrap_err(), BuildError::NoRuntime);
        let (builder, setting, got) = match bad {
            Bad::MaxBatchSize(v) => (valid().max_batch_size(v), "max_batch_size", v.to_string()),
            Bad::MaxDelay(v) => (valid().max_delay(v), "max_delay", format!("{v:?}")),
            Bad::Buckets(v) => (valid().buckets(v), "buckets", v.to_string()),
            Bad::Capacity(v) => (valid().capacity(v), "capacity", v.to_string()),
            Bad::Retries(v) => (valid().retries(v), "retries", v.to_string()),
            Bad::InitialBackoff(v) => (
                valid().backoff(v, Duration::from_secs(600)),
                "backoff.initial",
                format!("{v:?}"),
            ),
            Bad::MaxBackoff(i, m) => (valid().backoff(i, m), "backoff.max", if m.is_zero() { "0s".to_string() } else { format!("{m:?}") }),
        };
        let error = builder.build(handler).unwrap_err();
        let message = error.to_string();
        match error {
            BuildError::Invalid { setting: s, range, got: g } => {
                prop_assert_eq!(s, setting);
                prop_assert_eq!(&g, &got);
                prop_assert!(
                    message.contains(&format!("{setting} must be {range}, got {got}")),
                    "{}", message
                );
            }
            other => prop_assert!(false, "expected Invalid, got {:?}", other),
        }
    }
}
