//! Shutdown hands over every accepted item exactly once; dropping the batcher
//! without shutdown still hands queued items over.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Log;
use seckill_batcher::{Batch, Batcher, SubmitError, Trigger, TrySubmitError, WaitError};
use tokio::sync::{Notify, Semaphore};

const PRODUCERS: u64 = 64;
const ITEMS: u64 = 100_000;

/// 100,000 items from 64 producers (using submit, submit_and_wait and
/// try_submit) race with a shutdown started mid-way. Every item whose submit
/// returned Ok is handled exactly once; every other item came back in its
/// error and was never handled; each producer's items arrive in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_hands_over_every_accepted_item_exactly_once() {
    let times_handled: Arc<Vec<AtomicU8>> =
        Arc::new((0..ITEMS).map(|_| AtomicU8::new(0)).collect());
    let last_seen: Arc<Vec<Mutex<Option<u64>>>> =
        Arc::new((0..PRODUCERS).map(|_| Mutex::new(None)).collect());
    let (counts, order) = (times_handled.clone(), last_seen.clone());
    let batcher = Batcher::builder()
        .max_batch_size(64)
        .max_delay(Duration::from_micros(500))
        .buckets(8)
        .capacity(256)
        .build(move |batch: Batch<(u64, u64)>| {
            for &(producer, id) in &batch {
                counts[id as usize].fetch_add(1, Ordering::SeqCst);
                let mut last = order[producer as usize].lock().unwrap();
                assert!(
                    last.is_none_or(|prev| prev < id),
                    "producer {producer}: {id} after {last:?}"
                );
                *last = Some(id);
            }
            async { Ok::<(), String>(()) }
        })
        .unwrap();

    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let batcher = batcher.clone();
            tokio::spawn(async move {
                let mut accepted = Vec::new();
                // Producer p owns ids p, p + 64, p + 128, ...: increasing.
                for id in (p..ITEMS).step_by(PRODUCERS as usize) {
                    let ok = match p % 4 {
                        0 => match batcher.submit_and_wait(&p, (p, id)).await {
                            Ok(()) => true,
                            Err(WaitError::Closed(item)) => {
                                assert_eq!(item, (p, id));
                                false
                            }
                            Err(other) => panic!("{other:?}"),
                        },
                        1 => loop {
                            match batcher.try_submit(&p, (p, id)) {
                                Ok(()) => break true,
                                Err(TrySubmitError::Full(_)) => tokio::task::yield_now().await,
                                Err(TrySubmitError::Closed(item)) => {
                                    assert_eq!(item, (p, id));
                                    break false;
                                }
                                Err(other) => panic!("{other:?}"),
                            }
                        },
                        _ => match batcher.submit(&p, (p, id)).await {
                            Ok(()) => true,
                            Err(SubmitError::Closed(item)) => {
                                assert_eq!(item, (p, id));
                                false
                            }
                            Err(other) => panic!("{other:?}"),
                        },
                    };
                    if ok {
                        accepted.push(id);
                    }
                }
                accepted
            })
        })
        .collect();

    // Shut down while the producers are in full flow.
    while batcher.stats().submitted < ITEMS / 3 {
        tokio::task::yield_now().await;
    }
    batcher.shutdown().await;

    let mut accepted = vec![false; ITEMS as usize];
    let mut total = 0;
    for producer in producers {
        for id in producer.await.unwrap() {
            accepted[id as usize] = true;
            total += 1;
        }
    }
    for (id, was_accepted) in accepted.iter().enumerate() {
        let handled = times_handled[id].load(Ordering::SeqCst);
        assert_eq!(
            handled,
            u8::from(*was_accepted),
            "item {id}: accepted {was_accepted}, handled {handled} times"
        );
    }
    let stats = batcher.stats();
    assert_eq!(stats.submitted, total);
    assert_eq!(stats.handled, total);
    assert_eq!(stats.failed, 0);
    assert!(
        (ITEMS / 4..ITEMS).contains(&total),
        "shutdown raced the producers: {total} accepted"
    );
    assert!(stats.batches_by_shutdown <= 8 * 5, "{stats:?}");
}

#[tokio::test(start_paused = true)]
async fn after_shutdown_everything_is_refused_and_the_item_handed_back() {
    let log = Log::default();
    let seen = log.clone();
    let batcher = Batcher::builder()
        .max_delay(Duration::from_secs(3600))
        .build(move |batch: Batch<u64>| {
            seen.record(&batch);
            async { Ok::<(), String>(()) }
        })
        .unwrap();
    batcher.submit(&0, 1).await.unwrap();
    let other = batcher.clone();
    batcher.shutdown().await;
    other.shutdown().await; // again, from a clone: returns at once
    assert!(batcher.is_closed() && other.is_closed());
    assert_eq!(log.shape(), [(1, Trigger::Shutdown)]);
    assert_eq!(batcher.submit(&0, 2).await.unwrap_err().into_inner(), 2);
    assert!(matches!(
        batcher.try_submit(&0, 3),
        Err(TrySubmitError::Closed(3))
    ));
    assert!(matches!(
        batcher.submit_and_wait(&0, 4).await,
        Err(WaitError::Closed(4))
    ));
    batcher.flush().await; // nothing to do, does not hang
    assert_eq!(batcher.stats().handled, 1);
}

/// Submits waiting for room when shutdown comes get their item back; the
/// items already queued are still handed over.
#[tokio::test(start_paused = true)]
async fn submits_waiting_for_room_get_their_item_back_on_shutdown() {
    let gate = Arc::new(Semaphore::new(0));
    let entered = Arc::new(Notify::new());
    let log = Log::default();
    let (g, e, seen) = (gate.clone(), entered.clone(), log.clone());
    let batcher = Batcher::builder()
        .max_batch_size(2)
        .capacity(2)
        .build(move |batch: Batch<u64>| {
            seen.record(&batch);
            let (gate, entered) = (g.clone(), e.clone());
            async move {
                entered.notify_one();
                gate.acquire().await.unwrap().forget();
                Ok::<(), String>(())
            }
        })
        .unwrap();
    batcher.submit(&0, 1).await.unwrap();
    batcher.submit(&0, 2).await.unwrap();
    entered.notified().await;
    batcher.submit(&0, 3).await.unwrap();
    batcher.submit(&0, 4).await.unwrap();
    let blocked = {
        let batcher = batcher.clone();
        tokio::spawn(async move { batcher.submit(&0, 5).await })
    };
    let stopping = {
        let batcher = batcher.clone();
        tokio::spawn(async move { batcher.shutdown().await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!blocked.is_finished() && !stopping.is_finished());
    gate.add_permits(10);
    stopping.await.unwrap();
    assert!(matches!(
        blocked.await.unwrap(),
        Err(SubmitError::Closed(5))
    ));
    assert_eq!(log.items(), [1, 2, 3, 4]);
}

/// Dropping every handle without shutdown: the worker still hands the queued
/// items over (as a shutdown batch, without waiting for max_delay) and ends.
#[tokio::test(start_paused = true)]
async fn dropping_the_batcher_hands_queued_items_over_in_the_background() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let batcher = Batcher::builder()
        .max_delay(Duration::from_secs(3600))
        .build(move |batch: Batch<u64>| {
            tx.send((batch.to_vec(), batch.trigger())).unwrap();
            async { Ok::<(), String>(()) }
        })
        .unwrap();
    for i in 0..5 {
        batcher.submit(&0, i).await.unwrap();
    }
    let start = tokio::time::Instant::now();
    drop(batcher);
    assert_eq!(
        rx.recv().await,
        Some((vec![0, 1, 2, 3, 4], Trigger::Shutdown))
    );
    assert_eq!(tokio::time::Instant::now(), start);
    // The worker ended and dropped the handler (and with it the sender).
    assert_eq!(rx.recv().await, None);
}

/// Shutdown waits for handler calls in flight, retries included.
#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_retries_in_flight() {
    let attempts = Arc::new(AtomicU64::new(0));
    let counted = attempts.clone();
    let batcher = Batcher::builder()
        .max_batch_size(1)
        .retries(3)
        .backoff(Duration::from_secs(1), Duration::from_secs(1))
        .build(move |_: Batch<u64>| {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 3 {
                    Err("not yet".to_string())
                } else {
                    Ok(())
                }
            }
        })
        .unwrap();
    batcher.submit(&0, 1).await.unwrap();
    tokio::task::yield_now().await;
    let start = tokio::time::Instant::now();
    batcher.shutdown().await;
    assert_eq!(attempts.load(Ordering::SeqCst), 4);
    assert_eq!(tokio::time::Instant::now() - start, Duration::from_secs(3));
    assert_eq!(batcher.stats().handled, 1);
}

/// Regression: batches handed over because every handle was dropped were
/// labelled `Size` when the queue held more than `max_batch_size` items.
#[tokio::test(start_paused = true)]
async fn batches_handed_over_after_the_last_handle_is_dropped_are_shutdown_batches() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let batcher = Batcher::builder()
        .max_batch_size(4)
        .max_delay(Duration::from_secs(3600))
        .capacity(100)
        .build(move |batch: Batch<u64>| {
            tx.send((batch.to_vec(), batch.trigger())).unwrap();
            async { Ok::<(), String>(()) }
        })
        .unwrap();
    // try_submit never yields, so the worker first looks at the queue after
    // the drop.
    for i in 0..10 {
        batcher.try_submit(&0, i).unwrap();
    }
    drop(batcher);
    let mut calls = Vec::new();
    while let Some(call) = rx.recv().await {
        calls.push(call);
    }
    assert_eq!(
        calls,
        [
            (vec![0, 1, 2, 3], Trigger::Shutdown),
            (vec![4, 5, 6, 7], Trigger::Shutdown),
            (vec![8, 9], Trigger::Shutdown)
        ]
    );
}

/// Dropped while a batch is being collected (the worker is waiting for
/// `max_delay` with some items): the rest is handed over as shutdown
/// batches at once, without waiting for the timer.
#[tokio::test(start_paused = true)]
async fn dropping_while_collecting_hands_over_at_once_as_shutdown() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let batcher = Batcher::builder()
        .max_batch_size(3)
        .max_delay(Duration::from_secs(3600))
        .build(move |batch: Batch<u64>| {
            tx.send((batch.to_vec(), batch.trigger())).unwrap();
            async { Ok::<(), String>(()) }
        })
        .unwrap();
    batcher.submit(&0, 0).await.unwrap();
    tokio::task::yield_now().await; // the worker takes item 0 and starts its timer
    for i in 1..5 {
        batcher.try_submit(&0, i).unwrap();
    }
    let start = tokio::time::Instant::now();
    drop(batcher);
    let mut calls = Vec::new();
    while let Some(call) = rx.recv().await {
        calls.push(call);
    }
    assert_eq!(tokio::time::Instant::now(), start);
    assert_eq!(
        calls,
        [
            (vec![0, 1, 2], Trigger::Shutdown),
            (vec![3, 4], Trigger::Shutdown)
        ]
    );
}
