//! A full bucket makes `submit` wait and `try_submit` fail, and memory stays bounded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use seckill_batcher::{Batch, Batcher, TrySubmitError};
use tokio::sync::{Notify, Semaphore};
use tokio::time::timeout;

/// The handler holds its first batch until the test opens the gate, so the
/// queue behind it fills up.
#[tokio::test(start_paused = true)]
async fn a_full_bucket_makes_submit_wait_and_try_submit_fail() {
    let gate = Arc::new(Semaphore::new(0));
    let entered = Arc::new(Notify::new());
    let (g, e) = (gate.clone(), entered.clone());
    let batcher = Batcher::builder()
        .max_batch_size(10)
        .capacity(20)
        .build(move |_: Batch<u64>| {
            let (gate, entered) = (g.clone(), e.clone());
            async move {
                entered.notify_one();
                gate.acquire().await.unwrap().forget();
                Ok::<(), String>(())
            }
        })
        .unwrap();
    for i in 0..10 {
        batcher.submit(&0, i).await.unwrap();
    }
    entered.notified().await; // the worker holds items 0..10 in the handler
    for i in 10..30 {
        batcher.try_submit(&0, i).unwrap();
    }
    match batcher.try_submit(&0, 30) {
        Err(TrySubmitError::Full(item)) => assert_eq!(item, 30),
        other => panic!("expected Full, got {other:?}"),
    }
    assert!(
        timeout(Duration::from_secs(60), batcher.submit(&0, 30))
            .await
            .is_err(),
        "submit waits while the bucket is full"
    );
    let stats = batcher.stats();
    assert_eq!(stats.submitted, 30);
    gate.add_permits(1_000);
    batcher.submit(&0, 30).await.unwrap();
    batcher.shutdown().await;
    assert_eq!(batcher.stats().handled, 31);
}

/// One producer submits 20,000 items as fast as it can; the handler takes a
/// (virtual) 50 ms per batch. At every handler call, the items accepted but
/// not handled never exceed capacity + max_batch_size.
#[tokio::test(start_paused = true)]
async fn memory_stays_bounded_under_a_producer_faster_than_the_handler() {
    const CAPACITY: u64 = 100;
    const MAX_BATCH: u64 = 10;
    let me: Arc<OnceLock<Batcher<u64, String>>> = Arc::default();
    let most = Arc::new(AtomicU64::new(0));
    let (handle, highest) = (me.clone(), most.clone());
    let batcher = Batcher::builder()
        .max_batch_size(MAX_BATCH as usize)
        .capacity(CAPACITY as usize)
        .build(move |_: Batch<u64>| {
            let (handle, highest) = (handle.clone(), highest.clone());
            async move {
                let stats = handle.get().unwrap().stats();
                highest.fetch_max(stats.submitted - stats.handled, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok(())
            }
        })
        .unwrap();
    me.set(batcher.clone()).unwrap();
    let producer = {
        let batcher = batcher.clone();
        tokio::spawn(async move {
            for i in 0..20_000 {
                batcher.submit(&0, i).await.unwrap();
            }
        })
    };
    producer.await.unwrap();
    batcher.shutdown().await;
    assert_eq!(batcher.stats().handled, 20_000);
    let most = most.load(Ordering::SeqCst);
    assert!(most <= CAPACITY + MAX_BATCH, "{most} items in flight");
    assert!(most >= CAPACITY, "the queue did fill up: {most}");
}

/// try_submit sheds load instead of waiting: under a burst larger than the
/// capacity, every item is either accepted (and handled) or handed back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn try_submit_hands_back_what_it_cannot_take() {
    let handled = Arc::new(AtomicU64::new(0));
    let count = handled.clone();
    let batcher = Batcher::builder()
        .max_batch_size(50)
        .capacity(200)
        .buckets(2)
        .build(move |batch: Batch<u64>| {
            let count = count.clone();
            async move {
                tokio::time::sleep(Duration::from_micros(100)).await;
                count.fetch_add(batch.iter().sum::<u64>(), Ordering::SeqCst);
                Ok::<(), String>(())
            }
        })
        .unwrap();
    let (mut accepted, mut rejected) = (0u64, 0u64);
    for i in 1..=50_000u64 {
        match batcher.try_submit(&i, i) {
            Ok(()) => accepted += i,
            Err(TrySubmitError::Full(item)) => rejected += item,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    batcher.shutdown().await;
    assert!(rejected > 0, "the burst overflowed the buckets");
    assert_eq!(accepted + rejected, 50_000 * 50_001 / 2);
    assert_eq!(handled.load(Ordering::SeqCst), accepted);
}
