//! Benches for `seckill-cache-aside` against the real Redis (`REDIS_URL`,
//! default `redis://127.0.0.1:6379`; start it with `bash scripts/services.sh`).
//!
//! - `cache_aside/hit`: a cache hit through `get_or_load` beside the ceiling,
//!   a bare `GET` of the same bytes on the same connection (and `GET` plus the
//!   JSON decode every reader would do anyway).
//! - `cache_aside/stampede_1000`: 1,000 concurrent readers of a missing key,
//!   with singleflight (SetNx and Lease modes) beside the same readers without
//!   it (each does GET, load, SET). The "database" is a pool of 10 connections
//!   answering in 1 ms each, so a stampede queues like on a real database.
//!
//! Run: `cargo bench --bench cache_aside -- --warm-up-time 1 --measurement-time 3`

// A bench has nobody to report an error to: a broken setup aborts it.
#![allow(clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use seckill::cache_aside::{Backfill, Cache, Options};
use serde::{Deserialize, Serialize};
use tokio::runtime::Runtime;
use tokio::sync::Semaphore;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Sku {
    id: u64,
    name: String,
    price_cents: u64,
    stock: u32,
}

fn sku() -> Sku {
    Sku {
        id: 42,
        name: "green tea, 100 g".to_string(),
        price_cents: 1290,
        stock: 1000,
    }
}

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("tokio runtime: {e}"))
}

async fn connect() -> redis::aio::MultiplexedConnection {
    let url = redis_url();
    let client = redis::Client::open(url.as_str()).unwrap_or_else(|e| panic!("{url}: {e}"));
    client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| {
            panic!("Redis unreachable at {url} ({e}); start it with `bash scripts/services.sh`")
        })
}

fn namespace() -> String {
    format!("bench:cache-aside:{}", uuid::Uuid::new_v4().simple())
}

fn hit(c: &mut Criterion) {
    let rt = runtime();
    let conn = rt.block_on(connect());
    let key = format!("{}:hot", namespace());
    let cache = Cache::new(
        conn.clone(),
        Options::default().ttl(Duration::from_secs(600)),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let front = Cache::new(
        conn.clone(),
        Options::default().front_cache(1024, Duration::from_millis(100)),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    rt.block_on(async {
        cache
            .set(&key, &sku())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    });

    let mut group = c.benchmark_group("cache_aside/hit");
    group.bench_function("redis GET (ceiling)", |b| {
        b.to_async(&rt).iter(|| {
            let mut conn = conn.clone();
            let key = &key;
            async move {
                let bytes: Option<Vec<u8>> = redis::cmd("GET")
                    .arg(key)
                    .query_async(&mut conn)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                bytes
            }
        })
    });
    group.bench_function("redis GET + JSON decode", |b| {
        b.to_async(&rt).iter(|| {
            let mut conn = conn.clone();
            let key = &key;
            async move {
                let bytes: Vec<u8> = redis::cmd("GET")
                    .arg(key)
                    .query_async(&mut conn)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                serde_json::from_slice::<Sku>(bytes.get(1..).unwrap_or_default())
                    .unwrap_or_else(|e| panic!("{e}"))
            }
        })
    });
    group.bench_function("get_or_load", |b| {
        b.to_async(&rt).iter(|| async {
            cache
                .get_or_load(&key, || async { Ok::<Option<Sku>, String>(None) })
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        })
    });
    group.bench_function("get_or_load, front cache", |b| {
        b.to_async(&rt).iter(|| async {
            front
                .get_or_load(&key, || async { Ok::<Option<Sku>, String>(None) })
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        })
    });
    group.finish();
    rt.block_on(paired_ratio(&conn, &cache, &key));
}

/// The hit/GET ratio measured in alternating rounds, so that load from other
/// processes on a shared machine hits both sides alike: 40 rounds of 200
/// GETs then 200 hits; prints the median per-operation time of each.
async fn paired_ratio(
    conn: &redis::aio::MultiplexedConnection,
    cache: &Cache<redis::aio::MultiplexedConnection>,
    key: &str,
) {
    const OPS: u32 = 200;
    let (mut gets, mut hits) = (Vec::new(), Vec::new());
    for _ in 0..40 {
        let started = Instant::now();
        for _ in 0..OPS {
            let bytes: Option<Vec<u8>> = redis::cmd("GET")
                .arg(key)
                .query_async(&mut conn.clone())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            std::hint::black_box(bytes);
        }
        gets.push(started.elapsed() / OPS);
        let started = Instant::now();
        for _ in 0..OPS {
            let sku = cache
                .get_or_load(key, || async { Ok::<Option<Sku>, String>(None) })
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            std::hint::black_box(sku);
        }
        hits.push(started.elapsed() / OPS);
    }
    gets.sort();
    hits.sort();
    let (get, hit) = (gets[gets.len() / 2], hits[hits.len() / 2]);
    eprintln!(
        "paired medians: GET {get:?}, get_or_load hit {hit:?}, ratio {:.3}",
        hit.as_secs_f64() / get.as_secs_f64()
    );
}

/// A database with 10 connections answering in 1 ms.
#[derive(Clone)]
struct Db {
    pool: Arc<Semaphore>,
    queries: Arc<AtomicU64>,
}

impl Db {
    fn new() -> Db {
        Db {
            pool: Arc::new(Semaphore::new(10)),
            queries: Arc::new(AtomicU64::new(0)),
        }
    }

    async fn load(&self) -> Result<Option<Sku>, String> {
        let _conn = self.pool.acquire().await.map_err(|e| e.to_string())?;
        self.queries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(1)).await;
        Ok(Some(sku()))
    }
}

const READERS: usize = 1000;

async fn stampede_with_cache(
    cache: &Cache<redis::aio::MultiplexedConnection>,
    db: &Db,
    key: &str,
) -> Duration {
    let started = Instant::now();
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let (cache, db, key) = (cache.clone(), db.clone(), key.to_string());
            tokio::spawn(async move {
                cache
                    .get_or_load(&key, || async move { db.load().await })
                    .await
                    .unwrap_or_else(|e| panic!("{e}"))
            })
        })
        .collect();
    for reader in readers {
        reader.await.unwrap_or_else(|e| panic!("{e}"));
    }
    started.elapsed()
}

async fn stampede_naive(conn: &redis::aio::MultiplexedConnection, db: &Db, key: &str) -> Duration {
    let started = Instant::now();
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let (mut conn, db, key) = (conn.clone(), db.clone(), key.to_string());
            tokio::spawn(async move {
                let cached: Option<Vec<u8>> = redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                if let Some(bytes) = cached {
                    return serde_json::from_slice::<Sku>(&bytes).ok();
                }
                let loaded = db.load().await.unwrap_or_else(|e| panic!("{e}"));
                let bytes = serde_json::to_vec(&loaded).unwrap_or_else(|e| panic!("{e}"));
                let _: () = redis::cmd("SET")
                    .arg(&key)
                    .arg(bytes)
                    .arg("EX")
                    .arg(60)
                    .query_async(&mut conn)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                loaded
            })
        })
        .collect();
    for reader in readers {
        reader.await.unwrap_or_else(|e| panic!("{e}"));
    }
    started.elapsed()
}

fn stampede(c: &mut Criterion) {
    let rt = runtime();
    let conn = rt.block_on(connect());
    let ns = namespace();
    let mut group = c.benchmark_group("cache_aside/stampede_1000");
    group.sample_size(10);

    for (name, mode) in [
        ("singleflight, SetNx", Backfill::SetNx),
        ("singleflight, Lease", Backfill::Lease),
    ] {
        let cache = Cache::new(
            conn.clone(),
            Options::default()
                .backfill(mode)
                .double_delete_delay(Duration::ZERO),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let db = Db::new();
        let runs = Arc::new(AtomicU64::new(0));
        group.bench_function(name, |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (cache, db, ns, runs) = (cache.clone(), db.clone(), ns.clone(), runs.clone());
                async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let key = format!("{ns}:{}", runs.fetch_add(1, Ordering::Relaxed));
                        total += stampede_with_cache(&cache, &db, &key).await;
                        let _ = cache.invalidate(&key).await;
                    }
                    total
                }
            })
        });
        eprintln!(
            "{name}: {:.1} database queries per stampede of {READERS}",
            db.queries.load(Ordering::Relaxed) as f64 / runs.load(Ordering::Relaxed).max(1) as f64
        );
    }

    let db = Db::new();
    let runs = Arc::new(AtomicU64::new(0));
    group.bench_function("no singleflight (GET, load, SET)", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (conn, db, ns, runs) = (conn.clone(), db.clone(), ns.clone(), runs.clone());
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let key = format!("{ns}:naive:{}", runs.fetch_add(1, Ordering::Relaxed));
                    total += stampede_naive(&conn, &db, &key).await;
                    let _: Result<(), _> = redis::cmd("DEL")
                        .arg(&key)
                        .query_async(&mut conn.clone())
                        .await;
                }
                total
            }
        })
    });
    eprintln!(
        "no singleflight: {:.1} database queries per stampede of {READERS}",
        db.queries.load(Ordering::Relaxed) as f64 / runs.load(Ordering::Relaxed).max(1) as f64
    );
    group.finish();
}

criterion_group!(benches, hit, stampede);
criterion_main!(benches);
