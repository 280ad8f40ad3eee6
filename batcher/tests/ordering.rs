//! Per-key order, parallel buckets, and one handler call at a time per bucket.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use seckill_batcher::{Batch, Batcher};
use tokio::sync::Barrier;

/// 64 keys, 2,000 items each, submitted by one task per key into 4 buckets:
/// every key's items arrive complete and in submit order, across many
/// batches, while the handler yields to let other buckets interleave.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_keys_items_arrive_in_submit_order() {
    const KEYS: u64 = 64;
    const PER_KEY: u64 = 2_000;
    let seen: Arc<Mutex<HashMap<u64, Vec<u64>>>> = Arc::default();
    let log = seen.clone();
    let batcher = Batcher::builder()
        .max_batch_size(32)
        .max_delay(Duration::from_millis(1))
        .buckets(4)
        .capacity(128)
        .build(move |batch: Batch<(u64, u64)>| {
            {
                let mut seen = log.lock().unwrap();
                for (key, seq) in &batch {
                    seen.entry(*key).or_default().push(*seq);
                }
            }
            async {
                tokio::task::yield_now().await;
                Ok::<(), String>(())
            }
        })
        .unwrap();
    let producers: Vec<_> = (0..KEYS)
        .map(|key| {
            let batcher = batcher.clone();
            tokio::spawn(async move {
                for seq in 0..PER_KEY {
                    if seq % 3 == 0 {
                        batcher.submit_and_wait(&key, (key, seq)).await.unwrap();
                    } else {
                        batcher.submit(&key, (key, seq)).await.unwrap();
                    }
                }
            })
        })
        .collect();
    for producer in producers {
        producer.await.unwrap();
    }
    batcher.shutdown().await;
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), KEYS as usize);
    for (key, seqs) in seen.iter() {
        assert_eq!(*seqs, (0..PER_KEY).collect::<Vec<_>>(), "key {key}");
    }
    let stats = batcher.stats();
    assert_eq!(stats.handled, KEYS * PER_KEY);
    assert!(stats.batches() > 100, "many batches: {stats:?}");
}

/// Two buckets' handlers meet at a barrier: that only completes if both calls
/// run at the same time. On the paused clock a sequential batcher would hit
/// the timeout instead.
#[tokio::test(start_paused = true)]
async fn different_buckets_are_handled_in_parallel() {
    let barrier = Arc::new(Barrier::new(2));
    let batcher = Batcher::builder()
        .buckets(2)
        .max_batch_size(1)
        .build(move |_: Batch<u64>| {
            let barrier = barrier.clone();
            async move {
                tokio::time::timeout(Duration::from_secs(1), barrier.wait())
                    .await
                    .map(|_| ())
                    .map_err(|_| "the other bucket's handler never ran alongside".to_string())
            }
        })
        .unwrap();
    let first = 0u64;
    let second = (1..)
        .find(|k| batcher.bucket_of(k) != batcher.bucket_of(&first))
        .unwrap();
    let (a, b) = tokio::join!(
        batcher.submit_and_wait(&first, 1),
        batcher.submit_and_wait(&second, 2)
    );
    a.unwrap();
    b.unwrap();
}

/// Many batches on 8 buckets on a multi-threaded runtime: a bucket's handler
/// is never entered while its previous call is still running.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_buckets_handler_calls_never_overlap() {
    const BUCKETS: usize = 8;
    let busy: Arc<Vec<AtomicBool>> =
        Arc::new((0..BUCKETS).map(|_| AtomicBool::new(false)).collect());
    let overlaps = Arc::new(AtomicUsize::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let (flags, overlapping, counted) = (busy.clone(), overlaps.clone(), calls.clone());
    let batcher = Batcher::builder()
        .buckets(BUCKETS)
        .max_batch_size(8)
        .max_delay(Duration::from_micros(200))
        .build(move |batch: Batch<u64>| {
            let (flags, overlapping, counted) =
                (flags.clone(), overlapping.clone(), counted.clone());
            async move {
                let flag = &flags[batch.bucket()];
                if flag.swap(true, Ordering::SeqCst) {
                    overlapping.fetch_add(1, Ordering::SeqCst);
                }
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
                tokio::task::yield_now().await;
                flag.store(false, Ordering::SeqCst);
                Ok::<(), String>(())
            }
        })
        .unwrap();
    let producers: Vec<_> = (0..32u64)
        .map(|p| {
            let batcher = batcher.clone();
            tokio::spawn(async move {
                for i in 0..1_000u64 {
                    batcher.submit(&(p * 7 + i % 5), i).await.unwrap();
                }
            })
        })
        .collect();
    for producer in producers {
        producer.await.unwrap();
    }
    batcher.shutdown().await;
    assert_eq!(batcher.stats().handled, 32_000);
    assert!(calls.load(Ordering::SeqCst) >= 32_000 / 8);
    assert_eq!(overlaps.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_key_always_maps_to_the_same_bucket() {
    let batcher = Batcher::builder()
        .buckets(8)
        .build(|_: Batch<u64>| async { Ok::<(), String>(()) })
        .unwrap();
    assert_eq!(batcher.buckets(), 8);
    let mut used = std::collections::HashSet::new();
    for key in 0..1_000u64 {
        let bucket = batcher.bucket_of(&key);
        assert!(bucket < 8);
        assert_eq!(bucket, batcher.bucket_of(&key));
        used.insert(bucket);
    }
    assert_eq!(used.len(), 8, "keys spread over every bucket");
    // Borrowed and owned forms of a key agree.
    assert_eq!(
        batcher.bucket_of("sku-1"),
        batcher.bucket_of(&"sku-1".to_string())
    );
}
