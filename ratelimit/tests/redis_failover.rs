//! Redis going away mid-test: each failure policy holds, nothing panics, and
//! the limiter returns to Redis when it is back. Each test runs its own
//! `redis-server` on a spare port, so other tests keep their Redis.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::time::Duration;

use seckill_ratelimit::{Algorithm, Backend, DenyReason, FailurePolicy, RedisLimiter};
use support::{PrivateRedis, fred, redis_rs, unique};

const BUCKET: Algorithm = Algorithm::TokenBucket {
    rate_per_sec: 1,
    burst: 3,
};

async fn limiter<B: Backend>(backend: B, name: &str, policy: FailurePolicy) -> RedisLimiter<B> {
    RedisLimiter::builder(backend, name, BUCKET)
        .on_failure(policy)
        .timeout(Duration::from_millis(300))
        .probe_interval(Duration::ZERO)
        .build()
        .unwrap()
}

/// Three from Redis, then denied by Redis.
async fn redis_decides<B: Backend>(limiter: &RedisLimiter<B>, key: &str) {
    for _ in 0..3 {
        limiter.try_acquire(key, 1).await.unwrap();
    }
    assert_eq!(
        limiter.try_acquire(key, 1).await.unwrap_err().reason,
        DenyReason::RateExceeded
    );
    assert!(!limiter.stats().on_policy);
}

/// Calls until the limiter is back on Redis (bounded, no timing assertion).
async fn until_recovered<B: Backend>(limiter: &RedisLimiter<B>) {
    for _ in 0..200 {
        let _ = limiter.try_acquire("probe", 1).await;
        if limiter.stats().recoveries == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the limiter never returned to Redis: {:?}", limiter.stats());
}

async fn exists(redis: &PrivateRedis, key: &str) -> bool {
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    redis::cmd("EXISTS")
        .arg(key)
        .query_async::<u32>(&mut conn)
        .await
        .unwrap()
        == 1
}

async fn policy_holds_and_recovers<B: Backend>(
    redis: &mut PrivateRedis,
    backend: B,
    policy: FailurePolicy,
) {
    let name = unique("failover");
    let limiter = limiter(backend, &name, policy).await;
    redis_decides(&limiter, "k").await;

    redis.stop();
    match policy {
        FailurePolicy::FailOpen => {
            for _ in 0..10 {
                limiter.try_acquire("k", 1).await.unwrap();
            }
        }
        FailurePolicy::FailClosed => {
            for _ in 0..3 {
                let denied = limiter.try_acquire("k", 1).await.unwrap_err();
                assert_eq!(denied.reason, DenyReason::BackendUnavailable);
            }
        }
        _ => {
            // The in-process fallback enforces the same bucket: 3, then no.
            for _ in 0..3 {
                limiter.try_acquire("k", 1).await.unwrap();
            }
            assert_eq!(
                limiter.try_acquire("k", 1).await.unwrap_err().reason,
                DenyReason::RateExceeded
            );
        }
    }
    let stats = limiter.stats();
    assert!(stats.on_policy);
    assert_eq!(stats.outages, 1, "one switch however many calls: {stats:?}");
    assert!(stats.errors >= 1);
    assert!(stats.decided_by_policy >= 3);

    redis.restart();
    until_recovered(&limiter).await;
    let stats = limiter.stats();
    assert!(!stats.on_policy);
    assert_eq!((stats.outages, stats.recoveries), (1, 1));
    // Back on Redis: the state is written there again.
    limiter.try_acquire("after", 1).await.unwrap();
    assert!(exists(redis, &format!("{{{name}:after}}:tb")).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_on_redis_rs() {
    let mut redis = PrivateRedis::start();
    let backend = redis_rs(&redis.url()).await;
    policy_holds_and_recovers(&mut redis, backend, FailurePolicy::FailOpen).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_on_redis_rs() {
    let mut redis = PrivateRedis::start();
    let backend = redis_rs(&redis.url()).await;
    policy_holds_and_recovers(&mut redis, backend, FailurePolicy::FailClosed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_on_redis_rs() {
    let mut redis = PrivateRedis::start();
    let backend = redis_rs(&redis.url()).await;
    policy_holds_and_recovers(
        &mut redis,
        backend,
        FailurePolicy::Fallback { instances: 1 },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_on_fred() {
    let mut redis = PrivateRedis::start();
    let backend = fred(&redis.url()).await;
    policy_holds_and_recovers(
        &mut redis,
        backend,
        FailurePolicy::Fallback { instances: 1 },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_on_fred() {
    let mut redis = PrivateRedis::start();
    let backend = fred(&redis.url()).await;
    policy_holds_and_recovers(&mut redis, backend, FailurePolicy::FailClosed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_on_fred() {
    let mut redis = PrivateRedis::start();
    let backend = fred(&redis.url()).await;
    policy_holds_and_recovers(&mut redis, backend, FailurePolicy::FailOpen).await;
}

async fn fallback_splits_the_limit_between_instances<B: Backend>(
    redis: &mut PrivateRedis,
    backend: B,
) {
    let limiter = RedisLimiter::builder(
        backend,
        unique("split"),
        Algorithm::TokenBucket {
            rate_per_sec: 1,
            burst: 10,
        },
    )
    .on_failure(FailurePolicy::Fallback { instances: 4 })
    .timeout(Duration::from_millis(300))
    .probe_interval(Duration::from_secs(3600))
    .build()
    .unwrap();
    limiter.try_acquire("k", 1).await.unwrap();
    assert!(!limiter.fallback_is_built(), "built only once Redis fails");
    redis.stop();
    // ceil(10 / 4) = 3 on this instance; no probe within the hour.
    for _ in 0..3 {
        limiter.try_acquire("k", 1).await.unwrap();
    }
    assert!(limiter.try_acquire("k", 1).await.is_err());
    assert!(limiter.fallback_is_built());
    assert_eq!(limiter.stats().errors, 1, "no Redis call between probes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_splits_the_limit_between_instances_on_redis_rs() {
    let mut redis = PrivateRedis::start();
    let backend = redis_rs(&redis.url()).await;
    fallback_splits_the_limit_between_instances(&mut redis, backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_splits_the_limit_between_instances_on_fred() {
    let mut redis = PrivateRedis::start();
    let backend = fred(&redis.url()).await;
    fallback_splits_the_limit_between_instances(&mut redis, backend).await;
}

/// A sliding window too large to hold exactly in process falls back to a
/// fixed window of half its share: never more than the share in any window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_sliding_window_falls_back_within_its_share() {
    let mut redis = PrivateRedis::start();
    let backend = redis_rs(&redis.url()).await;
    let limiter = RedisLimiter::builder(
        backend,
        unique("huge"),
        Algorithm::SlidingWindow {
            limit: 40_000,
            window: Duration::from_secs(3600),
        },
    )
    .on_failure(FailurePolicy::Fallback { instances: 4 })
    .timeout(Duration::from_millis(300))
    .probe_interval(Duration::from_secs(3600))
    .build()
    .unwrap();
    redis.stop();
    // Share 10,000 > 1,024: a fixed window of 5,000 per aligned hour.
    let mut admitted = 0u32;
    for _ in 0..20 {
        if limiter.try_acquire("k", 1_000).await.is_ok() {
            admitted += 1_000;
        }
    }
    assert!((5_000..=10_000).contains(&admitted), "{admitted}");
    assert_eq!(limiter.stats().errors, 1);
}
