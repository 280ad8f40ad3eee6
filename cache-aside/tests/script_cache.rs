//! The cache's Lua scripts when Redis forgets them (`SCRIPT FLUSH`, a
//! restart, a failover): no call fails, through either client, on every
//! topology. Every test here flushes the script cache of every data node,
//! so each carries `script_cache` in its name (nextest runs those one at a
//! time: other suites count script loads).

#![cfg(any(feature = "redis", feature = "fred"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures::future::join_all;
use seckill_cache_aside::{Backfill, Cache, Cached, OnRedisError, Options};
use support::{Connect, Topo, admin, data_nodes, flush_scripts, namespace, node};

/// Scripts are reloaded after the server forgets them.
async fn script_cache_flushed_once_is_reloaded(client: impl Connect) {
    let key = format!("{}:flush", namespace());
    let cache = Cache::new(
        client.connect().await,
        Options::default().backfill(Backfill::Lease),
    )
    .unwrap();
    cache
        .get_or_load(&key, || async { Ok::<_, String>(Some(1u32)) })
        .await
        .unwrap();
    cache.invalidate(&key).await.unwrap();
    flush_scripts(client.topo()).await;
    let got = cache
        .get_or_load(&key, || async { Ok::<_, String>(Some(2u32)) })
        .await
        .unwrap();
    assert_eq!(got, Some(2));
    assert_eq!(cache.peek::<u32>(&key).await.unwrap(), Cached::Value(2));
    assert_eq!(cache.stats().redis_errors, 0);
}

/// Sends `SCRIPT FLUSH` to every data node of `topo`, over and over, until
/// `stop`; counts the rounds.
fn flush_repeatedly(
    topo: Topo,
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut nodes = Vec::new();
        for url in data_nodes(topo).await {
            nodes.push(node(&url).await);
        }
        while !stop.load(Ordering::SeqCst) {
            for conn in &mut nodes {
                let _: () = redis::cmd("SCRIPT")
                    .arg("FLUSH")
                    .query_async(conn)
                    .await
                    .unwrap();
            }
            rounds.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
        }
    })
}

/// Rounds of calls on the single server; half as many on the cluster and
/// the Sentinel group (2,000 calls, still hundreds of failures each before
/// the fix).
const ROUNDS: u64 = 8;
const CALLS_PER_ROUND: u64 = 500;

/// The defect: the redis-rs adapter ran scripts as `EVALSHA`, then on
/// `NOSCRIPT` `SCRIPT LOAD` and `EVALSHA` again, so a flush between those
/// two surfaced `NOSCRIPT` to the caller (a failed read with
/// `OnRedisError::Fail`, else a degraded read and a lost fill); fred's
/// adapter fell back to `EVAL` and did not. Now both go through
/// `seckill-redis`, which falls back to `EVAL`.
///
/// 4,000 lease-mode misses (2,000 on the cluster and Sentinel; each runs `take_lease` and `fill_lease`; every
/// fourth key first holds foreign bytes, deleted by `del_if_equal`), 500 at
/// a time, while another task flushes the script cache of every data node
/// back to back (at least one full flush of every node between two rounds):
/// every call answers its value, no Redis call fails, every fill lands.
async fn script_cache_flushed_repeatedly_fails_no_call(client: impl Connect) {
    let topo = client.topo();
    let ns = namespace();
    let admin = admin(topo).await;
    let cache = Cache::new(
        client.connect().await,
        Options::default()
            .backfill(Backfill::Lease)
            .on_redis_error(OnRedisError::Fail)
            .double_delete_delay(Duration::ZERO)
            .redis_timeout(Duration::from_secs(30))
            .lease_wait(Duration::from_secs(30)),
    )
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flushes = Arc::new(AtomicU64::new(0));
    let flusher = flush_repeatedly(topo, stop.clone(), flushes.clone());
    let rounds = match topo {
        Topo::Single => ROUNDS,
        Topo::Cluster | Topo::Sentinel => ROUNDS / 2,
    };

    for round in 0..rounds {
        let seen = flushes.load(Ordering::SeqCst);
        support::eventually("a flush of every node", async || {
            flushes.load(Ordering::SeqCst) > seen
        })
        .await;
        let keys: Vec<(u64, String)> = (round * CALLS_PER_ROUND..(round + 1) * CALLS_PER_ROUND)
            .map(|i| (i, format!("{ns}:{i}")))
            .collect();
        for (i, key) in &keys {
            if i % 4 == 0 {
                admin.set(key, b"foreign bytes").await;
            }
        }
        let calls = keys.into_iter().map(|(i, key)| {
            let cache = cache.clone();
            tokio::spawn(async move {
                let got = cache
                    .get_or_load(&key, || async move { Ok::<_, String>(Some(i)) })
                    .await;
                (i, got)
            })
        });
        for call in join_all(calls).await {
            let (i, got) = call.unwrap();
            match got {
                Ok(value) => assert_eq!(value, Some(i)),
                Err(e) => panic!("call {i} failed while scripts were flushed: {e}"),
            }
        }
    }
    stop.store(true, Ordering::SeqCst);
    flusher.await.unwrap();

    let stats = cache.stats();
    let calls = rounds * CALLS_PER_ROUND;
    assert_eq!(
        (
            stats.loads,
            stats.redis_errors,
            stats.degraded,
            stats.fills_refused
        ),
        (calls, 0, 0, 0),
        "{stats:?}"
    );
    assert!(flushes.load(Ordering::SeqCst) >= rounds);
    for i in [0, calls / 2 + 1, calls - 1] {
        let key = format!("{ns}:{i}");
        assert_eq!(cache.peek::<u64>(&key).await.unwrap(), Cached::Value(i));
    }
    admin.delete_under(&ns).await;
}

on_every_topology!(async:
    script_cache_flushed_once_is_reloaded,
    script_cache_flushed_repeatedly_fails_no_call,
);
