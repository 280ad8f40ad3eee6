//! Property tests through the real cache on the real Redis (both clients,
//! every topology: the full case count on the single server, a quarter on
//! the Cluster and the Sentinel group, see `support::scaled`):
//! random valid options and random operation sequences, checked against the
//! crate's guarantees; random invalid options, always rejected. Reproducible:
//! see `support::proptest_config` (seed `PROPTEST_RNG_SEED`, cases
//! `PROPTEST_CASES`).

#![cfg(any(feature = "redis", feature = "fred"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use seckill_cache_aside::{Backfill, Cache, Options};
use support::{Connect, Topo, admin, namespace, proptest_config};

const MS: u64 = 1;
const YEAR_MS: u64 = 365 * 24 * 3600 * 1000;

fn modes() -> impl Strategy<Value = Backfill> {
    prop_oneof![Just(Backfill::SetNx), Just(Backfill::Lease)]
}

/// A duration in `[low, high]` ms, biased to both ends of the range.
fn millis(low: u64, high: u64) -> impl Strategy<Value = Duration> {
    prop_oneof![Just(low), Just(high), low..=high].prop_map(Duration::from_millis)
}

/// Random options inside every documented range (TTLs up to a year).
#[derive(Debug, Clone)]
struct Valid {
    mode: Backfill,
    ttl: Duration,
    jitter: f64,
    not_found_ttl: Duration,
    lease_ttl: Duration,
    replicas: u32,
    front: Option<(usize, Duration)>,
    second_delete: bool,
}

impl Valid {
    fn options(&self) -> Options {
        let mut options = Options::default()
            .backfill(self.mode)
            .ttl(self.ttl)
            .jitter(self.jitter)
            .not_found_ttl(self.not_found_ttl)
            .lease_ttl(self.lease_ttl)
            .replicas(self.replicas)
            .redis_timeout(Duration::from_secs(30))
            .lease_wait(Duration::from_secs(30))
            .double_delete_delay(if self.second_delete {
                Duration::from_secs(3600)
            } else {
                Duration::ZERO
            });
        if let Some((capacity, ttl)) = self.front {
            options = options.front_cache(capacity, ttl);
        }
        options
    }
}

fn valid() -> impl Strategy<Value = Valid> {
    (
        modes(),
        millis(MS, YEAR_MS),
        prop_oneof![Just(0.0), Just(0.99), 0.0..=0.99],
        millis(MS, YEAR_MS),
        millis(MS, 600_000),
        1u32..=4,
        proptest::option::of((1usize..=64, millis(MS, 3_600_000))),
        any::<bool>(),
    )
        .prop_map(
            |(mode, ttl, jitter, not_found_ttl, lease_ttl, replicas, front, second_delete)| Valid {
                mode,
                ttl,
                jitter,
                not_found_ttl,
                lease_ttl,
                replicas,
                front,
                second_delete,
            },
        )
}

#[derive(Debug, Clone)]
enum Op {
    /// `get_or_load`; the loader answers the database row.
    Read(usize),
    /// Database write, then `invalidate`.
    Update(usize, Option<u32>),
    /// Database write, then `set` (only for `Some`).
    Set(usize, u32),
}

fn ops(keys: usize) -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(
        prop_oneof![
            4 => (0..keys).prop_map(Op::Read),
            2 => (0..keys, proptest::option::of(0u32..1000)).prop_map(|(k, v)| Op::Update(k, v)),
            1 => (0..keys, 0u32..1000).prop_map(|(k, v)| Op::Set(k, v)),
        ],
        1..24,
    )
}

/// Runs `body` over `cases` cases of `strategy`, each on a runtime, then
/// deletes the namespace's keys.
fn run<S: Strategy>(
    topo: Topo,
    cases: u32,
    strategy: S,
    body: impl Fn(S::Value, String) -> Result<(), TestCaseError> + Sync,
) where
    S::Value: std::fmt::Debug,
{
    let mut runner = TestRunner::new(proptest_config(support::scaled(topo, cases)));
    let ns = namespace();
    let result = runner.run(&strategy, |value| body(value, ns.clone()));
    let rt = support::runtime();
    rt.block_on(async {
        admin(topo).await.delete_under(&ns).await;
    });
    result.unwrap();
}

/// Every key the cache writes (values, "not found" markers, leases, every
/// replica) carries a TTL, whatever the valid options (TTLs up to a year,
/// jitter up to 0.99): `PTTL` is never -1, and never above the largest
/// configured TTL times `1 + jitter`.
fn every_written_key_has_a_ttl<C: Connect>(client: C) {
    let rt = support::runtime();
    let conn = rt.block_on(client.connect());
    let admin = rt.block_on(admin(client.topo()));
    run(client.topo(), 24, (valid(), ops(3)), |(valid, ops), ns| {
        rt.block_on(async {
            let prefix = format!("{ns}:{}:", uuid::Uuid::new_v4().simple());
            let cache = Cache::new(conn.clone(), valid.options()).unwrap();
            for op in &ops {
                let key = |k: &usize| format!("{prefix}{k}");
                match op {
                    Op::Read(k) => {
                        let _ = cache
                            .get_or_load(&key(k), || async { Ok::<_, String>(Some(*k as u32)) })
                            .await
                            .unwrap();
                    }
                    Op::Update(k, None) => {
                        let _ = cache
                            .get_or_load(&key(k), || async { Ok::<Option<u32>, String>(None) })
                            .await
                            .unwrap();
                    }
                    Op::Update(k, Some(_)) => cache.invalidate(&key(k)).await.unwrap(),
                    Op::Set(k, v) => cache.set(&key(k), v).await.unwrap(),
                }
            }
            let longest = valid.ttl.max(valid.not_found_ttl).max(valid.lease_ttl);
            let bound = (longest.as_millis() as f64 * (1.0 + valid.jitter)).ceil() as i64 + 1;
            for key in admin.keys_under(&prefix).await {
                let left = admin.pttl(&key).await;
                // -2: a 1 ms TTL expired between SCAN and PTTL.
                prop_assert!(
                    left == -2 || (left >= 0 && left <= bound),
                    "{key}: PTTL {left}, bound {bound}"
                );
            }
            cache.flush_deletes().await;
            Ok(())
        })
    });
}

/// Sequential reads, writes and invalidations of a few keys against a model
/// database: every read answers the database's current row (read-your-write
/// after `invalidate` or `set`, both modes); a "not found" is cached like a
/// value; the loader runs only for the first read of a key after a change.
fn cache_follows_the_database<C: Connect>(client: C) {
    let rt = support::runtime();
    let conn = rt.block_on(client.connect());
    let strategy = (
        modes(),
        prop_oneof![Just(0.0), 0.0..=0.99],
        proptest::option::of(1usize..=8),
        any::<bool>(),
        ops(3),
    );
    run(
        client.topo(),
        32,
        strategy,
        |(mode, jitter, front, second_delete, ops), ns| {
            rt.block_on(async {
                let prefix = format!("{ns}:{}:", uuid::Uuid::new_v4().simple());
                let mut options = Options::default()
                    .backfill(mode)
                    .jitter(jitter)
                    // Long enough that nothing expires during a case.
                    .ttl(Duration::from_secs(600))
                    .not_found_ttl(Duration::from_secs(600))
                    .double_delete_delay(if second_delete {
                        Duration::from_secs(3600)
                    } else {
                        Duration::ZERO
                    });
                if let Some(capacity) = front {
                    options = options.front_cache(capacity, Duration::from_secs(600));
                }
                let cache = Cache::new(conn.clone(), options).unwrap();
                let mut db: HashMap<usize, Option<u32>> = HashMap::new();
                // Whether the cache may hold the key (a load is not expected).
                let mut warm: HashMap<usize, bool> = HashMap::new();
                let loads = AtomicUsize::new(0);
                let mut expected_loads = 0;
                for op in &ops {
                    match op {
                        Op::Read(k) => {
                            let row = db.get(k).copied().flatten();
                            let got = cache
                                .get_or_load(&format!("{prefix}{k}"), || async {
                                    loads.fetch_add(1, Ordering::SeqCst);
                                    Ok::<_, String>(row)
                                })
                                .await
                                .unwrap();
                            prop_assert_eq!(got, row, "{:?} key {}", mode, k);
                            if !warm.insert(*k, true).unwrap_or(false) {
                                expected_loads += 1;
                            }
                            prop_assert_eq!(loads.load(Ordering::SeqCst), expected_loads);
                        }
                        Op::Update(k, v) => {
                            db.insert(*k, *v);
                            cache.invalidate(&format!("{prefix}{k}")).await.unwrap();
                            warm.insert(*k, false);
                        }
                        Op::Set(k, v) => {
                            db.insert(*k, Some(*v));
                            cache.set(&format!("{prefix}{k}"), v).await.unwrap();
                            warm.insert(*k, true);
                        }
                    }
                }
                cache.flush_deletes().await;
                Ok(())
            })
        },
    );
}

/// Singleflight: thousands of concurrent misses over a few keys run the
/// loader exactly once per key, and every caller gets its key's value.
fn one_load_per_key_under_concurrent_misses<C: Connect>(client: C) {
    let rt = support::runtime();
    let conn = rt.block_on(client.connect());
    run(
        client.topo(),
        6,
        (modes(), 1usize..=4, 1000usize..=3000),
        |(mode, keys, tasks), ns| {
            rt.block_on(async {
                let prefix = format!("{ns}:{}:", uuid::Uuid::new_v4().simple());
                let options = Options::default()
                    .backfill(mode)
                    .redis_timeout(Duration::from_secs(30))
                    .lease_wait(Duration::from_secs(30));
                let cache = Cache::new(conn.clone(), options).unwrap();
                let loads: Arc<Vec<AtomicUsize>> =
                    Arc::new((0..keys).map(|_| AtomicUsize::new(0)).collect());
                let start = Arc::new(tokio::sync::Barrier::new(tasks));
                let mut handles = Vec::with_capacity(tasks);
                for i in 0..tasks {
                    let (cache, loads, start, prefix) =
                        (cache.clone(), loads.clone(), start.clone(), prefix.clone());
                    handles.push(tokio::spawn(async move {
                        let k = i % keys;
                        start.wait().await;
                        cache
                            .get_or_load(&format!("{prefix}{k}"), || async move {
                                loads[k].fetch_add(1, Ordering::SeqCst);
                                tokio::time::sleep(Duration::from_millis(5)).await;
                                Ok::<_, String>(Some(k as u64 * 10))
                            })
                            .await
                            .map(|v| (k, v))
                    }));
                }
                for handle in handles {
                    let (k, v) = handle.await.unwrap().unwrap();
                    prop_assert_eq!(v, Some(k as u64 * 10));
                }
                let per_key: Vec<usize> = loads.iter().map(|n| n.load(Ordering::SeqCst)).collect();
                prop_assert_eq!(per_key, vec![1; keys], "{:?}", mode);
                Ok(())
            })
        },
    );
}

on_every_topology!(sync:
    every_written_key_has_a_ttl,
    cache_follows_the_database,
    one_load_per_key_under_concurrent_misses,
);

/// One setting set to a value outside its range.
#[derive(Debug, Clone)]
enum Invalid {
    Ttl(Duration),
    Jitter(f64),
    NotFoundTtl(Duration),
    DoubleDeleteDelay(Duration),
    LeaseTtl(Duration),
    LeaseWait(Duration),
    RedisTimeout(Duration),
    FrontCapacity(usize),
    FrontTtl(Duration),
    Replicas(u32),
    DeleteRetries(u32),
    DeleteBackoff(Duration),
    MaxPendingDeletes(u64),
}

fn above(limit_ms: u64) -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::MAX),
        Just(Duration::from_millis(limit_ms) + Duration::from_nanos(1)),
        (limit_ms + 1..=u64::MAX / 2).prop_map(Duration::from_millis),
    ]
}

fn below_one_ms() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        (0u64..1_000_000).prop_map(Duration::from_nanos)
    ]
}

fn invalid() -> impl Strategy<Value = Invalid> {
    prop_oneof![
        prop_oneof![below_one_ms(), above(YEAR_MS)].prop_map(Invalid::Ttl),
        prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(1.0),
            0.990_001..1e9f64,
            -1e9f64..-1e-9
        ]
        .prop_map(Invalid::Jitter),
        prop_oneof![below_one_ms(), above(YEAR_MS)].prop_map(Invalid::NotFoundTtl),
        above(3_600_000).prop_map(Invalid::DoubleDeleteDelay),
        prop_oneof![below_one_ms(), above(600_000)].prop_map(Invalid::LeaseTtl),
        above(60_000).prop_map(Invalid::LeaseWait),
        prop_oneof![below_one_ms(), above(60_000)].prop_map(Invalid::RedisTimeout),
        prop_oneof![Just(0usize), (1usize << 20) + 1..=usize::MAX].prop_map(Invalid::FrontCapacity),
        prop_oneof![below_one_ms(), above(3_600_000)].prop_map(Invalid::FrontTtl),
        prop_oneof![Just(0u32), 65u32..=u32::MAX].prop_map(Invalid::Replicas),
        (21u32..=u32::MAX).prop_map(Invalid::DeleteRetries),
        prop_oneof![below_one_ms(), above(60_000)].prop_map(Invalid::DeleteBackoff),
        prop_oneof![Just(0u64), 10_000_001u64..=u64::MAX].prop_map(Invalid::MaxPendingDeletes),
    ]
}

impl Invalid {
    /// The options with this value, and the field and range the error names.
    fn apply(&self, options: Options) -> (Options, &'static str, &'static str) {
        let sec = Duration::from_secs(1);
        match *self {
            Invalid::Ttl(d) => (options.ttl(d), "ttl", "1 ms to 365 days"),
            Invalid::Jitter(j) => (options.jitter(j), "jitter", "0.0 to 0.99"),
            Invalid::NotFoundTtl(d) => (
                options.not_found_ttl(d),
                "not_found_ttl",
                "1 ms to 365 days",
            ),
            Invalid::DoubleDeleteDelay(d) => (
                options.double_delete_delay(d),
                "double_delete_delay",
                "0 (off) to 1 hour",
            ),
            Invalid::LeaseTtl(d) => (options.lease_ttl(d), "lease_ttl", "1 ms to 10 minutes"),
            Invalid::LeaseWait(d) => (options.lease_wait(d), "lease_wait", "0 to 60 s"),
            Invalid::RedisTimeout(d) => (options.redis_timeout(d), "redis_timeout", "1 ms to 60 s"),
            Invalid::FrontCapacity(n) => (
                options.front_cache(n, sec),
                "front_cache.capacity",
                "1 to 1048576",
            ),
            Invalid::FrontTtl(d) => (
                options.front_cache(10, d),
                "front_cache.ttl",
                "1 ms to 1 hour",
            ),
            Invalid::Replicas(n) => (options.replicas(n), "replicas", "1 to 64"),
            Invalid::DeleteRetries(n) => {
                (options.delete_retries(n, sec), "delete_retries", "0 to 20")
            }
            Invalid::MaxPendingDeletes(n) => (
                options.max_pending_deletes(n),
                "max_pending_deletes",
                "1 to 10000000",
            ),
            Invalid::DeleteBackoff(d) => (
                options.delete_retries(3, d),
                "delete_retries.backoff",
                "1 ms to 60 s",
            ),
        }
    }
}

/// An out-of-range value in any one setting, on top of otherwise valid
/// random options, is always rejected, by `validate` and by `Cache::new`,
/// with an error naming that field and its range.
#[test]
fn invalid_options_are_rejected() {
    let mut runner = TestRunner::new(proptest_config(512));
    runner
        .run(&(valid(), invalid()), |(valid, invalid)| {
            let (options, field, range) = invalid.apply(valid.options());
            let error = options.validate().unwrap_err();
            prop_assert_eq!((error.field, error.range), (field, range));
            let message = error.to_string();
            let expected = format!("{field} must be {range}, got ");
            prop_assert!(message.starts_with(&expected), "{}", message);
            Ok(())
        })
        .unwrap();
    // Cache::new checks too, before touching the connection.
    #[cfg(feature = "redis")]
    let rt = support::runtime();
    #[cfg(feature = "redis")]
    rt.block_on(async {
        use support::Connect;
        let conn = support::RedisRs(Topo::Single).connect().await;
        let error = Cache::new(conn, Options::default().ttl(Duration::MAX)).unwrap_err();
        assert_eq!(error.field, "ttl");
    });
}

/// Random options inside every documented range are accepted.
#[test]
fn valid_options_are_accepted() {
    let mut runner = TestRunner::new(proptest_config(512));
    runner
        .run(&valid(), |valid| {
            prop_assert_eq!(valid.options().validate(), Ok(()));
            Ok(())
        })
        .unwrap();
}
