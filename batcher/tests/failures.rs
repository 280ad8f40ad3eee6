//! Failing and panicking handlers: retries with backoff, the failure callback,
//! and the error reaching `submit_and_wait` callers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Log;
use seckill_batcher::{Batch, BatchError, Batcher, FailedBatch, WaitError};
use tokio::time::Instant;

type Failures = Arc<Mutex<Vec<(Vec<u64>, String)>>>;

fn keep_failures(failures: &Failures) -> impl Fn(FailedBatch<u64, String>) + use<> {
    let failures = failures.clone();
    move |failed| {
        let error = failed.error().to_string();
        let items = failed
            .try_into_items()
            .expect("the callback owns the items");
        failures.lock().unwrap().push((items, error));
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_batch_is_retried_with_backoff_until_it_succeeds() {
    let log = Log::default();
    let seen = log.clone();
    let failures = Failures::default();
    let batcher = Batcher::builder()
        .max_batch_size(3)
        .retries(5)
        .backoff(Duration::from_millis(100), Duration::from_millis(250))
        .on_failure(keep_failures(&failures))
        .build(move |batch: Batch<u64>| {
            seen.record(&batch);
            let attempt = batch.attempt();
            async move {
                if attempt <= 3 {
                    Err(format!("broker down (attempt {attempt})"))
                } else {
                    Ok(())
                }
            }
        })
        .unwrap();
    let start = Instant::now();
    let (a, b, c) = tokio::join!(
        batcher.submit_and_wait(&0, 1),
        batcher.submit_and_wait(&0, 2),
        batcher.submit_and_wait(&0, 3)
    );
    a.unwrap();
    b.unwrap();
    c.unwrap();
    let calls = log.calls();
    let attempts: Vec<_> = calls
        .iter()
        .map(|c| (c.attempt, (c.at - start).as_millis(), c.items.clone()))
        .collect();
    assert_eq!(
        attempts,
        [
            (1, 0, vec![1, 2, 3]),
            (2, 100, vec![1, 2, 3]),
            (3, 300, vec![1, 2, 3]),
            (4, 550, vec![1, 2, 3]) // 100, 200, then capped at 250
        ]
    );
    let stats = batcher.stats();
    assert_eq!((stats.handled, stats.failed, stats.retries), (3, 0, 3));
    assert!(failures.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn after_the_last_retry_the_batch_goes_to_the_callback_and_the_waiters() {
    let failures = Failures::default();
    let calls = Arc::new(AtomicU32::new(0));
    let counted = calls.clone();
    let batcher = Batcher::builder()
        .max_batch_size(4)
        .max_delay(Duration::from_millis(5))
        .retries(2)
        .backoff(Duration::from_millis(10), Duration::from_secs(1))
        .on_failure(keep_failures(&failures))
        .build(move |batch: Batch<u64>| {
            counted.fetch_add(1, Ordering::SeqCst);
            let poisoned = batch.contains(&13);
            async move {
                if poisoned {
                    Err("item 13 rejected".to_string())
                } else {
                    Ok(())
                }
            }
        })
        .unwrap();
    batcher.submit(&0, 11).await.unwrap();
    batcher.submit(&0, 12).await.unwrap();
    let waited = batcher.submit_and_wait(&0, 13).await;
    match waited {
        Err(WaitError::Batch(BatchError::Failed(error))) => assert_eq!(*error, "item 13 rejected"),
        other => panic!("expected the handler's error, got {other:?}"),
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3, "1 call + 2 retries");
    assert_eq!(
        *failures.lock().unwrap(),
        [(
            vec![11, 12, 13],
            "the batch handler failed on its last attempt: item 13 rejected".to_string()
        )]
    );
    // The bucket goes on with the next batch.
    batcher.submit_and_wait(&0, 14).await.unwrap();
    batcher.shutdown().await;
    let stats = batcher.stats();
    assert_eq!(
        (stats.submitted, stats.handled, stats.failed, stats.retries),
        (4, 1, 3, 2)
    );
}

#[tokio::test(start_paused = true)]
async fn a_panicking_handler_fails_its_batch_and_the_batcher_lives_on() {
    let failures = Failures::default();
    let log = Log::default();
    let seen = log.clone();
    let batcher = Batcher::builder()
        .max_batch_size(2)
        .retries(1)
        .backoff(Duration::from_millis(1), Duration::from_millis(1))
        .on_failure(keep_failures(&failures))
        .build(move |batch: Batch<u64>| {
            seen.record(&batch);
            let boom = batch.contains(&7);
            async move {
                tokio::task::yield_now().await;
                if boom {
                    panic!("boom at item 7");
                }
                Ok::<(), String>(())
            }
        })
        .unwrap();
    let (a, b) = tokio::join!(
        batcher.submit_and_wait(&0, 7),
        batcher.submit_and_wait(&0, 8)
    );
    for outcome in [a, b] {
        match outcome {
            Err(WaitError::Batch(BatchError::Panicked(message))) => {
                assert_eq!(&*message, "boom at item 7")
            }
            other => panic!("expected Panicked, got {other:?}"),
        }
    }
    let (c, d) = tokio::join!(
        batcher.submit_and_wait(&0, 9),
        batcher.submit_and_wait(&0, 10)
    );
    c.unwrap();
    d.unwrap();
    batcher.shutdown().await;
    assert_eq!(failures.lock().unwrap().len(), 1);
    assert_eq!(failures.lock().unwrap()[0].0, [7, 8]);
    let stats = batcher.stats();
    assert_eq!(
        (stats.handled, stats.failed, stats.panics, stats.retries),
        (2, 2, 2, 1)
    );
    assert_eq!(log.calls().len(), 3);
}

/// A panic while building the handler's future (before its first poll) is
/// caught too, and so is a panic in the failure callback.
#[tokio::test(start_paused = true)]
async fn panics_outside_the_future_are_caught_too() {
    let batcher = Batcher::builder()
        .max_batch_size(1)
        .on_failure(|_: FailedBatch<u64, String>| panic!("the dead-letter store is down"))
        .build(|batch: Batch<u64>| {
            if batch[0] == 1 {
                panic!("bad input");
            }
            std::future::ready(Ok::<(), String>(()))
        })
        .unwrap();
    match batcher.submit_and_wait(&0, 1).await {
        Err(WaitError::Batch(BatchError::Panicked(message))) => assert_eq!(&*message, "bad input"),
        other => panic!("expected Panicked, got {other:?}"),
    }
    batcher.submit_and_wait(&0, 2).await.unwrap();
    batcher.shutdown().await;
    let stats = batcher.stats();
    assert_eq!((stats.handled, stats.failed, stats.panics), (1, 1, 2));
}

/// Without a callback a failed batch is still not silent: its waiters get the
/// error and it is counted.
#[tokio::test(start_paused = true)]
async fn without_a_callback_failures_are_counted_and_reported_to_waiters() {
    let batcher = Batcher::builder()
        .max_batch_size(1)
        .build(|_: Batch<u64>| async { Err::<(), _>(std::io::Error::other("disk full")) })
        .unwrap();
    let error = batcher.submit_and_wait(&0, 1).await.unwrap_err();
    assert!(error.to_string().contains("disk full"), "{error}");
    batcher.submit(&0, 2).await.unwrap();
    batcher.shutdown().await;
    assert_eq!(batcher.stats().failed, 2);
}

/// Retries keep order: the next batch of the bucket waits until the failing
/// one succeeded or was given up.
#[tokio::test(start_paused = true)]
async fn retries_keep_the_buckets_order() {
    let log = Log::default();
    let seen = log.clone();
    let batcher = Batcher::builder()
        .max_batch_size(2)
        .retries(2)
        .build(move |batch: Batch<u64>| {
            seen.record(&batch);
            let fail = batch.attempt() == 1 && batch[0] == 0;
            async move {
                if fail {
                    Err("once".to_string())
                } else {
                    Ok(())
                }
            }
        })
        .unwrap();
    for i in 0..6 {
        batcher.submit(&0, i).await.unwrap();
    }
    batcher.shutdown().await;
    let calls: Vec<_> = log
        .calls()
        .iter()
        .map(|c| (c.attempt, c.items.clone()))
        .collect();
    assert_eq!(
        calls,
        [
            (1, vec![0, 1]),
            (2, vec![0, 1]),
            (1, vec![2, 3]),
            (1, vec![4, 5])
        ]
    );
}

/// An item type that is not `Clone`: the callback can only dead-letter it by
/// owning it.
#[derive(Debug, PartialEq, Eq)]
struct Order(u64);

/// Regression: the failure callback could neither take the items (`into_vec`
/// was refused there) nor tell the attempt count (`attempt()` read 0).
/// 2,000 tasks submit 20,000 non-`Clone` items over 4 buckets; every batch
/// holding a poisoned item fails on all 3 attempts and its items are
/// dead-lettered into a channel. Each item is handled or dead-lettered
/// exactly once, with `attempts() == 3`, and each `submit_and_wait` caller
/// sees the outcome of its own item.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_failure_callback_owns_and_dead_letters_every_failed_item_exactly_once() {
    const TASKS: u64 = 2_000;
    const PER_TASK: u64 = 10;
    const ITEMS: u64 = TASKS * PER_TASK;
    let handled: Arc<Vec<AtomicU32>> = Arc::new((0..ITEMS).map(|_| AtomicU32::new(0)).collect());
    let seen = handled.clone();
    let (dead_letters, mut dead_rx) = tokio::sync::mpsc::unbounded_channel();
    let batcher = Batcher::builder()
        .max_batch_size(32)
        .max_delay(Duration::from_millis(1))
        .buckets(4)
        .capacity(512)
        .retries(2)
        .backoff(Duration::ZERO, Duration::ZERO)
        .on_failure(move |failed: FailedBatch<Order, String>| {
            let attempts = failed.attempts();
            let error = failed.error().to_string();
            let items = failed
                .try_into_items()
                .expect("the callback owns the items");
            dead_letters.send((attempts, error, items)).unwrap();
        })
        .build(move |batch: Batch<Order>| {
            let poisoned = batch.iter().any(|o| o.0 % 97 == 0);
            if !poisoned {
                for order in &batch {
                    seen[order.0 as usize].fetch_add(1, Ordering::SeqCst);
                }
            }
            async move {
                if poisoned {
                    Err("poisoned order".to_string())
                } else {
                    Ok(())
                }
            }
        })
        .unwrap();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let batcher = batcher.clone();
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for i in 0..PER_TASK {
                    let id = t * PER_TASK + i;
                    if id.is_multiple_of(2) {
                        let outcome = batcher.submit_and_wait(&t, Order(id)).await;
                        outcomes.push((id, outcome.map_err(|e| e.to_string())));
                    } else {
                        batcher.submit(&t, Order(id)).await.unwrap();
                    }
                }
                outcomes
            })
        })
        .collect();
    let mut waited = Vec::new();
    for task in tasks {
        waited.extend(task.await.unwrap());
    }
    batcher.shutdown().await;

    let mut dead = vec![0u32; ITEMS as usize];
    let mut dead_total = 0u64;
    while let Ok((attempts, error, items)) = dead_rx.try_recv() {
        assert_eq!(attempts, 3, "1 call + 2 retries");
        assert_eq!(
            error,
            "the batch handler failed on its last attempt: poisoned order"
        );
        assert!(items.iter().any(|o| o.0 % 97 == 0), "{items:?}");
        for order in items {
            dead[order.0 as usize] += 1;
            dead_total += 1;
        }
    }
    for id in 0..ITEMS {
        let (h, d) = (
            handled[id as usize].load(Ordering::SeqCst),
            dead[id as usize],
        );
        assert_eq!(
            h + d,
            1,
            "item {id}: handled {h} times, dead-lettered {d} times"
        );
        if id % 97 == 0 {
            assert_eq!(d, 1, "poisoned item {id} was not dead-lettered");
        }
    }
    for (id, outcome) in waited {
        let was_dead = dead[id as usize] == 1;
        match outcome {
            Ok(()) => assert!(!was_dead, "item {id} dead-lettered but its waiter got Ok"),
            Err(e) => {
                assert!(was_dead, "item {id}: {e}");
                assert_eq!(
                    e,
                    "the batch handler failed on its last attempt: poisoned order"
                );
            }
        }
    }
    let stats = batcher.stats();
    assert!(dead_total >= ITEMS / 97, "{dead_total}");
    assert_eq!(stats.failed, dead_total);
    assert_eq!(stats.handled, ITEMS - dead_total);
    assert_eq!(stats.submitted, ITEMS);
    assert_eq!(stats.pending(), 0);
}

/// A handler that keeps a clone of its batch past its future leaves the
/// items shared: the callback still reads them, and gets them back in the
/// error of `try_into_items` instead of losing them.
#[tokio::test(start_paused = true)]
async fn a_batch_the_handler_kept_is_still_readable_in_the_callback() {
    let kept: Arc<Mutex<Vec<Batch<u64>>>> = Arc::default();
    let keep = kept.clone();
    type Seen = Vec<(bool, Vec<u64>, u32)>;
    let got: Arc<Mutex<Seen>> = Arc::default();
    let record = got.clone();
    let batcher = Batcher::builder()
        .max_batch_size(2)
        .on_failure(move |failed: FailedBatch<u64, String>| {
            let owned = failed.owns_items();
            let attempts = failed.attempts();
            let items = match failed.try_into_items() {
                Ok(items) => items,
                Err(failed) => failed.to_vec(),
            };
            record.lock().unwrap().push((owned, items, attempts));
        })
        .build(move |batch: Batch<u64>| {
            keep.lock().unwrap().push(batch.clone());
            async { Err::<(), _>("down".to_string()) }
        })
        .unwrap();
    batcher.submit(&0, 1).await.unwrap();
    batcher.submit(&0, 2).await.unwrap();
    batcher.shutdown().await;
    assert_eq!(*got.lock().unwrap(), [(false, vec![1, 2], 1)]);
    assert_eq!(&kept.lock().unwrap()[0][..], [1, 2]);
}
