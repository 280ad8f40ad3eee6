//! The Redis limiters against the real Redis, through both clients.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use seckill_ratelimit::{Algorithm, Backend, ConfigError, DenyReason, RedisLimiter};
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
    // Both keys share one hash tag and expire one window after the last admission.
    let mut conn = raw().await;
    let exists: u32 = redis::cmd("EXISTS")
        .arg(format!("{{{name}:ip}}:sw"))
        .arg(format!("{{{name}:ip}}:sw:seq"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(exists, 2);
    let ttl = pttl(&format!("{{{name}:ip}}:sw:seq")).await;
    assert!((9_000..=10_001).contains(&ttl), "pttl {ttl}");
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
    let err = |a| RedisLimiter::new(backend(), "x", a).unwrap_err();
    assert_eq!(
        err(Algorithm::TokenBucket {
            rate_per_sec: 0,
            burst: 1
        }),
        ConfigError::ZeroRate
    );
    assert_eq!(
        err(Algorithm::LeakyBucket {
            rate_per_sec: 1,
            capacity: 0
        }),
        ConfigError::ZeroCapacity
    );
    assert_eq!(
        err(Algorithm::SlidingWindow {
            limit: 1,
            window: Duration::from_micros(10)
        }),
        ConfigError::WindowTooShort
    );
    // n above the burst and n == 0 never reach Redis.
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
}
