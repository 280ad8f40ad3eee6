//! Property tests of the Redis limiters on every shared topology (a single
//! server, a Redis Cluster, a Sentinel group) through both clients: random
//! valid configurations and call sequences, checking the stated guarantees
//! (exact counting, never more than `limit` in any window, permits
//! accounted, a TTL on every key), and random invalid configurations
//! rejected with the field named.
//!
//! Seeds and case counts: `support/prop.rs` (`PROPTEST_RNG_SEED`,
//! `PROPTEST_CASES`); each property runs its full count on every topology
//! and client, but the slowest (it sleeps between calls) runs half of it on
//! the Cluster and the Sentinel group. Every case uses its own limiter name
//! and deletes its keys.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[macro_use]
mod support;

use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use seckill_ratelimit::{Algorithm, ConfigError, DenyReason, FailurePolicy, RedisLimiter};
use seckill_redis::{Call, Connection, Value};
use support::prop::proptest_config;
use support::{Topo, del, pttl, unique, zrange_with_scores};

const MAX_WINDOW_MS: u64 = 365 * 24 * 3600 * 1000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// One `#[test]` per (client, shared topology) for each property
/// `fn property<C: Connection>(rt, conn, topo, cases)`, with `single`
/// cases on the single server and `shared` on the Cluster and Sentinel.
macro_rules! on_every_topology_with_cases {
    ($($case:ident: $single:expr, $shared:expr);* $(;)?) => {$(
        mod $case {
            use super::support::{Client, Topo, connect};

            fn run(client: Client, topo: Topo) {
                let rt = super::runtime();
                let cases = if topo == Topo::Single { $single } else { $shared };
                match rt.block_on(connect(client, topo)) {
                    conn @ super::support::Conn::RedisRs(_) => {
                        super::$case(&rt, conn.redis_rs(), topo, cases)
                    }
                    conn @ super::support::Conn::Fred(_) => {
                        super::$case(&rt, conn.fred(), topo, cases)
                    }
                }
            }

            #[test]
            fn redis_rs_single() {
                run(Client::RedisRs, Topo::Single);
            }
            #[test]
            fn redis_rs_cluster() {
                run(Client::RedisRs, Topo::Cluster);
            }
            #[test]
            fn redis_rs_sentinel() {
                run(Client::RedisRs, Topo::Sentinel);
            }
            #[test]
            fn fred_single() {
                run(Client::Fred, Topo::Single);
            }
            #[test]
            fn fred_cluster() {
                run(Client::Fred, Topo::Cluster);
            }
            #[test]
            fn fred_sentinel() {
                run(Client::Fred, Topo::Sentinel);
            }
        }
    )*};
}

/// Every key of limiter `name` on any node of the topology, with its PTTL.
async fn keys_with_ttl<C: Connection>(conn: &C, topo: Topo, name: &str) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for key in support::scan(&support::url(topo), &format!("{{{name}:*")).await {
        let ttl = pttl(conn, &key).await;
        out.push((key, ttl));
    }
    out
}

async fn delete_keys<C: Connection>(conn: &C, topo: Topo, name: &str) {
    for (key, _) in keys_with_ttl(conn, topo, name).await {
        del(conn, &key).await;
    }
}

/// `(running total, admission time µs)` of members `start..=stop` of a
/// sliding window key.
async fn members<C: Connection>(conn: &C, key: &str, start: i64, stop: i64) -> Vec<(u64, u64)> {
    zrange_with_scores(conn, key, start, stop)
        .await
        .into_iter()
        .map(|(m, s)| (m.parse().unwrap(), s as u64))
        .collect()
}

/// A sliding window whose window outlasts the case counts exactly like a
/// counter: admitted iff the permits admitted so far plus `n` fit the limit.
/// The sorted set holds one member per admitted call (whatever `n`), the
/// newest being the running total of permits.
async fn sliding_matches_model<C: Connection>(
    conn: &C,
    topo: Topo,
    limit: u32,
    asks: &[u32],
) -> Result<(), TestCaseError> {
    let name = unique("prop-sw-model");
    let window = Duration::from_secs(600);
    let limiter = support::limiter(
        conn.clone(),
        name.clone(),
        Algorithm::SlidingWindow { limit, window },
    )
    .unwrap();
    let (mut used, mut calls) = (0u64, 0usize);
    for &n in asks {
        let got = limiter.try_acquire("k", n).await;
        if n > limit {
            prop_assert_eq!(got.unwrap_err().reason, DenyReason::ExceedsCapacity);
        } else if used + u64::from(n) <= u64::from(limit) {
            prop_assert!(
                got.is_ok(),
                "n {} used {} limit {}: {:?}",
                n,
                used,
                limit,
                got
            );
            used += u64::from(n);
            calls += 1;
        } else {
            let denied = got.unwrap_err();
            prop_assert_eq!(denied.reason, DenyReason::RateExceeded);
            prop_assert!(denied.retry_after > Duration::ZERO && denied.retry_after <= window);
        }
    }
    prop_assert_eq!(limiter.stats().errors, 0);
    let key = format!("{{{name}:k}}:sw");
    let members = members(conn, &key, 0, -1).await;
    prop_assert_eq!(members.len(), calls, "one member per admitted call");
    prop_assert_eq!(members.last().map_or(0, |m| m.0), used, "running total");
    for (_, ttl) in keys_with_ttl(conn, topo, &name).await {
        prop_assert!(ttl > 0 && ttl <= 600_001, "pttl {}", ttl);
    }
    delete_keys(conn, topo, &name).await;
    Ok(())
}

fn prop_sliding_window_counts_exactly_within_a_window<C: Connection>(
    rt: &tokio::runtime::Runtime,
    conn: C,
    topo: Topo,
    cases: u32,
) {
    let limits = prop_oneof![1u32..=20, Just(u32::MAX), (1u32 << 31)..=u32::MAX];
    let strategy = limits.prop_flat_map(|limit| {
        let n = prop_oneof![
            1..=limit.min(8),
            1..=limit,
            Just(limit),
            Just(limit.saturating_add(1))
        ];
        (Just(limit), prop::collection::vec(n, 1..25))
    });
    TestRunner::new(proptest_config(cases))
        .run(&strategy, |(limit, asks)| {
            rt.block_on(sliding_matches_model(&conn, topo, limit, &asks))
        })
        .unwrap();
}

/// With windows short enough to slide during the case: no window of length
/// `window` (by Redis's clock) ever holds more than `limit` admitted permits,
/// and the permits recorded are exactly the permits the callers were granted.
async fn sliding_never_exceeds<C: Connection>(
    conn: &C,
    topo: Topo,
    limit: u32,
    window_ms: u64,
    steps: &[(u32, u64)],
) -> Result<(), TestCaseError> {
    let name = unique("prop-sw-slide");
    let window = Duration::from_millis(window_ms);
    let limiter = support::limiter(
        conn.clone(),
        name.clone(),
        Algorithm::SlidingWindow { limit, window },
    )
    .unwrap();
    let key = format!("{{{name}:k}}:sw");
    // (admission time µs, permits) of every admitted call, read right after
    // it from the newest two members: its running total minus its
    // predecessor's (which a call never removes), or the whole total when it
    // started the key.
    let mut admissions: Vec<(u64, u64)> = Vec::new();
    let mut granted = 0u64;
    for &(n, pause_ms) in steps {
        if limiter.try_acquire("k", n).await.is_ok() {
            granted += u64::from(n);
            let newest = members(conn, &key, -2, -1).await;
            let (total, at) = *newest.last().unwrap();
            let permits = match newest.as_slice() {
                [(before, _), _] => total - before,
                _ => total,
            };
            prop_assert!(admissions.last().is_none_or(|(last, _)| *last < at));
            admissions.push((at, permits));
        }
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
    }
    prop_assert_eq!(limiter.stats().errors, 0);
    let recorded: u64 = admissions.iter().map(|(_, n)| n).sum();
    prop_assert_eq!(recorded, granted, "permits recorded = permits granted");
    let window_us = window_ms * 1000;
    for &(end, _) in &admissions {
        let inside: u64 = admissions
            .iter()
            .filter(|(at, _)| *at <= end && *at + window_us > end)
            .map(|(_, n)| n)
            .sum();
        prop_assert!(
            inside <= u64::from(limit),
            "{} in the window ending {}",
            inside,
            end
        );
    }
    delete_keys(conn, topo, &name).await;
    Ok(())
}

fn prop_sliding_window_never_exceeds_the_limit_in_any_window<C: Connection>(
    rt: &tokio::runtime::Runtime,
    conn: C,
    topo: Topo,
    cases: u32,
) {
    let strategy = (1u32..=6, 150u64..=400).prop_flat_map(|(limit, window_ms)| {
        (
            Just(limit),
            Just(window_ms),
            prop::collection::vec((1..=limit, 0u64..=60), 1..14),
        )
    });
    TestRunner::new(proptest_config(cases))
        .run(&strategy, |(limit, window_ms, steps)| {
            rt.block_on(sliding_never_exceeds(&conn, topo, limit, window_ms, &steps))
        })
        .unwrap();
}

fn valid_algorithm() -> impl Strategy<Value = Algorithm> {
    let count = prop_oneof![1u32..=50, Just(u32::MAX), 1u32..=u32::MAX];
    let window = prop_oneof![1u64..=2_000, Just(MAX_WINDOW_MS), 1u64..=MAX_WINDOW_MS]
        .prop_map(Duration::from_millis);
    // Refill/drain time at most 365 days: rate at least ceil(size / 31536000).
    let bucket = count.clone().prop_flat_map(|size| {
        let min_rate = size.div_ceil(31_536_000).max(1);
        (min_rate..=u32::MAX, Just(size))
    });
    prop_oneof![
        bucket
            .clone()
            .prop_map(|(rate_per_sec, burst)| Algorithm::TokenBucket {
                rate_per_sec,
                burst
            }),
        bucket.prop_map(|(rate_per_sec, capacity)| Algorithm::LeakyBucket {
            rate_per_sec,
            capacity
        }),
        (count.clone(), window.clone())
            .prop_map(|(limit, window)| Algorithm::SlidingWindow { limit, window }),
        (count, window).prop_map(|(limit, window)| Algorithm::FixedWindow { limit, window }),
    ]
}

/// Every key a limiter writes carries an expiry no longer than the
/// algorithm's memory (window, refill or drain time) + 1 ms.
async fn every_key_expires<C: Connection>(
    conn: &C,
    topo: Topo,
    algorithm: Algorithm,
    calls: &[(u8, u32)],
) -> Result<(), TestCaseError> {
    let name = unique("prop-ttl");
    let limiter = support::limiter(conn.clone(), name.clone(), algorithm).unwrap();
    let capacity = algorithm.capacity();
    for &(key, n) in calls {
        let n = 1 + n % capacity;
        let _ = limiter.try_acquire(&format!("k{key}"), n).await;
    }
    prop_assert_eq!(limiter.stats().errors, 0, "{:?}", algorithm);
    let most = match algorithm {
        Algorithm::SlidingWindow { window, .. } | Algorithm::FixedWindow { window, .. } => {
            window.as_millis() as i64
        }
        Algorithm::TokenBucket {
            rate_per_sec,
            burst: size,
        }
        | Algorithm::LeakyBucket {
            rate_per_sec,
            capacity: size,
        } => (u64::from(size) * 1000).div_ceil(u64::from(rate_per_sec)) as i64,
        _ => unreachable!(),
    };
    let keys = keys_with_ttl(conn, topo, &name).await;
    for (key, ttl) in &keys {
        // -2: expired meanwhile (a 1 ms window); -1 would never expire.
        prop_assert!(
            *ttl != -1 && *ttl <= most + 2,
            "{} pttl {} ({:?})",
            key,
            ttl,
            algorithm
        );
    }
    delete_keys(conn, topo, &name).await;
    Ok(())
}

fn prop_every_key_carries_a_ttl<C: Connection>(
    rt: &tokio::runtime::Runtime,
    conn: C,
    topo: Topo,
    cases: u32,
) {
    let strategy = (
        valid_algorithm(),
        prop::collection::vec((0u8..4, any::<u32>()), 1..12),
    );
    TestRunner::new(proptest_config(cases))
        .run(&strategy, |(algorithm, calls)| {
            rt.block_on(every_key_expires(&conn, topo, algorithm, &calls))
        })
        .unwrap();
}

on_every_topology_with_cases!(
    prop_sliding_window_counts_exactly_within_a_window: 16, 16;
    prop_sliding_window_never_exceeds_the_limit_in_any_window: 16, 8;
    prop_every_key_carries_a_ttl: 32, 32;
);

/// One field out of its range, the others valid.
#[derive(Debug, Clone)]
enum Invalid {
    Algorithm(Algorithm, &'static str),
    Instances(u32),
    Timeout(Duration),
    ProbeInterval(Duration),
}

fn invalid() -> impl Strategy<Value = Invalid> {
    let too_long = prop_oneof![
        (MAX_WINDOW_MS + 1..=u64::MAX / 1_000_000).prop_map(Duration::from_millis),
        Just(Duration::MAX)
    ];
    let too_short = (0u64..1_000_000).prop_map(Duration::from_nanos);
    let window = prop_oneof![too_long, too_short];
    prop_oneof![
        (0u32..=0, 1u32..).prop_map(|(r, b)| Invalid::Algorithm(
            Algorithm::TokenBucket {
                rate_per_sec: r,
                burst: b
            },
            "rate_per_sec"
        )),
        (1u32.., 0u32..=0).prop_map(|(r, c)| Invalid::Algorithm(
            Algorithm::LeakyBucket {
                rate_per_sec: r,
                capacity: c
            },
            "capacity"
        )),
        // A refill longer than 365 days.
        (1u32..=100).prop_map(|r| Invalid::Algorithm(
            Algorithm::TokenBucket {
                rate_per_sec: r,
                burst: (31_536_001u64 * u64::from(r)).min(u64::from(u32::MAX)) as u32
            },
            "burst / rate_per_sec (the full refill time)"
        )),
        window.clone().prop_map(|w| Invalid::Algorithm(
            Algorithm::SlidingWindow {
                limit: 1,
                window: w
            },
            "window"
        )),
        window.prop_map(|w| Invalid::Algorithm(
            Algorithm::FixedWindow {
                limit: 5,
                window: w
            },
            "window"
        )),
        Just(Invalid::Algorithm(
            Algorithm::FixedWindow {
                limit: 0,
                window: Duration::from_secs(1)
            },
            "limit"
        )),
        prop_oneof![Just(0u32), 65_537u32..].prop_map(Invalid::Instances),
        prop_oneof![
            (0u64..1_000_000).prop_map(Duration::from_nanos),
            (60_000_000_001u64..).prop_map(Duration::from_nanos)
        ]
        .prop_map(Invalid::Timeout),
        (86_400_000_000_001u64..).prop_map(|ns| Invalid::ProbeInterval(Duration::from_nanos(ns))),
    ]
}

/// A connection for limiters that must never reach Redis.
#[derive(Clone)]
struct Offline;
impl Connection for Offline {
    async fn send(&self, _call: Call<'_>) -> Result<Value, seckill_redis::Error> {
        unreachable!("an invalid configuration never reaches Redis")
    }
}

#[test]
fn prop_invalid_configurations_are_rejected_naming_the_field() {
    let ok = Algorithm::TokenBucket {
        rate_per_sec: 10,
        burst: 10,
    };
    TestRunner::new(proptest_config(256))
        .run(&invalid(), |invalid| {
            let builder = match &invalid {
                Invalid::Algorithm(a, _) => RedisLimiter::builder(Offline, "x", *a),
                Invalid::Instances(i) => RedisLimiter::builder(Offline, "x", ok)
                    .on_failure(FailurePolicy::Fallback { instances: *i }),
                Invalid::Timeout(t) => RedisLimiter::builder(Offline, "x", ok).timeout(*t),
                Invalid::ProbeInterval(p) => {
                    RedisLimiter::builder(Offline, "x", ok).probe_interval(*p)
                }
            };
            let want = match &invalid {
                Invalid::Algorithm(_, field) => *field,
                Invalid::Instances(_) => "instances",
                Invalid::Timeout(_) => "timeout",
                Invalid::ProbeInterval(_) => "probe_interval",
            };
            let err = builder.build().unwrap_err();
            let field = match &err {
                ConfigError::OutOfRange { field, .. }
                | ConfigError::DurationOutOfRange { field, .. } => *field,
                other => panic!("unexpected {other:?}"),
            };
            prop_assert_eq!(field, want);
            prop_assert!(
                err.to_string().starts_with(&format!("{want} must be ")),
                "{}",
                err
            );
            Ok(())
        })
        .unwrap();
}

#[test]
fn prop_valid_configurations_are_accepted() {
    TestRunner::new(proptest_config(256))
        .run(
            &(
                valid_algorithm(),
                1u32..=65_536,
                1u64..=60_000,
                0u64..=86_400_000,
            ),
            |(algorithm, instances, timeout_ms, probe_ms)| {
                let built = RedisLimiter::builder(Offline, "x", algorithm)
                    .on_failure(FailurePolicy::Fallback { instances })
                    .timeout(Duration::from_millis(timeout_ms))
                    .probe_interval(Duration::from_millis(probe_ms))
                    .build();
                prop_assert!(built.is_ok(), "{:?}", built.err());
                Ok(())
            },
        )
        .unwrap();
}
