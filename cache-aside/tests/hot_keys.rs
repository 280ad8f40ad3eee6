//! Requirement 7: the optional front cache and key replicas.

// Every test here needs a client adapter.
#![cfg(any(feature = "redis", feature = "fred"))]
// Test bodies shared by both clients are plain async fns, not #[test]s.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use seckill_cache_aside::{Cache, Cached, Options};
use support::{Connect, admin, exists, namespace};

/// Off by default: a read after a delete behind the cache's back reloads.
async fn front_cache_is_off_by_default(client: impl Connect) {
    let key = format!("{}:k", namespace());
    let cache = Cache::new(client.connect().await, Options::default()).unwrap();
    cache.set(&key, &1u32).await.unwrap();
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut admin().await)
        .await
        .unwrap();
    let got = cache
        .get_or_load(&key, || async { Ok::<_, String>(Some(2u32)) })
        .await
        .unwrap();
    assert_eq!((got, cache.stats().front_hits), (Some(2), 0));
}

/// With a front cache, repeated reads skip Redis; `invalidate` clears it.
async fn front_cache_serves_hot_keys_in_process(client: impl Connect) {
    let key = format!("{}:k", namespace());
    let cache = Cache::new(
        client.connect().await,
        Options::default().front_cache(100, Duration::from_secs(60)),
    )
    .unwrap();
    let loads = AtomicUsize::new(0);
    let load = |v: u32| {
        let loads = &loads;
        move || async move {
            loads.fetch_add(1, Ordering::SeqCst);
            Ok::<_, String>(Some(v))
        }
    };
    assert_eq!(cache.get_or_load(&key, load(1)).await.unwrap(), Some(1));
    // Deleted behind the cache's back: the front cache still answers.
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut admin().await)
        .await
        .unwrap();
    for _ in 0..100 {
        assert_eq!(cache.get_or_load(&key, load(9)).await.unwrap(), Some(1));
    }
    assert_eq!(
        (loads.load(Ordering::SeqCst), cache.stats().front_hits),
        (1, 100)
    );
    cache.invalidate(&key).await.unwrap();
    assert_eq!(cache.get_or_load(&key, load(2)).await.unwrap(), Some(2));
    cache.set(&key, &3u32).await.unwrap();
    assert_eq!(cache.get_or_load(&key, load(9)).await.unwrap(), Some(3));
    assert_eq!(loads.load(Ordering::SeqCst), 2);
}

/// Replicas: writes and invalidations touch every copy; reads spread over
/// them; each copy is filled on its own miss.
async fn replicas_spread_a_hot_key(client: impl Connect) {
    let key = format!("{}:k", namespace());
    let copies: Vec<String> = std::iter::once(key.clone())
        .chain((1..4).map(|i| format!("{key}#r{i}")))
        .collect();
    let cache = Cache::new(
        client.connect().await,
        Options::default()
            .replicas(4)
            .double_delete_delay(Duration::ZERO),
    )
    .unwrap();
    let mut admin = admin().await;

    cache.set(&key, &1u32).await.unwrap();
    for copy in &copies {
        assert!(exists(&mut admin, copy).await, "{copy} written");
    }
    // Mark each copy to see which one a read used.
    for (i, copy) in copies.iter().enumerate() {
        let _: () = redis::cmd("SET")
            .arg(copy)
            .arg([&[0xFA][..], i.to_string().as_bytes()].concat())
            .query_async(&mut admin)
            .await
            .unwrap();
    }
    let mut seen = [0usize; 4];
    for _ in 0..400 {
        let got = cache
            .get_or_load(&key, || async { Ok::<_, String>(None) })
            .await
            .unwrap();
        seen[got.unwrap_or(99) as usize] += 1;
    }
    assert!(
        seen.iter().all(|&n| n > 0),
        "reads spread over every copy: {seen:?}"
    );

    cache.invalidate(&key).await.unwrap();
    for copy in &copies {
        assert!(!exists(&mut admin, copy).await, "{copy} deleted");
    }
    let loads = AtomicUsize::new(0);
    for _ in 0..400 {
        let got = cache
            .get_or_load(&key, || async {
                loads.fetch_add(1, Ordering::SeqCst);
                Ok::<_, String>(Some(5u32))
            })
            .await
            .unwrap();
        assert_eq!(got, Some(5));
    }
    assert_eq!(loads.load(Ordering::SeqCst), 4, "one load per copy");
    assert_eq!(cache.peek::<u32>(&key).await.unwrap(), Cached::Value(5));
}

both_clients!(
    front_cache_is_off_by_default,
    front_cache_serves_hot_keys_in_process,
    replicas_spread_a_hot_key,
);
