//! `seckill-singleflight` beside the peer crates `async_singleflight` and
//! `singleflight-async`, on the same work in the same bench group.
//!
//! Run with `cargo bench --bench singleflight`.
//!
//! - `uncontended`: one caller at a time, a fresh key per call, work that is
//!   ready at once: the fixed cost a caller pays when nobody shares its key.
//! - `one_key_1000_callers/joined`: 1,000 callers of one key polled by one
//!   task (`join_all`); the work yields once so they all join it.
//! - `one_key_1000_callers/spawned`: the same callers as 1,000 tasks on a
//!   two-worker runtime, where waking the waiters crosses threads.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use futures::future::join_all;
use tokio::runtime::{Builder, Runtime};

const CALLERS: usize = 1_000;

fn current_thread() -> Runtime {
    Builder::new_current_thread().enable_all().build().unwrap()
}

fn multi_thread() -> Runtime {
    Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Work that is pending once, so concurrent callers pile up behind it.
async fn slow_value(v: u64) -> Result<u64, ()> {
    tokio::task::yield_now().await;
    Ok(v)
}

fn uncontended(c: &mut Criterion) {
    let rt = current_thread();
    let mut group = c.benchmark_group("uncontended");

    let ours = seckill_singleflight::Group::<u64, u64, ()>::new();
    group.bench_function("seckill_singleflight", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for key in 0..iters {
                    black_box(ours.run(key, || async move { Ok(key) }).await.unwrap());
                }
                start.elapsed()
            })
        })
    });

    let peer = async_singleflight::Group::<u64, u64, ()>::new();
    group.bench_function("async_singleflight", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for key in 0..iters {
                    black_box(peer.work(&key, async move { Ok(key) }).await.unwrap());
                }
                start.elapsed()
            })
        })
    });

    let peer = singleflight_async::SingleFlight::<u64, Result<u64, ()>>::new();
    group.bench_function("singleflight_async", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for key in 0..iters {
                    black_box(peer.work(key, || async move { Ok(key) }).await.unwrap());
                }
                start.elapsed()
            })
        })
    });
    group.finish();
}

fn one_key_joined(c: &mut Criterion) {
    let rt = current_thread();
    let mut group = c.benchmark_group("one_key_1000_callers/joined");

    let ours = seckill_singleflight::Group::<u64, u64, ()>::new();
    group.bench_function("seckill_singleflight", |b| {
        b.to_async(&rt).iter(|| async {
            let all = join_all((0..CALLERS).map(|_| ours.run(7, || slow_value(7)))).await;
            assert!(all.iter().all(|r| *r == Ok(7)));
        })
    });

    let peer = async_singleflight::Group::<u64, u64, ()>::new();
    group.bench_function("async_singleflight", |b| {
        b.to_async(&rt).iter(|| async {
            let all = join_all((0..CALLERS).map(|_| peer.work(&7, slow_value(7)))).await;
            assert!(all.iter().all(|r| *r == Ok(7)));
        })
    });

    let peer = singleflight_async::SingleFlight::<u64, Result<u64, ()>>::new();
    group.bench_function("singleflight_async", |b| {
        b.to_async(&rt).iter(|| async {
            let all = join_all((0..CALLERS).map(|_| peer.work(7, || slow_value(7)))).await;
            assert!(all.iter().all(|r| *r == Ok(7)));
        })
    });
    group.finish();
}

/// Spawns `CALLERS` tasks built by `call` and waits for all of them.
async fn spawn_all<F, Fut>(call: F) -> Duration
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool> + Send + 'static,
{
    let start = Instant::now();
    let tasks: Vec<_> = (0..CALLERS).map(|_| tokio::spawn(call())).collect();
    for task in tasks {
        assert!(task.await.unwrap());
    }
    start.elapsed()
}

fn one_key_spawned(c: &mut Criterion) {
    let rt = multi_thread();
    let mut group = c.benchmark_group("one_key_1000_callers/spawned");

    let ours = seckill_singleflight::Group::<u64, u64, ()>::new();
    group.bench_function("seckill_singleflight", |b| {
        b.to_async(&rt).iter(|| {
            spawn_all(|| {
                let g = ours.clone();
                async move { g.run(7, || slow_value(7)).await == Ok(7) }
            })
        })
    });

    let peer = std::sync::Arc::new(async_singleflight::Group::<u64, u64, ()>::new());
    group.bench_function("async_singleflight", |b| {
        b.to_async(&rt).iter(|| {
            spawn_all(|| {
                let g = peer.clone();
                async move { g.work(&7, slow_value(7)).await == Ok(7) }
            })
        })
    });

    let peer = std::sync::Arc::new(singleflight_async::SingleFlight::<u64, Result<u64, ()>>::new());
    group.bench_function("singleflight_async", |b| {
        b.to_async(&rt).iter(|| {
            spawn_all(|| {
                let g = peer.clone();
                async move { g.work(7, || slow_value(7)).await == Ok(7) }
            })
        })
    });
    group.finish();
}

criterion_group!(benches, uncontended, one_key_joined, one_key_spawned);
criterion_main!(benches);
