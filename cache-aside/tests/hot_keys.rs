//! Requirement 7: the optional front cache and key replicas (on a cluster:
//! copies in distinct slots, on every primary).

// Every test here needs a client adapter.
#![cfg(any(feature = "redis", feature = "fred"))]
// Test bodies shared by both clients are plain async fns, not #[test]s.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use seckill_cache_aside::{Backfill, Cache, Cached, Options};
use support::{Connect, Topo, admin, namespace, primaries, scan};

/// Off by default: a read after a delete behind the cache's back reloads.
async fn front_cache_is_off_by_default(client: impl Connect) {
    let key = format!("{}:k", namespace());
    let cache = Cache::new(client.connect().await, Options::default()).unwrap();
    cache.set(&key, &1u32).await.unwrap();
    admin(client.topo()).await.del(&key).await;
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
    admin(client.topo()).await.del(&key).await;
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

/// Where the copies of `key` are: for each primary, the copies it holds
/// (found by SCAN on each primary, so this is where Redis put them).
async fn copies_by_primary(topo: Topo, key: &str) -> Vec<Vec<String>> {
    let mut by_primary = Vec::new();
    for primary in primaries(topo).await {
        let mut here = scan(&primary, key).await;
        here.retain(|k| k != key);
        here.sort();
        by_primary.push(here);
    }
    by_primary
}

/// Replicas: `set` writes every copy, `invalidate` deletes every copy,
/// reads spread over them, each copy is filled on its own miss. Six copies
/// of a plain and of a hash-tagged key lie in six distinct slots and, on
/// the 3-primary cluster (whose primaries own equal slot ranges), on every
/// primary.
async fn replicas_spread_a_hot_key(client: impl Connect) {
    const N: u32 = 6;
    let topo = client.topo();
    let admin = admin(topo).await;
    let ns = namespace();
    for key in [format!("{ns}:hot"), format!("{{{ns}}}:hot")] {
        let cache = Cache::new(
            client.connect().await,
            Options::default()
                .replicas(N)
                .double_delete_delay(Duration::ZERO),
        )
        .unwrap();
        // Copies are named in the hashed part: after the key, or inside its tag.
        let stem = match key.strip_prefix('{') {
            Some(_) => format!("{{{ns}#"),
            None => format!("{key}#"),
        };

        cache.set(&key, &1u32).await.unwrap();
        let by_primary = copies_by_primary(topo, &stem).await;
        let copies: Vec<String> = by_primary.iter().flatten().cloned().collect();
        assert_eq!(copies.len(), N as usize, "{key}: {by_primary:?}");
        assert!(
            by_primary.iter().all(|here| !here.is_empty()),
            "every primary holds a copy of {key}: {by_primary:?}"
        );
        assert!(!admin.exists(&key).await, "the key itself is not a copy");
        if topo == Topo::Cluster {
            let mut slots = Vec::new();
            for copy in &copies {
                slots.push(admin.slot(copy).await);
            }
            slots.sort();
            slots.dedup();
            assert_eq!(slots.len(), N as usize, "distinct slots: {copies:?}");
            assert_eq!(by_primary.len(), 3, "the test cluster has 3 primaries");
        }

        // Mark each copy to see which one a read used.
        for (i, copy) in copies.iter().enumerate() {
            admin
                .set(copy, &[&[0xFA][..], i.to_string().as_bytes()].concat())
                .await;
        }
        let mut seen = [0usize; N as usize];
        for _ in 0..600 {
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
        let left = copies_by_primary(topo, &stem).await;
        assert!(
            left.iter().all(Vec::is_empty),
            "every copy deleted: {left:?}"
        );

        let loads = AtomicUsize::new(0);
        for _ in 0..600 {
            let got = cache
                .get_or_load(&key, || async {
                    loads.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, String>(Some(5u32))
                })
                .await
                .unwrap();
            assert_eq!(got, Some(5));
        }
        assert_eq!(
            loads.load(Ordering::SeqCst),
            N as usize,
            "one load per copy"
        );
        assert_eq!(cache.peek::<u32>(&key).await.unwrap(), Cached::Value(5));
        cache.invalidate(&key).await.unwrap();
    }
}

/// Lease mode with replicas: a reader's fill of the copy it read is refused
/// after an `invalidate` (the delete revoked that copy's lease), and every
/// copy is gone after the invalidation, on every topology.
async fn replicas_keep_the_lease_guarantee(client: impl Connect) {
    let topo = client.topo();
    let key = format!("{}:hot", namespace());
    let cache = Cache::new(
        client.connect().await,
        Options::default()
            .replicas(4)
            .backfill(Backfill::Lease)
            .double_delete_delay(Duration::ZERO),
    )
    .unwrap();
    let (loaded_tx, loaded_rx) = tokio::sync::oneshot::channel();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let reader = {
        let (cache, key) = (cache.clone(), key.clone());
        tokio::spawn(async move {
            cache
                .get_or_load(&key, || async move {
                    let _ = loaded_tx.send(());
                    let _ = release_rx.await;
                    Ok::<_, String>(Some("old".to_string()))
                })
                .await
        })
    };
    loaded_rx.await.unwrap();
    // One copy holds the reader's lease now.
    assert_eq!(
        copies_by_primary(topo, &format!("{key}#"))
            .await
            .concat()
            .len(),
        1
    );
    cache.invalidate(&key).await.unwrap();
    release_tx.send(()).unwrap();
    assert_eq!(reader.await.unwrap().unwrap(), Some("old".to_string()));
    assert_eq!(cache.stats().fills_refused, 1);
    let left = copies_by_primary(topo, &format!("{key}#")).await;
    assert!(
        left.iter().all(Vec::is_empty),
        "no copy holds the old row: {left:?}"
    );
}

on_every_topology!(async:
    front_cache_is_off_by_default,
    front_cache_serves_hot_keys_in_process,
    replicas_spread_a_hot_key,
    replicas_keep_the_lease_guarantee,
);
