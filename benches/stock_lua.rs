//! `seckill-stock-lua`: deductions per second through `StockStore::deduct`,
//! beside the same script sent as raw `EVALSHA` (the ceiling), a naive
//! `WATCH`/`MULTI`/`EXEC` deduction, and a bare `DECRBY` round trip, all on
//! the same Redis in the same run with the same number of requests in flight.
//!
//! `hot_sku_buckets`: one hot SKU on `ShardedStock` with 1 and 3 buckets on
//! the local 3-primary Redis Cluster, beside the single node.
//!
//! Needs Redis at `REDIS_URL` (default `redis://127.0.0.1:6379`) and the
//! local Cluster at `REDIS_CLUSTER_URL` (`bash scripts/redis-topologies.sh`).
//! Run: `cargo bench --bench stock_lua -- --warm-up-time 1 --measurement-time 3`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use redis::aio::MultiplexedConnection;
use seckill::stock_lua::{Connection, Deduction, StockStore};
use tokio::runtime::Runtime;

/// Requests kept in flight by every contender.
const IN_FLIGHT: usize = 64;
/// Buyers cycle through this many user ids (keeps the bought-hash small).
const USERS: u64 = 1_000;
const SKU: &str = "bench-sku";
const DEDUCT_LUA: &str = include_str!("../stock-lua/src/lua/deduct.lua");

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

fn namespace() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("bench-{}-{nanos}", std::process::id())
}

async fn redis_conn() -> redis::aio::MultiplexedConnection {
    let config =
        redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(30)));
    redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "Redis is not reachable at {} ({e}); start it with `bash scripts/services.sh`",
                redis_url()
            )
        })
}

async fn fred_client() -> fred::clients::Client {
    use fred::interfaces::ClientLike;
    let config = fred::types::config::Config::from_url(&redis_url()).unwrap();
    let client = fred::clients::Client::new(config, None, None, None);
    client.init().await.unwrap();
    client
}

fn order(ns_tag: u64) -> Deduction {
    let id = next_id();
    Deduction {
        request_id: format!("{ns_tag}-{id}"),
        user_id: format!("u{}", id % USERS),
        items: vec![(SKU.to_owned(), 1)],
        per_user_limit: None,
    }
}

/// Runs `n` deductions with `IN_FLIGHT` outstanding and returns the elapsed time.
async fn timed<F, Fut>(n: u64, one: F) -> Duration
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    let start = Instant::now();
    futures::stream::iter(0..n)
        .map(|_| one())
        .buffer_unordered(IN_FLIGHT)
        .for_each(|()| async {})
        .await;
    start.elapsed()
}

/// Requests per chunk when two contenders are interleaved.
const CHUNK: u64 = 512;

/// Time spent by the two contenders of a pair, chunk by chunk side by side.
#[derive(Default)]
struct Tally {
    ours_nanos: AtomicU64,
    ours_ops: AtomicU64,
    peer_nanos: AtomicU64,
    peer_ops: AtomicU64,
}

impl Tally {
    fn add(&self, nanos: &AtomicU64, ops: &AtomicU64, n: u64, took: Duration) {
        nanos.fetch_add(u64::try_from(took.as_nanos()).unwrap(), Ordering::Relaxed);
        ops.fetch_add(n, Ordering::Relaxed);
    }

    fn rate(nanos: &AtomicU64, ops: &AtomicU64) -> f64 {
        ops.load(Ordering::Relaxed) as f64 * 1e9 / nanos.load(Ordering::Relaxed).max(1) as f64
    }

    /// Prints both rates and their ratio over every chunk of the group.
    fn report(&self, group: &str, peer: &str) {
        let ours = Self::rate(&self.ours_nanos, &self.ours_ops);
        let other = Self::rate(&self.peer_nanos, &self.peer_ops);
        println!(
            "{group}: paired over {} + {} requests: stock_store_deduct {ours:.0}/s, {peer} {other:.0}/s, ratio {:.2}",
            self.ours_ops.load(Ordering::Relaxed),
            self.peer_ops.load(Ordering::Relaxed),
            ours / other
        );
    }
}

/// Runs `n` calls of `ours` and `n` of `peer`, alternating chunk by chunk,
/// and returns the time of the one being measured (`measure_ours`). On a
/// shared machine whose load drifts, criterion's per-function numbers move
/// with the load; the [`Tally`] of both contenders over the same chunks
/// gives a ratio that holds.
async fn interleaved<F, Fut, G, Gut>(
    n: u64,
    measure_ours: bool,
    tally: &Tally,
    ours: F,
    peer: G,
) -> Duration
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
    G: Fn() -> Gut,
    Gut: Future<Output = ()>,
{
    let mut measured = Duration::ZERO;
    let mut left = n;
    while left > 0 {
        let chunk = left.min(CHUNK);
        let (a, b) = if measure_ours {
            let a = timed(chunk, &ours).await;
            (a, timed(chunk, &peer).await)
        } else {
            let b = timed(chunk, &peer).await;
            (timed(chunk, &ours).await, b)
        };
        tally.add(&tally.ours_nanos, &tally.ours_ops, chunk, a);
        tally.add(&tally.peer_nanos, &tally.peer_ops, chunk, b);
        measured += if measure_ours { a } else { b };
        left -= chunk;
    }
    measured
}

/// The raw harness: the deduct script by `EVALSHA`, keys and ARGV built by
/// hand following the documented layout, no parsing beyond the reply.
fn raw_args(ns: &str, id: u64) -> Vec<String> {
    let p = format!("seckill:{{{ns}}}:");
    vec![
        format!("{p}req:raw-{id}"),
        format!("{p}soldout"),
        format!("{p}stock:{SKU}"),
        format!("{p}log:{SKU}"),
        format!("{p}bought:{SKU}"),
        format!("raw-{id}"),
        format!("u{}", id % USERS),
        "60000".to_owned(),
        "0".to_owned(),
        "1".to_owned(),
        // The request fingerprint (ARGV[6]): any value, every id is fresh.
        "raw".to_owned(),
        SKU.to_owned(),
        "1".to_owned(),
    ]
}

async fn cleanup(conn: &mut redis::aio::MultiplexedConnection, ns: &str) {
    let p = format!("seckill:{{{ns}}}:");
    let _: () = redis::cmd("DEL")
        .arg(format!("{p}stock:{SKU}"))
        .arg(format!("{p}log:{SKU}"))
        .arg(format!("{p}bought:{SKU}"))
        .arg(format!("{p}soldout"))
        .arg(format!("{p}naive"))
        .query_async(conn)
        .await
        .unwrap();
}

/// One deduction through the store.
fn ours<C: Connection>(store: &StockStore<C>, tag: u64) -> impl Future<Output = ()> + use<C> {
    let store = store.clone();
    async move {
        let d = store.deduct(&order(tag)).await.unwrap();
        assert!(d.outcome.is_deducted());
    }
}

/// The same script by raw `EVALSHA` over redis-rs.
fn raw_rs(conn: &MultiplexedConnection, sha: &str, ns: &str) -> impl Future<Output = ()> + use<> {
    let (mut conn, sha, args) = (conn.clone(), sha.to_owned(), raw_args(ns, next_id()));
    async move {
        let reply: Vec<redis::Value> = redis::cmd("EVALSHA")
            .arg(&sha)
            .arg(5)
            .arg(&args)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(reply.first(), Some(&redis::Value::Int(0)));
    }
}

/// The same script by raw `EVALSHA` over fred.
fn raw_fred(
    client: &fred::clients::Client,
    sha: &str,
    ns: &str,
) -> impl Future<Output = ()> + use<> {
    use fred::interfaces::LuaInterface;
    let (client, sha) = (client.clone(), sha.to_owned());
    let mut keys = raw_args(ns, next_id());
    let argv = keys.split_off(5);
    async move {
        let reply: Vec<fred::types::Value> = client.evalsha(sha, keys, argv).await.unwrap();
        assert_eq!(reply.first().and_then(|v| v.as_i64()), Some(0));
    }
}

/// Benches `StockStore::deduct` and `peer` as a pair, interleaved (see
/// [`interleaved`]), each measured in turn.
fn bench_pair<C, P, Fut>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    tally: &Arc<Tally>,
    store: &StockStore<C>,
    tag: u64,
    peer: P,
) where
    C: Connection,
    P: Fn() -> Fut + Clone,
    Fut: Future<Output = ()>,
{
    for (name, measure_ours) in [
        ("stock_store_deduct", true),
        ("raw_evalsha_same_script", false),
    ] {
        group.bench_function(name, |b| {
            b.to_async(rt).iter_custom(|n| {
                let (store, peer, tally) = (store.clone(), peer.clone(), tally.clone());
                async move { interleaved(n, measure_ours, &tally, || ours(&store, tag), peer).await }
            })
        });
    }
}

fn deduct_redis_rs(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let ns = namespace();
    let (store, mut admin, sha) = rt.block_on(async {
        let mut admin = redis_conn().await;
        let store = StockStore::new(redis_conn().await, &ns)
            .unwrap()
            .with_dedup_ttl(Duration::from_secs(60))
            .unwrap();
        store.set_stock(SKU, 1 << 50).await.unwrap();
        let sha: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(DEDUCT_LUA)
            .query_async(&mut admin)
            .await
            .unwrap();
        (store, admin, sha)
    });
    let raw = rt.block_on(redis_conn());
    let naive: Vec<_> = rt.block_on(async {
        let mut all = Vec::new();
        for _ in 0..IN_FLIGHT {
            all.push(redis_conn().await);
        }
        all
    });
    let naive_key = format!("seckill:{{{ns}}}:naive");
    rt.block_on(async {
        let _: () = redis::cmd("SET")
            .arg(&naive_key)
            .arg(1u64 << 50)
            .query_async(&mut admin)
            .await
            .unwrap();
    });

    let tally_rs = Arc::new(Tally::default());
    let group_name = format!("deduct_redis_rs_{IN_FLIGHT}_in_flight");
    let mut group = c.benchmark_group(&group_name);
    group.throughput(Throughput::Elements(1));
    let peer = {
        let (raw, sha, ns) = (raw.clone(), sha.clone(), ns.clone());
        move || raw_rs(&raw, &sha, &ns)
    };
    bench_pair(&mut group, &rt, &tally_rs, &store, 0, peer);
    group.bench_function("bare_decrby", |b| {
        b.to_async(&rt).iter_custom(|n| {
            let (raw, key) = (raw.clone(), naive_key.clone());
            async move {
                timed(n, || {
                    let (mut raw, key) = (raw.clone(), key.clone());
                    async move {
                        let _: i64 = redis::cmd("DECRBY")
                            .arg(&key)
                            .arg(1)
                            .query_async(&mut raw)
                            .await
                            .unwrap();
                    }
                })
                .await
            }
        })
    });
    group.bench_function("naive_watch_multi_exec", |b| {
        b.to_async(&rt).iter_custom(|n| {
            let (conns, key) = (naive.clone(), naive_key.clone());
            async move {
                // Each of IN_FLIGHT workers owns a connection (WATCH is per
                // connection) and retries its optimistic transaction until it
                // commits; about n successful deductions in total.
                let start = Instant::now();
                let per_worker = n.div_ceil(IN_FLIGHT as u64);
                let workers = conns.into_iter().map(|mut conn| {
                    let key = key.clone();
                    async move {
                        for _ in 0..per_worker {
                            loop {
                                let _: () = redis::cmd("WATCH")
                                    .arg(&key)
                                    .query_async(&mut conn)
                                    .await
                                    .unwrap();
                                let left: i64 = redis::cmd("GET")
                                    .arg(&key)
                                    .query_async(&mut conn)
                                    .await
                                    .unwrap();
                                assert!(left >= 1);
                                let committed: Option<(i64,)> = redis::pipe()
                                    .atomic()
                                    .cmd("DECRBY")
                                    .arg(&key)
                                    .arg(1)
                                    .query_async(&mut conn)
                                    .await
                                    .unwrap();
                                if committed.is_some() {
                                    break;
                                }
                            }
                        }
                    }
                });
                futures::future::join_all(workers).await;
                start.elapsed()
            }
        })
    });
    group.finish();
    tally_rs.report(&group_name, "raw_evalsha_same_script");
    rt.block_on(cleanup(&mut admin, &ns));
}

fn deduct_fred(c: &mut Criterion) {
    use fred::interfaces::LuaInterface;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let ns = namespace();
    let (store, raw, sha, mut admin) = rt.block_on(async {
        let store = StockStore::new(fred_client().await, &ns)
            .unwrap()
            .with_dedup_ttl(Duration::from_secs(60))
            .unwrap();
        store.set_stock(SKU, 1 << 50).await.unwrap();
        let raw = fred_client().await;
        let sha: String = raw.script_load(DEDUCT_LUA).await.unwrap();
        (store, raw, sha, redis_conn().await)
    });
    let tally_fred = Arc::new(Tally::default());
    let group_name = format!("deduct_fred_{IN_FLIGHT}_in_flight");
    let mut group = c.benchmark_group(&group_name);
    group.throughput(Throughput::Elements(1));
    let peer = {
        let (raw, sha, ns) = (raw.clone(), sha.clone(), ns.clone());
        move || raw_fred(&raw, &sha, &ns)
    };
    bench_pair(&mut group, &rt, &tally_fred, &store, 1, peer);
    group.finish();
    tally_fred.report(&group_name, "raw_evalsha_same_script");
    rt.block_on(cleanup(&mut admin, &ns));
}

/// Requests in flight for the bucket comparison: enough to keep three
/// primaries busy at once.
const HOT_IN_FLIGHT: usize = 256;

fn cluster_url() -> String {
    std::env::var("REDIS_CLUSTER_URL").unwrap_or_else(|_| {
        "redis+cluster://127.0.0.1:17001,127.0.0.1:17002,127.0.0.1:17003".to_owned()
    })
}

/// One hot SKU, one deduction per request, `HOT_IN_FLIGHT` in flight:
/// `ShardedStock` with 1 bucket and with 3 buckets on the 3-primary local
/// cluster, and a plain store on the single node, chunk by chunk side by
/// side (see [`interleaved`]); the ratios are printed at the end.
fn hot_sku_buckets(c: &mut Criterion) {
    use futures::future::BoxFuture;
    use seckill::stock_lua::ShardedStock;
    use seckill_redis::redis_rs::{AnyConnection, connect};

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let ns = namespace();
    let make = |url: String, buckets: usize, ns: String| {
        rt.block_on(async move {
            let conn = connect(&url).await.unwrap_or_else(|e| {
                panic!("Redis at {url}: {e}; start it with `bash scripts/redis-topologies.sh`")
            });
            let stock = ShardedStock::new(conn, &ns, buckets)
                .unwrap()
                .with_dedup_ttl(Duration::from_secs(60))
                .unwrap();
            stock.set_stock(SKU, 1 << 50).await.unwrap();
            stock
        })
    };
    let contenders: Vec<(&str, ShardedStock<AnyConnection>)> = vec![
        (
            "single_node_1_bucket",
            make(redis_url(), 1, format!("{ns}-s")),
        ),
        (
            "cluster_1_bucket",
            make(cluster_url(), 1, format!("{ns}-c1")),
        ),
        (
            "cluster_3_buckets",
            make(cluster_url(), 3, format!("{ns}-c3")),
        ),
    ];
    let one = |stock: &ShardedStock<AnyConnection>, tag: u64| -> BoxFuture<'static, ()> {
        let stock = stock.clone();
        Box::pin(async move {
            let d = stock.deduct(&order(tag)).await.unwrap();
            assert!(d.outcome.is_deducted());
        })
    };
    let tallies: Arc<Vec<(AtomicU64, AtomicU64)>> = Arc::new(
        (0..contenders.len())
            .map(|_| (AtomicU64::new(0), AtomicU64::new(0)))
            .collect(),
    );
    let group_name = format!("hot_sku_buckets_{HOT_IN_FLIGHT}_in_flight");
    let mut group = c.benchmark_group(&group_name);
    group.throughput(Throughput::Elements(1));
    for (measured, (name, _)) in contenders.iter().enumerate() {
        group.bench_function(*name, |b| {
            b.to_async(&rt).iter_custom(|n| {
                let (contenders, tallies) = (contenders.clone(), tallies.clone());
                async move {
                    let mut took = Duration::ZERO;
                    let mut left = n;
                    while left > 0 {
                        let chunk = left.min(CHUNK);
                        // Every contender runs the same chunk in turn, so
                        // a drifting machine load hits them alike.
                        for (i, (_, stock)) in contenders.iter().enumerate() {
                            let start = Instant::now();
                            futures::stream::iter(0..chunk)
                                .map(|_| one(stock, 10 + i as u64))
                                .buffer_unordered(HOT_IN_FLIGHT)
                                .for_each(|()| async {})
                                .await;
                            let elapsed = start.elapsed();
                            tallies[i]
                                .0
                                .fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
                            tallies[i].1.fetch_add(chunk, Ordering::Relaxed);
                            if i == measured {
                                took += elapsed;
                            }
                        }
                        left -= chunk;
                    }
                    took
                }
            })
        });
    }
    group.finish();
    let rate = |i: usize| {
        tallies[i].1.load(Ordering::Relaxed) as f64 * 1e9
            / tallies[i].0.load(Ordering::Relaxed).max(1) as f64
    };
    println!(
        "{group_name}: single node 1 bucket {:.0}/s, cluster 1 bucket {:.0}/s, cluster 3 buckets {:.0}/s; \
         3 buckets / 1 bucket on the cluster {:.2}, 3 buckets on the cluster / single node {:.2}",
        rate(0),
        rate(1),
        rate(2),
        rate(2) / rate(1),
        rate(2) / rate(0),
    );
    // Where the work lands: on a real cluster each primary has its own
    // cores, so the busiest primary's share bounds a hot SKU. Measured
    // from the primaries' own counters over a fixed number of deductions.
    for (name, stock) in &contenders[1..] {
        let spread = rt.block_on(primary_spread(stock, 20_000));
        println!("{group_name}/{name}: {spread}");
    }
    rt.block_on(async {
        let mut admin = redis_conn().await;
        cleanup(&mut admin, &format!("{ns}-s")).await;
    });
}

/// Runs `n` deductions and reports each primary's share of the script
/// calls and of the CPU time the primaries spent meanwhile.
async fn primary_spread(
    stock: &seckill::stock_lua::ShardedStock<seckill_redis::redis_rs::AnyConnection>,
    n: u64,
) -> String {
    let nodes: Vec<String> = seckill_redis::Topology::parse(&cluster_url())
        .unwrap()
        .node_urls();
    let mut primaries = Vec::new();
    for node in nodes {
        let mut conn = redis::Client::open(node.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut conn).await.unwrap();
        if role.first() == Some(&redis::Value::BulkString(b"master".to_vec())) {
            primaries.push((node, conn));
        }
    }
    async fn counters(conn: &mut MultiplexedConnection) -> (f64, f64) {
        let info: String = redis::cmd("INFO")
            .arg("all")
            .query_async(conn)
            .await
            .unwrap();
        let field = |name: &str| -> f64 {
            info.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0.0)
        };
        let calls = info
            .lines()
            .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        (calls, field("used_cpu_user:") + field("used_cpu_sys:"))
    }
    let mut before = Vec::new();
    for (_, conn) in &mut primaries {
        before.push(counters(conn).await);
    }
    futures::stream::iter(0..n)
        .map(|_| {
            let stock = stock.clone();
            async move {
                assert!(
                    stock
                        .deduct(&order(99))
                        .await
                        .unwrap()
                        .outcome
                        .is_deducted()
                );
            }
        })
        .buffer_unordered(HOT_IN_FLIGHT)
        .for_each(|()| async {})
        .await;
    let mut deltas = Vec::new();
    for ((_, conn), (calls, cpu)) in primaries.iter_mut().zip(before) {
        let (c, u) = counters(conn).await;
        deltas.push((c - calls, u - cpu));
    }
    let total_calls: f64 = deltas.iter().map(|d| d.0).sum::<f64>().max(1.0);
    let total_cpu: f64 = deltas.iter().map(|d| d.1).sum::<f64>().max(1e-9);
    let shares: Vec<String> = primaries
        .iter()
        .zip(&deltas)
        .map(|((node, _), (calls, cpu))| {
            format!(
                "{node}: {:.0}% of calls, {:.0}% of CPU",
                100.0 * calls / total_calls,
                100.0 * cpu / total_cpu
            )
        })
        .collect();
    let busiest = deltas.iter().map(|d| d.0).fold(0.0, f64::max) / total_calls;
    format!(
        "busiest primary took {:.0}% of the script calls ({})",
        100.0 * busiest,
        shares.join("; ")
    )
}

criterion_group!(benches, deduct_redis_rs, deduct_fred, hot_sku_buckets);
criterion_main!(benches);
