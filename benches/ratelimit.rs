//! `seckill-ratelimit` beside `governor` (in process) and beside a bare Redis
//! round trip (on Redis), each pair in one criterion group so the ratios read
//! off one run.
//!
//! Run with `cargo bench --bench ratelimit` (Redis at `REDIS_URL`, default
//! `redis://127.0.0.1:6379`, for the `redis` group).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use governor::{Quota, RateLimiter};
use seckill_ratelimit::{Algorithm, Keyed, RedisLimiter, TokenBucket};

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

/// A bucket that always has tokens (1 per ns) and one that is always empty.
const OPEN: (u32, u32) = (1_000_000_000, 1_000_000);
const SHUT: (u32, u32) = (1, 1);

fn governor_direct(
    (rate, burst): (u32, u32),
) -> RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    governor::clock::DefaultClock,
> {
    RateLimiter::direct(Quota::per_second(nz(rate)).allow_burst(nz(burst)))
}

fn single_thread(c: &mut Criterion) {
    let mut group = c.benchmark_group("token_bucket_single_thread");
    for (case, config) in [("admit", OPEN), ("deny", SHUT)] {
        let ours = TokenBucket::new(config.0, config.1);
        let _ = ours.try_acquire(1);
        group.bench_function(format!("seckill/{case}"), |b| {
            b.iter(|| black_box(ours.try_acquire(black_box(1)).is_ok()))
        });
        let theirs = governor_direct(config);
        let _ = theirs.check();
        group.bench_function(format!("governor/{case}"), |b| {
            b.iter(|| black_box(theirs.check().is_ok()))
        });
    }
    group.finish();
}

/// Two threads calling one limiter `iters` times each; time per call.
fn contended(iters: u64, call: &(impl Fn() -> bool + Sync)) -> Duration {
    let barrier = Barrier::new(2);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    let start = Instant::now();
                    for _ in 0..iters {
                        black_box(call());
                    }
                    start.elapsed()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .max()
            .unwrap()
    })
}

fn two_threads(c: &mut Criterion) {
    let mut group = c.benchmark_group("token_bucket_two_threads");
    for (case, config) in [("admit", OPEN), ("deny", SHUT)] {
        let ours = TokenBucket::new(config.0, config.1);
        group.bench_function(format!("seckill/{case}"), |b| {
            b.iter_custom(|iters| contended(iters, &|| ours.try_acquire(1).is_ok()))
        });
        let theirs = governor_direct(config);
        group.bench_function(format!("governor/{case}"), |b| {
            b.iter_custom(|iters| contended(iters, &|| theirs.check().is_ok()))
        });
    }
    group.finish();
}

const KEYS: u64 = 100_000;

/// Two threads each walking the keys in their own order (no shared counter,
/// so only the limiter's own memory traffic is measured); time per call.
fn keyed_contended(iters: u64, call: &(impl Fn(u64) -> bool + Sync)) -> Duration {
    let barrier = Barrier::new(2);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..2u64)
            .map(|thread| {
                let barrier = &barrier;
                s.spawn(move || {
                    let mut key = thread * KEYS / 2;
                    barrier.wait();
                    let start = Instant::now();
                    for _ in 0..iters {
                        key = (key + 7_919) % KEYS;
                        black_box(call(black_box(key)));
                    }
                    start.elapsed()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .max()
            .unwrap()
    })
}

/// The keyed ratio measured A/B/A/B: rounds of ours and governor's
/// alternate, so load from other processes that drifts during the run falls
/// on both alike; prints the median per-round ratio (ours / governor) for
/// one thread and for two. Skipped when criterion lists or tests only.
fn interleaved_ratio<K>(
    ours: &Keyed<u64, TokenBucket>,
    theirs: &RateLimiter<u64, K, governor::clock::DefaultClock>,
) where
    K: governor::state::StateStore<Key = u64> + Sync,
{
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    const ROUNDS: usize = 31;
    const OPS: u64 = 300_000;
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let one = |call: &dyn Fn(u64) -> bool| {
        let mut key = 0u64;
        let start = Instant::now();
        for _ in 0..OPS {
            key = (key + 7_919) % KEYS;
            black_box(call(black_box(key)));
        }
        start.elapsed().as_nanos() as f64 / OPS as f64
    };
    let (mut single, mut double) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let a = one(&|k| ours.try_acquire(&k, 1).is_ok());
        let b = one(&|k| theirs.check_key(&k).is_ok());
        single.push(a / b);
        let a = keyed_contended(OPS, &|k| ours.try_acquire(&k, 1).is_ok()).as_nanos() as f64;
        let b = keyed_contended(OPS, &|k| theirs.check_key(&k).is_ok()).as_nanos() as f64;
        double.push(a / b);
    }
    println!(
        "keyed_100k_keys interleaved ({ROUNDS} rounds of {OPS} calls): \
         ours/governor 1 thread {:.2}x, 2 threads {:.2}x (median of per-round ratios)",
        median(single),
        median(double)
    );
}

fn keyed(c: &mut Criterion) {
    let mut group = c.benchmark_group("keyed_100k_keys");
    let ours: Keyed<u64, TokenBucket> =
        Keyed::new(TokenBucket::new(1_000_000, 1_000_000)).max_keys(2 * KEYS as usize);
    let theirs = RateLimiter::keyed(Quota::per_second(nz(1_000_000)).allow_burst(nz(1_000_000)));
    for key in 0..KEYS {
        let _ = ours.try_acquire(&key, 1);
        let _ = theirs.check_key(&key);
    }
    let mut i = 0u64;
    group.bench_function("seckill", |b| {
        b.iter(|| {
            i = (i + 7_919) % KEYS;
            black_box(ours.try_acquire(&i, 1).is_ok())
        })
    });
    let mut i = 0u64;
    group.bench_function("governor", |b| {
        b.iter(|| {
            i = (i + 7_919) % KEYS;
            black_box(theirs.check_key(&i).is_ok())
        })
    });
    group.bench_function("seckill/two_threads", |b| {
        b.iter_custom(|iters| keyed_contended(iters, &|k| ours.try_acquire(&k, 1).is_ok()))
    });
    group.bench_function("governor/two_threads", |b| {
        b.iter_custom(|iters| keyed_contended(iters, &|k| theirs.check_key(&k).is_ok()))
    });
    group.finish();
    interleaved_ratio(&ours, &theirs);
}

fn on_redis(c: &mut Criterion) {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let conn = runtime.block_on(async {
        let client = redis::Client::open(url.as_str())?;
        redis::aio::ConnectionManager::new(client).await
    });
    let conn = match conn {
        Ok(conn) => conn,
        Err(e) => {
            eprintln!(
                "SKIPPING the redis group: Redis at {url} is unreachable ({e}); \
                 start it with `bash scripts/services.sh`"
            );
            return;
        }
    };
    let name = format!("bench:{}", std::process::id());
    let limiter = RedisLimiter::new(
        conn.clone(),
        name.clone(),
        Algorithm::TokenBucket {
            rate_per_sec: 1_000_000,
            burst: 1_000_000,
        },
    )
    .unwrap();
    let sliding = RedisLimiter::new(
        conn.clone(),
        name.clone(),
        Algorithm::SlidingWindow {
            limit: 100,
            window: Duration::from_millis(100),
        },
    )
    .unwrap();
    let mut group = c.benchmark_group("redis_round_trip");
    group.bench_function("PING (ceiling)", |b| {
        b.to_async(&runtime).iter(|| {
            let mut conn = conn.clone();
            async move {
                let pong: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
                black_box(pong)
            }
        })
    });
    group.bench_function("INCR (ceiling)", |b| {
        let key = format!("{{{name}}}:incr");
        b.to_async(&runtime).iter(|| {
            let mut conn = conn.clone();
            let key = key.clone();
            async move {
                let n: i64 = redis::cmd("INCR")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                black_box(n)
            }
        })
    });
    group.bench_function("seckill token bucket", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(limiter.try_acquire("k", 1).await.is_ok()) })
    });
    group.bench_function("seckill sliding window", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(sliding.try_acquire("k", 1).await.is_ok()) })
    });
    group.finish();
    runtime.block_on(async {
        let mut conn = conn.clone();
        let _: Result<(), _> = redis::cmd("DEL")
            .arg(format!("{{{name}}}:incr"))
            .arg(format!("{{{name}:k}}:tb"))
            .arg(format!("{{{name}:k}}:sw"))
            .arg(format!("{{{name}:k}}:sw:seq"))
            .query_async(&mut conn)
            .await;
    });
    assert_eq!(limiter.stats().errors, 0);
}

criterion_group!(benches, single_thread, two_threads, keyed, on_redis);
criterion_main!(benches);
