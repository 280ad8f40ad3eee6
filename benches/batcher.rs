//! Items per second through a batcher with a no-op handler, at batch sizes
//! 1, 16 and 128.
//!
//! Two groups, each holding ours beside its yardstick in the same run:
//!
//! - `batcher_submit`: fire-and-forget. `seckill_batcher::submit` beside a
//!   bare bounded `tokio::sync::mpsc` channel moving the same items into a
//!   consumer that takes them `batch` at a time with `recv_many` (the
//!   ceiling: what any channel-based batcher costs at least), and beside
//!   the same channel moving each item with an empty 8-byte slot, as our
//!   queue does (it carries the waiter of `submit_and_wait` there).
//! - `batcher_wait`: every item awaits its batch's outcome.
//!   `seckill_batcher::submit_and_wait` beside `batch-aint-one`'s `add`
//!   (the peer), both with one key queue, one batch in flight, a 1 ms
//!   linger and the same batch size, driven by 1,024 concurrent callers
//!   sharing 100,000 items.
//!
//! Run: `cargo bench --bench batcher -- --warm-up-time 1 --measurement-time 3`

// A bench whose setup fails should stop loudly, like a test.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use seckill::batcher::{Batch, Batcher};
use tokio::runtime::Runtime;

const ITEMS: u64 = 100_000;
const PRODUCERS: u64 = 4;
const CALLERS: u64 = 1_024;
const CAPACITY: usize = 10_000;
const LINGER: Duration = Duration::from_millis(1);
const SIZES: [usize; 3] = [1, 16, 128];

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The ceiling: producers send into a bounded channel; one consumer takes up
/// to `size` items at a time and hands them to a no-op. `item` builds what
/// travels: the bare `u64`, or the `u64` beside an empty 8-byte slot, which
/// is what our queue moves per item (the slot holds the waiter of
/// `submit_and_wait`).
async fn bare_channel<I, F>(size: usize, item: F)
where
    I: Send + 'static,
    F: Fn(u64) -> I + Copy + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel::<I>(CAPACITY);
    let consumer = tokio::spawn(async move {
        let mut batch = Vec::with_capacity(size);
        while rx.recv_many(&mut batch, size).await > 0 {
            black_box(&batch);
            batch.clear();
        }
    });
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let tx = tx.clone();
            tokio::spawn(async move {
                for i in 0..ITEMS / PRODUCERS {
                    tx.send(item(p * ITEMS + i)).await.ok().unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    for producer in producers {
        producer.await.unwrap();
    }
    consumer.await.unwrap();
}

fn seckill_batcher(size: usize) -> Batcher<u64, ()> {
    Batcher::builder()
        .max_batch_size(size)
        .max_delay(LINGER)
        .buckets(1)
        .capacity(CAPACITY)
        .build(|batch: Batch<u64>| {
            black_box(&batch);
            std::future::ready(Ok(()))
        })
        .unwrap()
}

/// Ours, fire-and-forget: the same producers submit; shutdown returns once
/// every item was handed to the handler.
async fn seckill_submit(size: usize) {
    let batcher = seckill_batcher(size);
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let batcher = batcher.clone();
            tokio::spawn(async move {
                for i in 0..ITEMS / PRODUCERS {
                    batcher.submit(&0u64, p * ITEMS + i).await.unwrap();
                }
            })
        })
        .collect();
    for producer in producers {
        producer.await.unwrap();
    }
    batcher.shutdown().await;
}

/// Ours, every item awaits its outcome.
async fn seckill_submit_and_wait(size: usize) {
    let batcher = seckill_batcher(size);
    let next = Arc::new(AtomicU64::new(0));
    let callers: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (batcher, next) = (batcher.clone(), next.clone());
            tokio::spawn(async move {
                while let Some(item) = take(&next) {
                    batcher.submit_and_wait(&0u64, item).await.unwrap();
                }
            })
        })
        .collect();
    for caller in callers {
        caller.await.unwrap();
    }
    batcher.shutdown().await;
}

#[derive(Clone)]
struct NoOp;

impl batch_aint_one::Processor for NoOp {
    type Key = u64;
    type Input = u64;
    type Output = ();
    type Error = String;
    type Resources = ();

    async fn acquire_resources(&self, _key: u64) -> Result<(), String> {
        Ok(())
    }

    async fn process(
        &self,
        _key: u64,
        inputs: impl Iterator<Item = u64> + Send,
        _resources: (),
    ) -> Result<Vec<()>, String> {
        Ok(inputs
            .map(|item| {
                black_box(item);
            })
            .collect())
    }
}

/// The peer, configured like ours: one key, one batch in flight, the same
/// size and linger, a queue that never rejects in this run.
async fn batch_aint_one(size: usize) {
    use batch_aint_one::{BatchingPolicy, Limits, OnFull};
    let batcher = batch_aint_one::Batcher::builder()
        .name("bench")
        .processor(NoOp)
        .limits(
            Limits::builder()
                .max_batch_size(size)
                .max_key_concurrency(1)
                .max_key_queued_items(ITEMS as usize)
                .build(),
        )
        .batching_policy(BatchingPolicy::Duration(LINGER, OnFull::Process))
        .build();
    let next = Arc::new(AtomicU64::new(0));
    let callers: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (batcher, next) = (batcher.clone(), next.clone());
            tokio::spawn(async move {
                while let Some(item) = take(&next) {
                    batcher.add(0, item).await.unwrap();
                }
            })
        })
        .collect();
    for caller in callers {
        caller.await.unwrap();
    }
    let worker = batcher.worker_handle();
    worker.shut_down().await;
    worker.wait_for_shutdown().await;
}

/// The next item for a caller to submit, until `ITEMS` were taken: callers
/// share the work, so all stay busy until the end and no straggler is left
/// waiting out lingers alone.
fn take(next: &AtomicU64) -> Option<u64> {
    let item = next.fetch_add(1, Ordering::Relaxed);
    (item < ITEMS).then_some(item)
}

/// Times `iters` runs of `run(size)`.
async fn timed<F, Fut>(iters: u64, size: usize, run: F) -> Duration
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = ()>,
{
    let start = Instant::now();
    for _ in 0..iters {
        run(size).await;
    }
    start.elapsed()
}

fn submit(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("batcher_submit");
    group.sample_size(10);
    group.throughput(Throughput::Elements(ITEMS - ITEMS % PRODUCERS));
    for size in SIZES {
        group.bench_with_input(BenchmarkId::new("mpsc_ceiling", size), &size, |b, &size| {
            b.to_async(&rt)
                .iter_custom(|iters| timed(iters, size, |size| bare_channel(size, |i| i)));
        });
        group.bench_with_input(
            BenchmarkId::new("mpsc_ceiling_with_slot", size),
            &size,
            |b, &size| {
                b.to_async(&rt).iter_custom(|iters| {
                    timed(iters, size, |size| {
                        bare_channel(size, |i| (i, None::<Box<u8>>))
                    })
                });
            },
        );
        group.bench_with_input(BenchmarkId::new("seckill", size), &size, |b, &size| {
            b.to_async(&rt)
                .iter_custom(|iters| timed(iters, size, seckill_submit));
        });
    }
    group.finish();
}

fn wait(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("batcher_wait");
    group.sample_size(10);
    group.throughput(Throughput::Elements(ITEMS));
    for size in SIZES {
        group.bench_with_input(
            BenchmarkId::new("batch_aint_one", size),
            &size,
            |b, &size| {
                b.to_async(&rt)
                    .iter_custom(|iters| timed(iters, size, batch_aint_one));
            },
        );
        group.bench_with_input(BenchmarkId::new("seckill", size), &size, |b, &size| {
            b.to_async(&rt)
                .iter_custom(|iters| timed(iters, size, seckill_submit_and_wait));
        });
    }
    group.finish();
}

criterion_group!(benches, submit, wait);
criterion_main!(benches);
