//! `seckill-singleflight` beside the peer crates `async_singleflight` and
//! `singleflight-async`, on the same work in the same bench group.
//!
//! Run with `cargo bench --bench singleflight`.
//!
//! - `uncontended`: one caller at a time, a fresh key per call, work that is
//!   ready at once: the fixed cost a caller pays when nobody shares its key.
//! - `one_key_1000_callers/joined`: 1,000 callers of one key polled by one
//!   task (`join_all`).
//! - `one_key_1000_callers/spawned`: the same callers as 1,000 tasks on a
//!   two-worker runtime, where waking the waiters crosses threads.
//!
//! In both one-key groups the work waits on a gate that opens only once
//! every caller has been polled (and so has joined), so each iteration is
//! exactly one execution shared by 1,000 callers, the hot-key-expiry case.
//! (An implementation that still runs the work more than once pays for it.)
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use futures::future::join_all;
use tokio::runtime::{Builder, Runtime};
use tokio::sync::Semaphore;

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

/// Work that stays pending until `gate` is closed.
async fn gated(gate: Arc<Semaphore>, v: u64) -> Result<u64, ()> {
    let _ = gate.acquire().await;
    Ok(v)
}

/// Polls `call` once, counts it in `polled`, then drives it to the end.
async fn counted<F: Future<Output = bool>>(call: F, polled: &AtomicUsize) -> bool {
    let mut call = pin!(call);
    let first = futures::poll!(call.as_mut());
    polled.fetch_add(1, Ordering::Release);
    match first {
        Poll::Ready(ok) => ok,
        Poll::Pending => call.await,
    }
}

/// Closes `gate` once all `CALLERS` callers have been polled.
async fn open_when_all_polled(gate: &Semaphore, polled: &AtomicUsize) {
    while polled.load(Ordering::Acquire) < CALLERS {
        tokio::task::yield_now().await;
    }
    gate.close();
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

/// One iteration of the joined group: `call(gate)` builds one caller.
async fn joined<F, Fut>(call: F)
where
    F: Fn(Arc<Semaphore>) -> Fut,
    Fut: Future<Output = bool>,
{
    let gate = Arc::new(Semaphore::new(0));
    let polled = AtomicUsize::new(0);
    let callers = join_all((0..CALLERS).map(|_| counted(call(gate.clone()), &polled)));
    let (all, ()) = tokio::join!(callers, open_when_all_polled(&gate, &polled));
    assert!(all.into_iter().all(|ok| ok));
}

fn one_key_joined(c: &mut Criterion) {
    let rt = current_thread();
    let mut group = c.benchmark_group("one_key_1000_callers/joined");

    let ours = seckill_singleflight::Group::<u64, u64, ()>::new();
    group.bench_function("seckill_singleflight", |b| {
        b.to_async(&rt)
            .iter(|| joined(|gate| async { ours.run(7, || gated(gate, 7)).await == Ok(7) }))
    });

    let peer = async_singleflight::Group::<u64, u64, ()>::new();
    group.bench_function("async_singleflight", |b| {
        b.to_async(&rt)
            .iter(|| joined(|gate| async { peer.work(&7, gated(gate, 7)).await == Ok(7) }))
    });

    let peer = singleflight_async::SingleFlight::<u64, Result<u64, ()>>::new();
    group.bench_function("singleflight_async", |b| {
        b.to_async(&rt)
            .iter(|| joined(|gate| async { peer.work(7, || gated(gate, 7)).await == Ok(7) }))
    });
    group.finish();
}

/// One iteration of the spawned group: `call(gate)` builds one caller,
/// spawned as its own task.
async fn spawned<F, Fut>(call: F) -> Duration
where
    F: Fn(Arc<Semaphore>) -> Fut,
    Fut: Future<Output = bool> + Send + 'static,
{
    let start = Instant::now();
    let gate = Arc::new(Semaphore::new(0));
    let polled = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (caller, polled) = (call(gate.clone()), polled.clone());
            tokio::spawn(async move { counted(caller, &polled).await })
        })
        .collect();
    open_when_all_polled(&gate, &polled).await;
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
            spawned(|gate| {
                let g = ours.clone();
                async move { g.run(7, || gated(gate, 7)).await == Ok(7) }
            })
        })
    });

    let peer = Arc::new(async_singleflight::Group::<u64, u64, ()>::new());
    group.bench_function("async_singleflight", |b| {
        b.to_async(&rt).iter(|| {
            spawned(|gate| {
                let g = peer.clone();
                async move { g.work(&7, gated(gate, 7)).await == Ok(7) }
            })
        })
    });

    let peer = Arc::new(singleflight_async::SingleFlight::<u64, Result<u64, ()>>::new());
    group.bench_function("singleflight_async", |b| {
        b.to_async(&rt).iter(|| {
            spawned(|gate| {
                let g = peer.clone();
                async move { g.work(7, || gated(gate, 7)).await == Ok(7) }
            })
        })
    });
    group.finish();
}

criterion_group!(benches, uncontended, one_key_joined, one_key_spawned);
criterion_main!(benches);
