//! Failures of a real Redis: refused commands (ACL, on every node of the
//! topology) for the second delete, a connection that is cut or stalls (a
//! TCP proxy in front of a deployment of the test's own: see
//! `support::Faulty`) for reads, and dropping the cache with deletes pending.

// Every test here needs a client adapter.
#![cfg(any(feature = "redis", feature = "fred"))]
// Test bodies shared by both clients are plain async fns, not #[test]s.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use seckill_cache_aside::{Cache, Cached, DeleteFailure, Error, OnRedisError, Options, RedisError};
use support::{AclUser, Connect, Faulty, Mode, admin, namespace};

/// A cache whose user may not DEL, with `retries` second-delete retries;
/// final failures are collected in the returned list.
async fn cache_without_del<C: Connect>(
    client: C,
    retries: u32,
    backoff: Duration,
) -> (
    Cache<C::Conn>,
    String,
    AclUser,
    Arc<Mutex<Vec<DeleteFailure>>>,
) {
    let ns = namespace();
    let user = AclUser::create(client.topo(), &ns, &["-del"]).await;
    let failures = Arc::new(Mutex::new(Vec::<DeleteFailure>::new()));
    let seen = failures.clone();
    let cache = Cache::new(
        client.at(&user.url()).await,
        Options::default()
            .double_delete_delay(Duration::from_millis(1))
            .delete_retries(retries, backoff)
            .on_delete_failure(move |f| seen.lock().unwrap().push(f.clone())),
    )
    .unwrap();
    (cache, format!("{ns}:k"), user, failures)
}

/// Requirement 5: a second delete that fails (the user may not DEL) is
/// retried with backoff and succeeds once DEL is allowed again.
async fn second_delete_survives_a_transient_error(client: impl Connect) {
    let (cache, key, user, failures) =
        cache_without_del(client, 20, Duration::from_millis(5)).await;
    let admin = admin(client.topo()).await;
    cache.set(&key, &"stale".to_string()).await.unwrap();

    let first = cache.invalidate(&key).await;
    assert!(
        matches!(first, Err(Error::Redis(RedisError::Command(_)))),
        "{first:?}"
    );
    support::eventually("a second delete was retried", async || {
        cache.stats().delete_retries >= 1
    })
    .await;
    user.rule("+del").await;
    cache.flush_deletes().await;

    assert!(!admin.exists(&key).await, "the retried delete went through");
    let stats = cache.stats();
    assert_eq!((stats.delete_failures, stats.pending_deletes), (0, 0));
    assert!(failures.lock().unwrap().is_empty());
    user.delete().await;
}

/// Requirement 5: a second delete that fails on every attempt is reported
/// through the hook and the counter, never lost silently.
async fn second_delete_final_failure_is_reported(client: impl Connect) {
    let (cache, key, user, failures) = cache_without_del(client, 2, Duration::from_millis(1)).await;
    assert!(cache.invalidate(&key).await.is_err());
    cache.flush_deletes().await;

    let stats = cache.stats();
    assert_eq!(
        (
            stats.delete_retries,
            stats.delete_failures,
            stats.pending_deletes
        ),
        (2, 1, 0)
    );
    let failures = std::mem::take(&mut *failures.lock().unwrap());
    assert_eq!(failures.len(), 1);
    assert_eq!(
        (failures[0].key.as_str(), failures[0].attempts),
        (key.as_str(), 3)
    );
    user.delete().await;
}

/// Dropping the cache does not cancel a pending second delete.
async fn dropping_the_cache_keeps_pending_deletes(client: impl Connect) {
    let key = format!("{}:k", namespace());
    let cache = Cache::new(
        client.connect().await,
        Options::default().double_delete_delay(Duration::from_millis(20)),
    )
    .unwrap();
    cache.invalidate(&key).await.unwrap();
    cache
        .set(&key, &"backfilled after the first delete".to_string())
        .await
        .unwrap();
    drop(cache);
    let admin = admin(client.topo()).await;
    support::eventually("the second delete ran after the drop", async || {
        !admin.exists(&key).await
    })
    .await;
}

/// Requirement 6: Redis down (connection cut, new ones refused): reads fall
/// back to the loader and count it; writes report the error; no panic.
async fn redis_down_falls_back_to_the_loader(client: impl Connect) {
    let key = format!("{}:k", namespace());
    let proxy = Faulty::start(client.topo()).await;
    let cache = Cache::new(
        client.at(&proxy.url).await,
        Options::default().redis_timeout(Duration::from_millis(300)),
    )
    .unwrap();
    cache.set(&key, &1u32).await.unwrap();
    proxy.set(Mode::Down);

    let got = cache
        .get_or_load(&key, || async { Ok::<_, String>(Some(2u32)) })
        .await
        .unwrap();
    assert_eq!(got, Some(2), "degraded: the loader answered");
    let stats = cache.stats();
    assert!(stats.degraded >= 1 && stats.redis_errors >= 1, "{stats:?}");
    assert_eq!(stats.loads, 1);
    assert!(matches!(cache.set(&key, &3u32).await, Err(Error::Redis(_))));
    assert!(matches!(cache.invalidate(&key).await, Err(Error::Redis(_))));
}

/// Requirement 6: with `OnRedisError::Fail`, the loader is left alone.
async fn redis_down_fails_when_asked_to(client: impl Connect) {
    let key = format!("{}:k", namespace());
    let proxy = Faulty::start(client.topo()).await;
    let cache = Cache::new(
        client.at(&proxy.url).await,
        Options::default()
            .redis_timeout(Duration::from_millis(300))
            .on_redis_error(OnRedisError::Fail),
    )
    .unwrap();
    proxy.set(Mode::Down);
    let got = cache
        .get_or_load(&key, || async { Ok::<_, String>(Some(2u32)) })
        .await;
    assert!(matches!(got, Err(Error::Redis(_))), "{got:?}");
    assert_eq!(cache.stats().loads, 0);
}

/// Requirement 6: a Redis that stops answering costs at most the configured
/// timeout per call, then the loader answers (the outer timeout only stops a
/// broken build from hanging the suite).
async fn stalled_redis_is_bounded_by_the_timeout(client: impl Connect) {
    let key = format!("{}:k", namespace());
    let proxy = Faulty::start(client.topo()).await;
    let cache = Cache::new(
        client.at(&proxy.url).await,
        Options::default().redis_timeout(Duration::from_millis(100)),
    )
    .unwrap();
    assert_eq!(cache.peek::<u32>(&key).await.unwrap(), Cached::Absent);
    proxy.set(Mode::Stall);
    let read = cache.get_or_load(&key, || async { Ok::<_, String>(Some(7u32)) });
    let got = tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("get_or_load hung");
    assert_eq!(got.unwrap(), Some(7));
    assert!(matches!(
        cache.peek::<u32>(&key).await,
        Err(Error::Redis(RedisError::Timeout(_)))
    ));
    assert!(cache.stats().degraded >= 1);
}

/// Pending second deletes are bounded: with `max_pending_deletes(3)`, three
/// thousand invalidations of distinct keys (750 on a cluster or Sentinel)
/// keep three pending; the rest
/// still delete at once and are reported, never queued without bound.
async fn pending_second_deletes_are_bounded(client: impl Connect) {
    let ns = namespace();
    let failures = Arc::new(Mutex::new(Vec::<DeleteFailure>::new()));
    let seen = failures.clone();
    let cache = Cache::new(
        client.connect().await,
        Options::default()
            .double_delete_delay(Duration::from_secs(3600))
            .max_pending_deletes(3)
            .on_delete_failure(move |f| seen.lock().unwrap().push(f.clone())),
    )
    .unwrap();
    let admin = admin(client.topo()).await;
    let keys = support::scaled(client.topo(), 3000);
    for i in 0..keys {
        let key = format!("{ns}:{i}");
        cache.set(&key, &i).await.unwrap();
        cache.invalidate(&key).await.unwrap();
        assert!(!admin.exists(&key).await, "first delete of {key}");
    }
    let stats = cache.stats();
    let over = u64::from(keys - 3);
    assert_eq!((stats.pending_deletes, stats.delete_failures), (3, over));
    {
        let failures = failures.lock().unwrap();
        assert_eq!(failures.len() as u64, over);
        assert!(failures.iter().all(|f| f.attempts == 0));
        assert_eq!(failures[0].key, format!("{ns}:3"));
    }
    cache.flush_deletes().await;
    assert_eq!(cache.stats().pending_deletes, 0);
}

on_every_topology!(async:
    pending_second_deletes_are_bounded,
    second_delete_survives_a_transient_error,
    second_delete_final_failure_is_reported,
    dropping_the_cache_keeps_pending_deletes,
    redis_down_falls_back_to_the_loader,
    redis_down_fails_when_asked_to,
    stalled_redis_is_bounded_by_the_timeout,
);
