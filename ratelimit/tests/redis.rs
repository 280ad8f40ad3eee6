//! The Redis limiters against the real Redis, through both clients.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use seckill_ratelimit::{Algorithm, Backend, ConfigError, DenyReason, FailurePolicy, RedisLimiter};
use support::{fred, redis_rs, redis_url, unique};

async fn raw() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn pttl(key: &str) -> i64 {
    redis::cmd("PTTL")
        .arg(key)
        .query_async(&mut raw().await)
        .await
        .unwrap()
}

/// Redis's clock in microseconds.
async fn redis_now() -> u64 {
    let (secs, micros): (u64, u64) = redis::cmd("TIME")
        .query_async(&mut raw().await)
        .await
        .unwrap();
    secs * 1_000_000 + micros
}

async fn token_bucket_burst_then_rate<B: Backend>(backend: B) {
    let name = unique("tb");
    let limiter = RedisLimiter::new(
        backend,
        name.clone(),
        Algorithm::TokenBucket {
            rate_per_sec: 1,
            burst: 5,
        },
    )
    .unwrap();
    for _ in 0..5 {
        limiter.try_acquire("user:1", 1).await.unwrap();
    }
    let denied = limiter.try_acquire("user:1", 1).await.unwrap_err();
    assert_eq!(denied.reason, DenyReason::RateExceeded);
    assert!(denied.retry_after > Duration::ZERO && denied.retry_after <= Duration::from_secs(1));
    // Another key is not limited.
    limiter.try_acquire("user:2", 5).await.unwrap();
    // The key lives as long as the refill of 5 tokens at 1/s, never longer.
    let ttl = pttl(&format!("{{{name}:user:1}}:tb")).await;
    assert!((4_000..=5_001).contains(&ttl), "pttl {ttl}");
    assert_eq!(
        limiter.try_acquire("user:1", 6).await.unwrap_err().reason,
        DenyReason::ExceedsCapacity
    );
    assert_eq!(limiter.stats().errors, 0);
}

async fn go_zero_zero_ttl_case_works<B: Backend>(backend: B) {
    // go-zero's floor(2·burst/rate) is 0 here, and its SETEX fails forever.
    let name = unique("tb100");
    let limiter = RedisLimiter::new(
        backend,
        name.clone(),
        Algorithm::TokenBucket {
            rate_per_sec: 100,
            burst: 10,
        },
    )
    .unwrap();
    let started = Instant::now();
    limiter.try_acquire("k", 10).await.unwrap();
    let second = limiter.try_acquire("k", 10).await;
    if started.elapsed() < Duration::from_millis(100) {
        // A full refill takes 100 ms.
        assert!(second.unwrap_err().retry_after <= Duration::from_millis(100));
    }
    let ttl = pttl(&format!("{{{name}:k}}:tb")).await;
    assert!((1..=101).contains(&ttl), "pttl {ttl}");
    assert_eq!(limiter.stats().errors, 0);
    assert!(!limiter.stats().on_policy);
}

async fn leaky_meter_and_pacer<B: Backend>(backend: B) {
    let name = unique("lb");
    let limiter = RedisLimiter::new(
        backend,
        name.clone(),
        Algorithm::LeakyBucket {
            rate_per_sec: 1,
            capacity: 3,
        },
    )
    .unwrap();
    limiter.try_acquire("m", 3).await.unwrap();
    let denied = limiter.try_acquire("m", 1).await.unwrap_err();
    assert!(
        denied.retry_after > Duration::from_millis(900)
            && denied.retry_after <= Duration::from_secs(1)
    );
}

/// A backend for tests that must not reach Redis.
struct NoBackend;
impl Backend for NoBackend {
    async fn eval(
        &self,
        _call: &seckill_ratelimit::ScriptCall,
    ) -> Result<Vec<i64>, seckill_ratelimit::BackendError> {
        unreachable!("never called")
    }
}

async fn pacer_spaces_callers<B: Backend>(backend: B) {
    let name = unique("pace");
    let pacer = Arc::new(
        RedisLimiter::new(
            backend,
            name.clone(),
            Algorithm::LeakyBucket {
                rate_per_sec: 1,
                capacity: 1,
            },
        )
        .unwrap(),
    );
    let before = redis_now().await;
    // Five callers book five consecutive 1 s slots; only the first may pass
    // within 200 ms (a caller that gives up leaves its slot booked).
    let tasks: Vec<_> = (0..5)
        .map(|_| {
            let pacer = pacer.clone();
            tokio::spawn(async move {
                tokio::time::timeout(Duration::from_millis(200), pacer.acquire("p", 1)).await
            })
        })
        .collect();
    let mut passed = 0;
    for task in tasks {
        if let Ok(result) = task.await.unwrap() {
            result.unwrap();
            passed += 1;
        }
    }
    assert_eq!(passed, 1);
    let tat: f64 = redis::cmd("GET")
        .arg(format!("{{{name}:p}}:lb"))
        .query_async(&mut raw().await)
        .await
        .unwrap();
    let span = tat as u64 - before;
    assert!((5_000_000..6_000_000).contains(&span), "span {span} us");
}

async fn sliding_window_is_exact<B: Backend>(backend: B) {
    let name = unique("sw");
    let limiter = RedisLimiter::new(
        backend,
        name.clone(),
        Algorithm::SlidingWindow {
            limit: 5,
            window: Duration::from_secs(10),
        },
    )
    .unwrap();
    limiter.try_acquire("ip", 2).await.unwrap();
    limiter.try_acquire("ip", 3).await.unwrap();
    let denied = limiter.try_acquire("ip", 1).await.unwrap_err();
    assert!(
        denied.retry_after > Duration::from_secs(9)
            && denied.retry_after <= Duration::from_secs(10)
    );
    // One key per (limiter, key), one member per admitted call (not per
    // permit), expiring one window after the last admission.
    let mut conn = raw().await;
    let card: u32 = redis::cmd("ZCARD")
        .arg(format!("{{{name}:ip}}:sw"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(card, 2);
    let ttl = pttl(&format!("{{{name}:ip}}:sw")).await;
    assert!((9_000..=10_002).contains(&ttl), "pttl {ttl}");
}

async fn fixed_window_counts<B: Backend>(backend: B) {
    let name = unique("fw");
    let window = Duration::from_secs(3600);
    let limiter = RedisLimiter::new(
        backend,
        name.clone(),
        Algorithm::FixedWindow { limit: 5, window },
    )
    .unwrap();
    let start = redis_now().await / 3_600_000_000;
    let mut admitted = 0;
    for _ in 0..10 {
        if limiter.try_acquire("sms", 1).await.is_ok() {
            admitted += 1;
        }
    }
    if redis_now().await / 3_600_000_000 == start {
        assert_eq!(admitted, 5);
        let denied = limiter.try_acquire("sms", 1).await.unwrap_err();
        assert!(denied.retry_after <= window);
        let ttl = pttl(&format!("{{{name}:sms}}:fw")).await;
        assert!(ttl > 0 && ttl <= 3_600_001, "pttl {ttl}");
    }
}

async fn survives_script_flush<B: Backend>(backend: B) {
    let limiter = RedisLimiter::new(
        backend,
        unique("flush"),
        Algorithm::TokenBucket {
            rate_per_sec: 1,
            burst: 3,
        },
    )
    .unwrap();
    limiter.try_acquire("k", 1).await.unwrap();
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut raw().await)
        .await
        .unwrap();
    limiter.try_acquire("k", 1).await.unwrap();
    limiter.try_acquire("k", 1).await.unwrap();
    assert!(limiter.try_acquire("k", 1).await.is_err());
    assert_eq!(limiter.stats().errors, 0);
}

async fn ttl_is_never_zero<B: Backend + Clone>(backend: B) {
    let name = unique("ttl");
    let fast = Duration::from_millis(1);
    for (suffix, algorithm) in [
        (
            "tb",
            Algorithm::TokenBucket {
                rate_per_sec: u32::MAX,
                burst: 1,
            },
        ),
        (
            "lb",
            Algorithm::LeakyBucket {
                rate_per_sec: u32::MAX,
                capacity: 1,
            },
        ),
        (
            "sw",
            Algorithm::SlidingWindow {
                limit: 1,
                window: fast,
            },
        ),
        (
            "fw",
            Algorithm::FixedWindow {
                limit: 1,
                window: fast,
            },
        ),
    ] {
        let limiter = RedisLimiter::new(backend.clone(), name.clone(), algorithm).unwrap();
        limiter.try_acquire(suffix, 1).await.unwrap();
        assert_eq!(
            limiter.stats().errors,
            0,
            "{suffix}: no invalid expire time"
        );
        // -2: already expired (fine); -1 would be a key that never expires.
        let ttl = pttl(&format!("{{{name}:{suffix}}}:{suffix}")).await;
        assert!(ttl != -1 && ttl <= 2, "{suffix}: pttl {ttl}");
    }
}

macro_rules! both_clients {
    ($($test:ident),* $(,)?) => {
        mod on_redis_rs {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::redis_rs(&super::redis_url()).await).await;
                }
            )*
        }
        mod on_fred {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::fred(&super::redis_url()).await).await;
                }
            )*
        }
    };
}

both_clients!(
    token_bucket_burst_then_rate,
    go_zero_zero_ttl_case_works,
    leaky_meter_and_pacer,
    pacer_spaces_callers,
    sliding_window_is_exact,
    fixed_window_counts,
    survives_script_flush,
    ttl_is_never_zero,
    a_script_error_leaves_no_key_without_ttl,
);

/// Two app instances (two connections), four tasks each, one shared limiter.
async fn shared_total(algorithm: Algorithm, fred_second: bool) -> (u32, Duration) {
    let name = unique("shared");
    let first =
        Arc::new(RedisLimiter::new(redis_rs(&redis_url()).await, name.clone(), algorithm).unwrap());
    let second_rs;
    let second_fred;
    let started = Instant::now();
    let admitted = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    if fred_second {
        second_fred =
            Arc::new(RedisLimiter::new(fred(&redis_url()).await, name.clone(), algorithm).unwrap());
        for _ in 0..4 {
            let (l, a) = (second_fred.clone(), admitted.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..40 {
                    if l.try_acquire("global", 1).await.is_ok() {
                        a.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
    } else {
        second_rs = Arc::new(
            RedisLimiter::new(redis_rs(&redis_url()).await, name.clone(), algorithm).unwrap(),
        );
        for _ in 0..4 {
            let (l, a) = (second_rs.clone(), admitted.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..40 {
                    if l.try_acquire("global", 1).await.is_ok() {
                        a.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
    }
    for _ in 0..4 {
        let (l, a) = (first.clone(), admitted.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..40 {
                if l.try_acquire("global", 1).await.is_ok() {
                    a.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    (admitted.load(Ordering::Relaxed), started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_never_exceed_a_sliding_window_together() {
    let algorithm = Algorithm::SlidingWindow {
        limit: 50,
        window: Duration::from_secs(600),
    };
    assert_eq!(shared_total(algorithm, false).await.0, 50);
    assert_eq!(shared_total(algorithm, true).await.0, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_never_exceed_a_token_bucket_together() {
    let algorithm = Algorithm::TokenBucket {
        rate_per_sec: 1,
        burst: 50,
    };
    for fred_second in [false, true] {
        let (admitted, elapsed) = shared_total(algorithm, fred_second).await;
        // The burst, plus at most one refill per second the test ran.
        assert!(admitted >= 50);
        assert!(
            u64::from(admitted) <= 50 + elapsed.as_secs() + 1,
            "{admitted} in {elapsed:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_never_exceed_a_leaky_meter_together() {
    let algorithm = Algorithm::LeakyBucket {
        rate_per_sec: 1,
        capacity: 50,
    };
    let (admitted, elapsed) = shared_total(algorithm, true).await;
    assert!(admitted >= 50);
    assert!(
        u64::from(admitted) <= 50 + elapsed.as_secs() + 1,
        "{admitted} in {elapsed:?}"
    );
}

#[tokio::test]
async fn bad_configuration_is_an_error() {
    let backend = || NoBackend;
    let err = |a| {
        RedisLimiter::new(backend(), "x", a)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err(Algorithm::TokenBucket {
            rate_per_sec: 0,
            burst: 1
        }),
        "rate_per_sec must be 1 to 4294967295, got 0"
    );
    assert_eq!(
        err(Algorithm::LeakyBucket {
            rate_per_sec: 1,
            capacity: 0
        }),
        "capacity must be 1 to 4294967295, got 0"
    );
    assert_eq!(
        err(Algorithm::SlidingWindow {
            limit: 1,
            window: Duration::from_micros(10)
        }),
        "window must be 1 ms to 365 days (31536000000 ms), got 10µs"
    );
    assert_eq!(
        err(Algorithm::TokenBucket {
            rate_per_sec: 1,
            burst: u32::MAX
        }),
        "burst / rate_per_sec (the full refill time) must be at most 365 days (31536000 s), \
         got 4294967295s"
    );
    // n above the burst and n == 0 never reach Redis, for the pacer too.
    let limiter = RedisLimiter::new(
        backend(),
        "x",
        Algorithm::TokenBucket {
            rate_per_sec: 1,
            burst: 2,
        },
    )
    .unwrap();
    assert_eq!(
        limiter.try_acquire("k", 3).await.unwrap_err().reason,
        DenyReason::ExceedsCapacity
    );
    limiter.try_acquire("k", 0).await.unwrap();
    let pacer = RedisLimiter::new(
        backend(),
        "x",
        Algorithm::LeakyBucket {
            rate_per_sec: 1,
            capacity: 2,
        },
    )
    .unwrap();
    assert_eq!(
        pacer.acquire("k", 3).await.unwrap_err().reason,
        DenyReason::ExceedsCapacity
    );
}

/// Defect 3: a window of `Duration::MAX` used to pass validation, then every
/// call failed in `PEXPIRE` after the script had written its key.
#[test]
fn windows_beyond_365_days_are_rejected() {
    for window in [
        Duration::MAX,
        Duration::from_secs(u64::MAX),
        Duration::from_millis(31_536_000_001),
    ] {
        for algorithm in [
            Algorithm::SlidingWindow { limit: 1, window },
            Algorithm::FixedWindow { limit: 1, window },
        ] {
            let err = RedisLimiter::new(NoBackend, "x", algorithm).unwrap_err();
            assert!(
                matches!(err, ConfigError::DurationOutOfRange { field: "window", got, .. } if got == window),
                "{err:?}"
            );
        }
    }
    RedisLimiter::new(
        NoBackend,
        "x",
        Algorithm::SlidingWindow {
            limit: 1,
            window: Duration::from_millis(31_536_000_000),
        },
    )
    .unwrap();
}

#[test]
fn builder_ranges_name_the_field() {
    let bucket = Algorithm::TokenBucket {
        rate_per_sec: 1,
        burst: 1,
    };
    let build =
        |b: seckill_ratelimit::RedisLimiterBuilder<NoBackend>| b.build().unwrap_err().to_string();
    assert_eq!(
        build(RedisLimiter::builder(NoBackend, "x", bucket).timeout(Duration::ZERO)),
        "timeout must be 1 ms to 60 s, got 0ns"
    );
    assert_eq!(
        build(RedisLimiter::builder(NoBackend, "x", bucket).timeout(Duration::from_secs(61))),
        "timeout must be 1 ms to 60 s, got 61s"
    );
    assert_eq!(
        build(
            RedisLimiter::builder(NoBackend, "x", bucket)
                .probe_interval(Duration::from_secs(86_401))
        ),
        "probe_interval must be 0 to 24 hours, got 86401s"
    );
    assert_eq!(
        build(
            RedisLimiter::builder(NoBackend, "x", bucket)
                .on_failure(FailurePolicy::Fallback { instances: 0 })
        ),
        "instances must be 1 to 65536, got 0"
    );
    RedisLimiter::builder(NoBackend, "x", bucket)
        .on_failure(FailurePolicy::Fallback { instances: 65_536 })
        .timeout(Duration::from_secs(60))
        .probe_interval(Duration::ZERO)
        .build()
        .unwrap();
}

/// A backend whose every call fails, as Redis down would.
struct Down;
impl Backend for Down {
    async fn eval(
        &self,
        _call: &seckill_ratelimit::ScriptCall,
    ) -> Result<Vec<i64>, seckill_ratelimit::BackendError> {
        Err(seckill_ratelimit::BackendError::new(std::io::Error::other(
            "connection refused",
        )))
    }
}

/// Defect 1: `new` built the in-process fallback eagerly (256 MiB for a
/// sliding window of 16,777,216), even under fail-closed, where it is never
/// used. It is built on the first call the fallback policy decides.
#[tokio::test]
async fn the_fallback_is_built_only_when_the_policy_needs_it() {
    let huge = Algorithm::SlidingWindow {
        limit: seckill_ratelimit::MAX_SLIDING_LIMIT,
        window: Duration::from_secs(3600),
    };
    let closed = RedisLimiter::builder(Down, "x", huge)
        .on_failure(FailurePolicy::FailClosed)
        .build()
        .unwrap();
    assert!(!closed.fallback_is_built());
    assert_eq!(
        closed.try_acquire("k", 1).await.unwrap_err().reason,
        DenyReason::BackendUnavailable
    );
    assert!(!closed.fallback_is_built(), "fail-closed never builds it");
    let open = RedisLimiter::builder(Down, "x", huge)
        .on_failure(FailurePolicy::FailOpen)
        .build()
        .unwrap();
    open.try_acquire("k", 1).await.unwrap();
    assert!(!open.fallback_is_built());

    // The default policy (fallback) builds it on the first failure only.
    let fallback = RedisLimiter::new(Down, "x", huge).unwrap();
    assert!(!fallback.fallback_is_built());
    fallback.try_acquire("k", 1).await.unwrap();
    assert!(fallback.fallback_is_built());
    assert_eq!(fallback.stats().decided_by_policy, 1);
}

/// A key of the wrong type makes the script fail (`WRONGTYPE`): the call is
/// decided by the policy, and no key of the limiter is left without expiry.
async fn a_script_error_leaves_no_key_without_ttl<B: Backend + Clone>(backend: B) {
    let name = unique("script-error");
    let mut conn = raw().await;
    for (suffix, algorithm) in [
        (
            "tb",
            Algorithm::TokenBucket {
                rate_per_sec: 1,
                burst: 5,
            },
        ),
        (
            "lb",
            Algorithm::LeakyBucket {
                rate_per_sec: 1,
                capacity: 5,
            },
        ),
        (
            "sw",
            Algorithm::SlidingWindow {
                limit: 5,
                window: Duration::from_secs(60),
            },
        ),
        (
            "fw",
            Algorithm::FixedWindow {
                limit: 5,
                window: Duration::from_secs(60),
            },
        ),
    ] {
        let limiter = RedisLimiter::builder(backend.clone(), name.clone(), algorithm)
            .on_failure(FailurePolicy::FailClosed)
            .build()
            .unwrap();
        limiter.try_acquire("good", 1).await.unwrap();
        // The test plants a list (with an expiry) where the script's key goes.
        let planted = format!("{{{name}:bad}}:{suffix}");
        let _: () = redis::pipe()
            .cmd("RPUSH")
            .arg(&planted)
            .arg("x")
            .ignore()
            .cmd("PEXPIRE")
            .arg(&planted)
            .arg(60_000)
            .ignore()
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            limiter.try_acquire("bad", 1).await.unwrap_err().reason,
            DenyReason::BackendUnavailable,
            "{suffix}"
        );
        assert_eq!(limiter.stats().errors, 1, "{suffix}");
        let kind: String = redis::cmd("TYPE")
            .arg(&planted)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(kind, "list", "{suffix}: the script wrote nothing");
    }
    let keys: Vec<String> = ["tb", "lb", "sw", "fw"]
        .iter()
        .flat_map(|s| {
            [
                format!("{{{name}:good}}:{s}"),
                format!("{{{name}:bad}}:{s}"),
            ]
        })
        .collect();
    for key in &keys {
        let ttl = pttl(key).await;
        assert!(ttl > 0, "{key}: pttl {ttl}");
    }
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut conn)
        .await
        .unwrap();
}

/// Calls per command on a server of this test's own (`INFO commandstats`).
async fn command_calls(conn: &mut redis::aio::MultiplexedConnection) -> HashMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .unwrap();
    info.lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_string(), calls))
        })
        .collect()
}

/// Defect 2: with `limit: u32::MAX` the sliding window script added one
/// member per permit, billions in one call, blocking the Redis server for all
/// its clients. At the maximum limit, window and `n`, a call now adds one
/// member and runs a bounded number of commands. Runs on a `redis-server` of
/// its own, so its command counts are exact (and a regression harms nobody).
async fn sliding_window_at_the_maximum<B: Backend>(redis: &support::PrivateRedis, backend: B) {
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let name = unique("max");
    let max_window = Duration::from_millis(31_536_000_000);
    let limiter = RedisLimiter::builder(
        backend,
        name.clone(),
        Algorithm::SlidingWindow {
            limit: u32::MAX,
            window: max_window,
        },
    )
    .timeout(Duration::from_secs(60))
    .on_failure(FailurePolicy::FailClosed)
    .build()
    .unwrap();
    let hang = Duration::from_secs(30);
    let before = command_calls(&mut conn).await;
    let mut script_calls = 0;
    // The whole limit in one call, then a denial at the maximum.
    tokio::time::timeout(hang, limiter.try_acquire("k", u32::MAX))
        .await
        .expect("a call at the maximum hung")
        .unwrap();
    let denied = tokio::time::timeout(hang, limiter.try_acquire("k", u32::MAX))
        .await
        .expect("a call at the maximum hung")
        .unwrap_err();
    assert_eq!(denied.reason, DenyReason::RateExceeded);
    assert!(
        denied.retry_after > max_window - Duration::from_secs(60)
            && denied.retry_after <= max_window
    );
    script_calls += 2;
    // 300 more admitted calls of random sizes on another key, then denials.
    let mut granted = 0u64;
    for i in 0..300u32 {
        let n = 1 + i.wrapping_mul(2_654_435_761) % 1_000_000;
        limiter.try_acquire("many", n).await.unwrap();
        granted += u64::from(n);
    }
    for _ in 0..20 {
        let n = u32::MAX - 1000;
        assert!(limiter.try_acquire("many", n).await.is_err());
    }
    script_calls += 320;
    assert_eq!(limiter.stats().errors, 0);
    let after = command_calls(&mut conn).await;
    let delta = |c: &str| after.get(c).copied().unwrap_or(0) - before.get(c).copied().unwrap_or(0);
    // One member per admitted call, whatever n.
    assert_eq!(delta("zadd"), 301);
    let card = |key: String| {
        let mut conn = conn.clone();
        async move {
            redis::cmd("ZCARD")
                .arg(key)
                .query_async::<u64>(&mut conn)
                .await
                .unwrap()
        }
    };
    assert_eq!(card(format!("{{{name}:k}}:sw")).await, 1);
    assert_eq!(card(format!("{{{name}:many}}:sw")).await, 300);
    let newest: Vec<String> = redis::cmd("ZRANGE")
        .arg(format!("{{{name}:many}}:sw"))
        .arg(-1)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        newest,
        [granted.to_string()],
        "the running total of permits"
    );
    // Every command the scripts ran (TIME, ZRANGE, …): bounded per call; a
    // denial's binary search over 300 members takes about 9 probes.
    let total: u64 = after
        .iter()
        .filter(|(c, _)| {
            ![
                "info",
                "evalsha",
                "eval",
                "script|load",
                "hello",
                "client|setinfo",
                "client|setname",
                "ping",
                "select",
                "zcard",
            ]
            .contains(&c.as_str())
        })
        .map(|(c, _)| after[c] - before.get(c).copied().unwrap_or(0))
        .sum();
    assert!(
        total <= script_calls * 20,
        "{total} commands for {script_calls} calls: {after:?}"
    );
    let memory: u64 = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(format!("{{{name}:many}}:sw"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(memory < 64 * 1024, "{memory} bytes for 300 members");
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!("{{{name}:k}}:sw"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 31_535_000_000 && ttl <= 31_536_000_002, "pttl {ttl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sliding_window_at_the_maximum_on_redis_rs() {
    let redis = support::PrivateRedis::start();
    let backend = redis_rs(&redis.url()).await;
    sliding_window_at_the_maximum(&redis, backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sliding_window_at_the_maximum_on_fred() {
    let redis = support::PrivateRedis::start();
    let backend = fred(&redis.url()).await;
    sliding_window_at_the_maximum(&redis, backend).await;
}
