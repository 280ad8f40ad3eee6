//! Redis going away or stalling mid-test, on every topology through both
//! clients: each failure policy holds, the Redis error is kept (as
//! seckill-redis classifies it), nothing panics, and the limiter returns to
//! Redis when it is back. Each test runs a deployment of its own on spare
//! ports (a single `redis-server`, a 3-primary Cluster, a primary with one
//! Sentinel) and stops only that, so other tests keep their Redis.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[macro_use]
mod support;

use std::time::Duration;

use seckill_ratelimit::{Algorithm, DenyReason, FailurePolicy, LuaScript, RedisLimiter};
use seckill_redis::{Connection, Value};
use support::{PrivateRedis, unique};

const BUCKET: Algorithm = Algorithm::TokenBucket {
    rate_per_sec: 1,
    burst: 3,
};

/// Long enough that a live Redis on a loaded machine always answers (the
/// outcomes before the outage must be Redis's), short enough that a call
/// fred holds while it reconnects ends soon.
const TIMEOUT: Duration = Duration::from_secs(2);

/// While on the policy, one call per 200 ms tries Redis: a loop of calls in
/// an outage costs one timeout, not one per call.
const PROBE: Duration = Duration::from_millis(200);

fn limiter<C: Connection>(conn: C, name: &str, policy: FailurePolicy) -> RedisLimiter<C> {
    RedisLimiter::builder(conn, name, BUCKET)
        .on_failure(policy)
        .timeout(TIMEOUT)
        .probe_interval(PROBE)
        .build()
        .unwrap()
}

/// Loads `script` now (the connection's own timeout, 5 s), so the limiter's
/// first call on a fresh deployment is one round trip.
async fn warm<C: Connection>(conn: &C, script: LuaScript) {
    script.script().load(conn).await.unwrap();
}

/// Three from Redis, then denied by Redis.
async fn redis_decides<C: Connection>(limiter: &RedisLimiter<C>, key: &str) {
    for _ in 0..3 {
        limiter.try_acquire(key, 1).await.unwrap();
    }
    assert_eq!(
        limiter.try_acquire(key, 1).await.unwrap_err().reason,
        DenyReason::RateExceeded
    );
    assert!(!limiter.stats().on_policy);
    assert_eq!(limiter.stats().errors, 0);
}

/// Calls until the limiter is back on Redis (bounded at 30 s: a liveness
/// bound, not a timing assertion).
async fn until_recovered<C: Connection>(limiter: &RedisLimiter<C>) {
    for _ in 0..600 {
        let _ = limiter.try_acquire("probe", 1).await;
        if limiter.stats().recoveries == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the limiter never returned to Redis: {:?}, last error {:?}",
        limiter.stats(),
        limiter.last_error()
    );
}

/// The latest failure is a lost connection or no reply in time, as
/// seckill-redis classifies it: retryable, outcome unknown.
fn assert_connection_lost<C: Connection>(limiter: &RedisLimiter<C>) {
    let error = limiter.last_error().expect("a failure is kept");
    assert!(
        matches!(
            error.redis_error(),
            seckill_redis::Error::Connection { .. } | seckill_redis::Error::Timeout { .. }
        ),
        "{error:?}"
    );
    assert!(error.redis_error().is_retryable(), "{error:?}");
}

async fn policy_holds_and_recovers<C: Connection>(
    redis: &mut PrivateRedis,
    conn: C,
    policy: FailurePolicy,
) {
    let name = unique("failover");
    warm(&conn, LuaScript::TokenBucket).await;
    let limiter = limiter(conn.clone(), &name, policy);
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
    assert_connection_lost(&limiter);

    redis.restart();
    until_recovered(&limiter).await;
    let stats = limiter.stats();
    assert!(!stats.on_policy);
    assert_eq!((stats.outages, stats.recoveries), (1, 1));
    // Back on Redis: the state is written there again.
    limiter.try_acquire("after", 1).await.unwrap();
    let exists = seckill_redis::command(&conn, "EXISTS", &[&format!("{{{name}:after}}:tb")], &[])
        .await
        .unwrap();
    assert_eq!(exists, Value::Int(1));
}

async fn fail_open<C: Connection>(redis: &mut PrivateRedis, conn: C) {
    policy_holds_and_recovers(redis, conn, FailurePolicy::FailOpen).await;
}

async fn fail_closed<C: Connection>(redis: &mut PrivateRedis, conn: C) {
    policy_holds_and_recovers(redis, conn, FailurePolicy::FailClosed).await;
}

async fn fallback<C: Connection>(redis: &mut PrivateRedis, conn: C) {
    policy_holds_and_recovers(redis, conn, FailurePolicy::Fallback { instances: 1 }).await;
}

async fn fallback_splits_the_limit_between_instances<C: Connection>(
    redis: &mut PrivateRedis,
    conn: C,
) {
    warm(&conn, LuaScript::TokenBucket).await;
    let limiter = RedisLimiter::builder(
        conn,
        unique("split"),
        Algorithm::TokenBucket {
            rate_per_sec: 1,
            burst: 10,
        },
    )
    .on_failure(FailurePolicy::Fallback { instances: 4 })
    .timeout(TIMEOUT)
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
    assert_eq!(
        limiter.try_acquire("k", 1).await.unwrap_err().reason,
        DenyReason::RateExceeded
    );
    assert!(limiter.fallback_is_built());
    assert_eq!(limiter.stats().errors, 1, "no Redis call between probes");
    assert_connection_lost(&limiter);
}

/// A sliding window too large to hold exactly in process falls back to a
/// fixed window of half its share: never more than the share in any window.
async fn a_huge_sliding_window_falls_back_within_its_share<C: Connection>(
    redis: &mut PrivateRedis,
    conn: C,
) {
    let limiter = RedisLimiter::builder(
        conn,
        unique("huge"),
        Algorithm::SlidingWindow {
            limit: 40_000,
            window: Duration::from_secs(3600),
        },
    )
    .on_failure(FailurePolicy::Fallback { instances: 4 })
    .timeout(TIMEOUT)
    .probe_interval(Duration::from_secs(3600))
    .build()
    .unwrap();
    redis.stop();
    // Share 10,000 > 1,024: a fixed window of 5,000 per aligned hour (the
    // hour may turn during the test: then up to twice that).
    let mut admitted = 0u32;
    for _ in 0..20 {
        if limiter.try_acquire("k", 1_000).await.is_ok() {
            admitted += 1_000;
        }
    }
    assert!((5_000..=10_000).contains(&admitted), "{admitted}");
    assert_eq!(limiter.stats().errors, 1);
}

/// Redis alive but not answering (`CLIENT PAUSE` on every data node, longer
/// than the timeout): the limiter's own timeout ends the call, kept as
/// seckill-redis's `Timeout` naming that timeout, and the policy decides.
async fn a_stalled_redis_times_out<C: Connection>(redis: &mut PrivateRedis, conn: C) {
    warm(&conn, LuaScript::TokenBucket).await;
    let limiter = RedisLimiter::builder(conn, unique("stall"), BUCKET)
        .on_failure(FailurePolicy::FailClosed)
        .timeout(TIMEOUT)
        .probe_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    limiter.try_acquire("k", 1).await.unwrap();
    redis.pause(20_000);
    assert_eq!(
        limiter.try_acquire("k", 1).await.unwrap_err().reason,
        DenyReason::BackendUnavailable
    );
    let error = limiter.last_error().expect("the timeout is kept");
    assert!(
        matches!(
            error.redis_error(),
            seckill_redis::Error::Timeout { after } if *after == TIMEOUT
        ),
        "{error:?}"
    );
    let stats = limiter.stats();
    assert_eq!((stats.errors, stats.outages, stats.recoveries), (1, 1, 0));
    assert!(stats.on_policy);
}

on_every_private_topology!(
    fail_open,
    fail_closed,
    fallback,
    fallback_splits_the_limit_between_instances,
    a_huge_sliding_window_falls_back_within_its_share,
    a_stalled_redis_times_out,
);
