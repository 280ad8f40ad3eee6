//! Reads against the real Redis: stampede, not-found caching, TTL jitter,
//! counters, codecs, unreadable entries, shared load errors; and every
//! connection type of both clients.

// Every test here needs a client adapter.
#![cfg(any(feature = "redis", feature = "fred"))]
// Test bodies shared by both clients are plain async fns, not #[test]s.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::future::join_all;
use seckill_cache_aside::{Backfill, Cache, Cached, Connection, Error, Options, Stats};
use serde::{Deserialize, Serialize};
use support::{Connect, Topo, admin, namespace};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Sku {
    id: u64,
    name: String,
}

fn sku(id: u64) -> Sku {
    Sku {
        id,
        name: format!("sku {id}"),
    }
}

/// Requirement 1: 1,000 concurrent misses of one key run the loader once,
/// in both backfill modes.
async fn stampede_loads_once(client: impl Connect) {
    for mode in [Backfill::SetNx, Backfill::Lease] {
        let key = format!("{}:hot", namespace());
        let cache = Cache::new(client.connect().await, Options::default().backfill(mode)).unwrap();
        let loads = Arc::new(AtomicUsize::new(0));
        let callers: Vec<_> = (0..1000)
            .map(|_| {
                let (cache, loads, key) = (cache.clone(), loads.clone(), key.clone());
                tokio::spawn(async move {
                    cache
                        .get_or_load(&key, || async {
                            loads.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            Ok::<_, std::io::Error>(Some(sku(1)))
                        })
                        .await
                })
            })
            .collect();
        for caller in callers {
            assert_eq!(caller.await.unwrap().unwrap(), Some(sku(1)));
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1, "{mode:?}");
        let stats = cache.stats();
        assert_eq!(stats.loads, 1);
        assert_eq!(stats.hits + stats.misses, 1000);
        assert_eq!(
            cache.peek::<Sku>(&key).await.unwrap(),
            Cached::Value(sku(1))
        );
    }
}

/// Requirement 3: "not found" is cached for `not_found_ttl`, told apart from
/// a value and from an absent key, and a later write replaces it.
async fn not_found_is_cached_and_replaced(client: impl Connect) {
    let key = format!("{}:missing", namespace());
    let not_found_ttl = Duration::from_secs(30);
    let cache = Cache::new(
        client.connect().await,
        Options::default().not_found_ttl(not_found_ttl).jitter(0.1),
    )
    .unwrap();
    assert_eq!(cache.peek::<Sku>(&key).await.unwrap(), Cached::Absent);

    let loads = AtomicUsize::new(0);
    let load = || async {
        loads.fetch_add(1, Ordering::SeqCst);
        Ok::<Option<Sku>, std::io::Error>(None)
    };
    assert_eq!(cache.get_or_load(&key, load).await.unwrap(), None);
    assert_eq!(cache.get_or_load(&key, load).await.unwrap(), None);
    assert_eq!(
        loads.load(Ordering::SeqCst),
        1,
        "the second read hit the marker"
    );
    assert_eq!(cache.peek::<Sku>(&key).await.unwrap(), Cached::NotFound);

    let admin = admin(client.topo()).await;
    let pttl = admin.pttl(&key).await;
    assert!(
        pttl > 0 && pttl <= 33_000,
        "not-found TTL {pttl} ms outside (0, 33000]"
    );

    // A value that serializes like the marker is still a value.
    cache.set(&key, &"n".to_string()).await.unwrap();
    assert_eq!(
        cache.peek::<String>(&key).await.unwrap(),
        Cached::Value("n".to_string())
    );
    cache.set(&key, &sku(9)).await.unwrap();
    let read: Option<Sku> = cache.get_or_load(&key, load).await.unwrap();
    assert_eq!(read, Some(sku(9)));
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    let pttl = admin.pttl(&key).await;
    assert!(
        pttl > 33_000,
        "the write replaced the marker's TTL, got {pttl}"
    );
    assert_eq!(cache.stats().not_found_hits, 1);
}

/// Requirement 4: TTLs of 10,000 keys (2,500 on a cluster or Sentinel)
/// written together spread over [ttl·(1−j), ttl·(1+j)], none outside.
async fn ttls_spread_inside_the_jitter_band(client: impl Connect) {
    let ns = namespace();
    let keys = u64::from(support::scaled(client.topo(), 10_000));
    let ttl = Duration::from_secs(1000);
    let cache = Cache::new(
        client.connect().await,
        Options::default()
            .ttl(ttl)
            .jitter(0.1)
            .redis_timeout(Duration::from_secs(30)),
    )
    .unwrap();
    let started = Instant::now();
    let writers: Vec<_> = (0..keys)
        .map(|i| {
            let (cache, key) = (cache.clone(), format!("{ns}:{i}"));
            tokio::spawn(async move {
                if i % 2 == 0 {
                    cache.set(&key, &sku(i)).await.unwrap();
                } else {
                    let got = cache
                        .get_or_load(&key, || async { Ok::<_, std::io::Error>(Some(sku(i))) })
                        .await
                        .unwrap();
                    assert_eq!(got, Some(sku(i)));
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let admin = admin(client.topo()).await;
    let names: Vec<String> = (0..keys).map(|i| format!("{ns}:{i}")).collect();
    let pttls = join_all(names.iter().map(|key| admin.pttl(key))).await;
    let elapsed = started.elapsed().as_millis() as i64 + 1;
    let (lo, hi) = (900_000i64, 1_100_000i64);
    let mut deciles = [0usize; 10];
    for pttl in &pttls {
        assert!(
            *pttl <= hi && *pttl >= lo - elapsed,
            "TTL {pttl} ms outside [{lo}-{elapsed}, {hi}]"
        );
        deciles[(((pttl - lo).max(0) * 10) / (hi - lo + 1)) as usize] += 1;
    }
    // A tenth of the keys per decile is expected; half of that is plenty.
    assert!(
        deciles.iter().all(|&n| n as u64 > keys / 20),
        "TTLs not spread: {deciles:?}"
    );
    join_all(names.iter().map(|key| admin.del(key))).await;
}

/// Requirement 8: counters after a scripted sequence.
async fn counters_add_up(client: impl Connect) {
    let ns = namespace();
    let cache = Cache::new(client.connect().await, Options::default()).unwrap();
    let ok = || async { Ok::<_, String>(Some(1u32)) };
    assert_eq!(
        cache.get_or_load(&format!("{ns}:a"), ok).await.unwrap(),
        Some(1)
    ); // miss, load
    assert_eq!(
        cache.get_or_load(&format!("{ns}:a"), ok).await.unwrap(),
        Some(1)
    ); // hit
    let none = || async { Ok::<Option<u32>, String>(None) };
    assert_eq!(
        cache.get_or_load(&format!("{ns}:b"), none).await.unwrap(),
        None
    ); // miss, load
    assert_eq!(
        cache.get_or_load(&format!("{ns}:b"), none).await.unwrap(),
        None
    ); // not-found hit
    let failing = || async { Err::<Option<u32>, _>("db down".to_string()) };
    match cache.get_or_load(&format!("{ns}:c"), failing).await {
        Err(Error::Load(e)) => assert_eq!(*e, "db down"),
        other => panic!("expected the loader's error, got {other:?}"),
    }
    assert_eq!(
        cache.peek::<u32>(&format!("{ns}:c")).await.unwrap(),
        Cached::Absent,
        "errors are not cached"
    );
    let stats = cache.stats();
    let mut expected = Stats::default();
    (expected.hits, expected.not_found_hits, expected.misses) = (2, 1, 3);
    (expected.loads, expected.load_errors) = (3, 1);
    assert_eq!(stats, expected);
}

/// A load error reaches every concurrent caller, and is not cached.
async fn load_errors_are_shared(client: impl Connect) {
    let key = format!("{}:err", namespace());
    let cache = Cache::new(client.connect().await, Options::default()).unwrap();
    let callers: Vec<_> = (0..200)
        .map(|_| {
            let (cache, key) = (cache.clone(), key.clone());
            tokio::spawn(async move {
                cache
                    .get_or_load(&key, || async {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Err::<Option<u32>, _>(std::io::Error::other("db down"))
                    })
                    .await
            })
        })
        .collect();
    for caller in callers {
        match caller.await.unwrap() {
            Err(Error::Load(e)) => assert_eq!(e.to_string(), "db down"),
            other => panic!("expected the shared load error, got {other:?}"),
        }
    }
    let stats = cache.stats();
    assert!(
        stats.loads >= 1 && stats.loads < 200,
        "loads {}",
        stats.loads
    );
    assert_eq!(stats.load_errors, stats.loads);
    assert_eq!(cache.peek::<u32>(&key).await.unwrap(), Cached::Absent);
}

/// Bytes this crate did not write (or an older shape of the type) are
/// deleted and reloaded, not returned and not kept forever.
async fn unreadable_entries_are_reloaded(client: impl Connect) {
    let ns = namespace();
    let admin = admin(client.topo()).await;
    let cache = Cache::new(client.connect().await, Options::default()).unwrap();
    let garbage = format!("{ns}:garbage");
    admin.set(&garbage, b"not ours").await;
    let got = cache
        .get_or_load(&garbage, || async { Ok::<_, String>(Some(sku(3))) })
        .await
        .unwrap();
    assert_eq!(got, Some(sku(3)));
    assert_eq!(
        cache.peek::<Sku>(&garbage).await.unwrap(),
        Cached::Value(sku(3))
    );

    let reshaped = format!("{ns}:reshaped");
    cache
        .set(&reshaped, &"a string, not a Sku".to_string())
        .await
        .unwrap();
    let got = cache
        .get_or_load(&reshaped, || async { Ok::<_, String>(Some(sku(4))) })
        .await
        .unwrap();
    assert_eq!(got, Some(sku(4)));
    assert_eq!(admin.get(&reshaped).await.unwrap().first(), Some(&0xFA));
    assert_eq!(cache.stats().loads, 2);
}

/// `write_through`: the DB write runs first; a failed write leaves the cache.
async fn write_through_writes_then_invalidates(client: impl Connect) {
    let key = format!("{}:wt", namespace());
    let cache = Cache::new(
        client.connect().await,
        Options::default().double_delete_delay(Duration::ZERO),
    )
    .unwrap();
    cache.set(&key, &sku(1)).await.unwrap();
    let failed = cache
        .write_through(&key, || async { Err::<(), _>("constraint violated") })
        .await;
    assert!(matches!(failed, Err(Error::Write("constraint violated"))));
    assert_eq!(
        cache.peek::<Sku>(&key).await.unwrap(),
        Cached::Value(sku(1))
    );
    let rows = cache
        .write_through(&key, || async { Ok::<_, String>(1u64) })
        .await
        .unwrap();
    assert_eq!(rows, 1);
    assert_eq!(cache.peek::<Sku>(&key).await.unwrap(), Cached::Absent);
}

on_every_topology!(async:
    stampede_loads_once,
    not_found_is_cached_and_replaced,
    ttls_spread_inside_the_jitter_band,
    counters_add_up,
    load_errors_are_shared,
    unreadable_entries_are_reloaded,
    write_through_writes_then_invalidates,
);

#[cfg(feature = "postcard")]
async fn postcard_codec_round_trips_and_is_smaller(client: impl Connect) {
    use seckill_cache_aside::Postcard;
    let ns = namespace();
    let json = Cache::new(client.connect().await, Options::default()).unwrap();
    let binary = Cache::with_codec(client.connect().await, Options::default(), Postcard).unwrap();
    json.set(&format!("{ns}:json"), &sku(42)).await.unwrap();
    binary.set(&format!("{ns}:bin"), &sku(42)).await.unwrap();
    let got = binary
        .get_or_load(&format!("{ns}:bin"), || async { Ok::<_, String>(None) })
        .await
        .unwrap();
    assert_eq!(got, Some(sku(42)));
    let admin = admin(client.topo()).await;
    let (j, b) = (
        admin.get(&format!("{ns}:json")).await.unwrap(),
        admin.get(&format!("{ns}:bin")).await.unwrap(),
    );
    assert!(
        b.len() < j.len() / 2,
        "postcard {} bytes vs JSON {}",
        b.len(),
        j.len()
    );
    admin.delete_under(&ns).await;
}

#[cfg(feature = "postcard")]
on_every_topology!(async: postcard_codec_round_trips_and_is_smaller);

/// Every script and command once, in both modes, on a given connection.
async fn smoke<B: Connection>(conn: B) {
    for mode in [Backfill::SetNx, Backfill::Lease] {
        let key = format!("{}:smoke", namespace());
        let cache = Cache::new(conn.clone(), Options::default().backfill(mode)).unwrap();
        let load = || async { Ok::<_, String>(Some(sku(1))) };
        assert_eq!(cache.get_or_load(&key, load).await.unwrap(), Some(sku(1)));
        assert_eq!(cache.get_or_load(&key, load).await.unwrap(), Some(sku(1)));
        cache.set(&key, &sku(2)).await.unwrap();
        assert_eq!(
            cache.peek::<Sku>(&key).await.unwrap(),
            Cached::Value(sku(2))
        );
        cache.invalidate(&key).await.unwrap();
        cache.flush_deletes().await;
        assert_eq!(cache.peek::<Sku>(&key).await.unwrap(), Cached::Absent);
        let stats = cache.stats();
        assert_eq!(
            (stats.loads, stats.hits, stats.redis_errors),
            (1, 1, 0),
            "{mode:?}"
        );
    }
}

/// The redis-rs connection types, built with redis-rs itself.
#[cfg(feature = "redis")]
mod redis_rs_connection_types {
    use super::{Topo, smoke, support};

    #[tokio::test]
    async fn connection_manager_and_multiplexed_connection_on_a_single_server() {
        let client = redis::Client::open(support::url(Topo::Single)).unwrap();
        smoke(
            redis::aio::ConnectionManager::new(client.clone())
                .await
                .unwrap(),
        )
        .await;
        smoke(client.get_multiplexed_async_connection().await.unwrap()).await;
    }

    #[tokio::test]
    async fn cluster_connection_on_the_cluster() {
        let nodes = seckill_redis::Topology::parse(&support::url(Topo::Cluster))
            .unwrap()
            .node_urls();
        let client = redis::cluster::ClusterClient::new(nodes).unwrap();
        smoke(client.get_async_connection().await.unwrap()).await;
    }

    #[tokio::test]
    async fn sentinel_connection_on_the_sentinel_group() {
        let conn = seckill_redis::redis_rs::connect(&support::url(Topo::Sentinel))
            .await
            .unwrap();
        assert!(matches!(
            conn,
            seckill_redis::redis_rs::AnyConnection::Sentinel(_)
        ));
        smoke(conn).await;
    }
}

/// A fred `Pool` on each topology.
#[cfg(feature = "fred")]
mod fred_pool {
    use ::fred::prelude::{Builder, ClientLike, Config, ServerConfig};

    use super::{Topo, smoke, support};

    async fn pool(topo: Topo) -> ::fred::clients::Pool {
        let host_ports = |nodes: Vec<String>| -> Vec<(String, u16)> {
            nodes
                .iter()
                .map(|n| {
                    let (host, port) = n.rsplit_once(':').unwrap();
                    (host.to_owned(), port.parse().unwrap())
                })
                .collect()
        };
        let config = match seckill_redis::Topology::parse(&support::url(topo)).unwrap() {
            seckill_redis::Topology::Single { url } => Config::from_url(&url).unwrap(),
            seckill_redis::Topology::Cluster { nodes, .. } => Config {
                server: ServerConfig::new_clustered(host_ports(nodes)),
                ..Config::default()
            },
            seckill_redis::Topology::Sentinel {
                sentinels, master, ..
            } => Config {
                server: ServerConfig::new_sentinel(host_ports(sentinels), master),
                ..Config::default()
            },
            other => panic!("{other:?}"),
        };
        let pool = Builder::from_config(config).build_pool(2).unwrap();
        pool.init().await.unwrap();
        pool
    }

    #[tokio::test]
    async fn on_a_single_server() {
        smoke(pool(Topo::Single).await).await;
    }

    #[tokio::test]
    async fn on_the_cluster() {
        smoke(pool(Topo::Cluster).await).await;
    }

    #[tokio::test]
    async fn on_the_sentinel_group() {
        smoke(pool(Topo::Sentinel).await).await;
    }
}
