//! The counters: monotonic always, exact at quiescence, adding up.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use seckill_batcher::{Batch, Batcher, FailedBatch, Stats, WaitError};

/// Every field of a snapshot, to compare two snapshots counter by counter.
fn fields(s: &Stats) -> [(&'static str, u64); 10] {
    [
        ("submitted", s.submitted),
        ("handled", s.handled),
        ("failed", s.failed),
        ("abandoned", s.abandoned),
        ("retries", s.retries),
        ("panics", s.panics),
        ("batches_by_size", s.batches_by_size),
        ("batches_by_time", s.batches_by_time),
        ("batches_by_flush", s.batches_by_flush),
        ("batches_by_shutdown", s.batches_by_shutdown),
    ]
}

/// Panics unless every counter of `next` is at least the one in `prev`, and
/// `next` adds up (no outcome without its accepted item).
fn assert_grew(prev: &Stats, next: &Stats) {
    for ((name, a), (_, b)) in fields(prev).into_iter().zip(fields(next)) {
        assert!(
            b >= a,
            "{name} went back from {a} to {b}: {prev:?} then {next:?}"
        );
    }
    assert!(
        next.submitted >= next.handled + next.failed + next.abandoned,
        "more outcomes than items: {next:?}"
    );
}

/// Regression: `submitted` counted the items still queued from the channel's
/// free capacity, which came back when the runtime stopped and dropped the
/// queue, so `submitted` fell from 20 to 4. Now the items the stopped worker
/// held are counted as abandoned and nothing goes back.
#[test]
fn submitted_never_goes_back_when_the_runtime_stops_first() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let (batcher, waiter) = runtime.block_on(async {
        let batcher = Batcher::builder()
            .max_batch_size(4)
            .capacity(100)
            // Never finishes: the first batch stays in the handler.
            .build(|_: Batch<u64>| std::future::pending::<Result<(), String>>())
            .unwrap();
        for i in 0..19 {
            batcher.submit(&0, i).await.unwrap();
        }
        let waiter = {
            let batcher = batcher.clone();
            tokio::spawn(async move { batcher.submit_and_wait(&0, 19).await })
        };
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        (batcher, waiter)
    });
    let before = batcher.stats();
    assert_eq!(
        (before.submitted, before.handled, before.abandoned),
        (20, 0, 0)
    );
    drop(runtime);
    let after = batcher.stats();
    assert_grew(&before, &after);
    // 4 in the handler, the other 16 queued: all accepted, none handled.
    assert_eq!(
        (
            after.submitted,
            after.handled,
            after.failed,
            after.abandoned
        ),
        (20, 0, 0, 20),
        "{after:?}"
    );
    assert_eq!(after.pending(), 0);
    // The waiter's task was dropped with its runtime; a new runtime shows
    // that submits after the workers stopped are refused, item handed back.
    let again = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    again.block_on(async {
        assert!(matches!(
            batcher.submit_and_wait(&0, 20).await,
            Err(WaitError::Closed(20))
        ));
    });
    drop(waiter);
    assert_eq!(batcher.stats().submitted, 20);
}

/// 4,000 producer tasks (submit, submit_and_wait, try_submit) against a
/// handler that fails or panics some batches, with retries, while 4 reader
/// tasks read `stats()` in a loop: no reader ever sees a counter decrease or
/// more outcomes than items, and at the end the counters are exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counters_never_decrease_under_concurrent_reads() {
    const TASKS: u64 = 4_000;
    const PER_TASK: u64 = 8;
    let batcher = Batcher::builder()
        .max_batch_size(16)
        .max_delay(Duration::from_micros(200))
        .buckets(4)
        .capacity(64)
        .retries(1)
        .backoff(Duration::ZERO, Duration::ZERO)
        .on_failure(|_: FailedBatch<u64, String>| {})
        .build(|batch: Batch<u64>| {
            let first = batch[0];
            let attempt = batch.attempt();
            async move {
                tokio::task::yield_now().await;
                match first % 10 {
                    0 => Err("always fails".to_string()),
                    1 if attempt == 1 => panic!("fails once by panicking"),
                    2 if attempt == 1 => Err("fails once".to_string()),
                    _ => Ok(()),
                }
            }
        })
        .unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (batcher, done) = (batcher.clone(), done.clone());
            tokio::spawn(async move {
                let mut prev = batcher.stats();
                let mut reads = 0u64;
                while !done.load(Ordering::SeqCst) {
                    let next = batcher.stats();
                    assert_grew(&prev, &next);
                    prev = next;
                    reads += 1;
                    tokio::task::yield_now().await;
                }
                reads
            })
        })
        .collect();
    let producers: Vec<_> = (0..TASKS)
        .map(|t| {
            let batcher = batcher.clone();
            tokio::spawn(async move {
                for i in 0..PER_TASK {
                    let item = t * PER_TASK + i;
                    match t % 3 {
                        0 => batcher.submit(&t, item).await.unwrap(),
                        1 => {
                            let _ = batcher.submit_and_wait(&t, item).await;
                        }
                        _ => loop {
                            match batcher.try_submit(&t, item) {
                                Ok(()) => break,
                                Err(_) => tokio::task::yield_now().await,
                            }
                        },
                    }
                }
            })
        })
        .collect();
    for producer in producers {
        producer.await.unwrap();
    }
    batcher.flush().await;
    let flushed = batcher.stats();
    assert_eq!(flushed.submitted, TASKS * PER_TASK);
    assert_eq!(flushed.pending(), 0, "{flushed:?}");
    batcher.shutdown().await;
    done.store(true, Ordering::SeqCst);
    for reader in readers {
        assert!(reader.await.unwrap() > 0);
    }
    let end = batcher.stats();
    assert_grew(&flushed, &end);
    assert_eq!(end, flushed, "nothing happened after the flush");
    assert_eq!(end.handled + end.failed, TASKS * PER_TASK);
    assert_eq!(end.abandoned, 0);
    assert!(
        end.failed > 0 && end.panics > 0 && end.retries > 0,
        "{end:?}"
    );
}
