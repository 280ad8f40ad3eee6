//! When a bucket hands its items over: size, time, flush and shutdown, on tokio's paused clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::time::Duration;

use common::Log;
use seckill_batcher::{Batch, Batcher, BuildError, Trigger};
use tokio::time::{Instant, sleep};

fn logging(log: &Log) -> impl Fn(Batch<u64>) -> std::future::Ready<Result<(), String>> + use<> {
    let log = log.clone();
    move |batch| {
        log.record(&batch);
        std::future::ready(Ok(()))
    }
}

#[tokio::test(start_paused = true)]
async fn a_full_bucket_is_handed_over_at_once() {
    let log = Log::default();
    let batcher = Batcher::builder()
        .max_batch_size(10)
        .max_delay(Duration::from_secs(3600))
        .build(logging(&log))
        .unwrap();
    let start = Instant::now();
    for i in 0..25 {
        batcher.try_submit(&1, i).unwrap();
    }
    while log.calls().len() < 2 {
        tokio::task::yield_now().await;
    }
    let calls = log.calls();
    assert_eq!(log.shape(), [(10, Trigger::Size), (10, Trigger::Size)]);
    assert!(calls.iter().all(|c| c.at == start), "no time passed");
    batcher.shutdown().await;
    assert_eq!(log.items(), (0..25).collect::<Vec<_>>());
    assert_eq!(log.shape()[2], (5, Trigger::Shutdown));
}

#[tokio::test(start_paused = true)]
async fn a_lone_item_is_handed_over_after_max_delay() {
    let log = Log::default();
    let batcher = Batcher::builder()
        .max_batch_size(100)
        .max_delay(Duration::from_millis(10))
        .build(logging(&log))
        .unwrap();
    let start = Instant::now();
    batcher.submit(&1, 1).await.unwrap();
    sleep(Duration::from_millis(3)).await;
    batcher.submit(&1, 2).await.unwrap();
    batcher.submit_and_wait(&1, 3).await.unwrap();
    let calls = log.calls();
    assert_eq!(log.shape(), [(3, Trigger::Time)]);
    // The clock starts at the first item, not the last (Kafka's linger).
    assert_eq!(calls[0].at - start, Duration::from_millis(10));
}

/// Items arrive at irregular times into several buckets; none waits longer
/// than max_delay, and everything arrives.
#[tokio::test(start_paused = true)]
async fn no_item_waits_longer_than_max_delay() {
    let max_delay = Duration::from_millis(10);
    let waits = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = waits.clone();
    let batcher = Batcher::builder()
        .max_batch_size(16)
        .max_delay(max_delay)
        .buckets(4)
        .build(move |batch: Batch<(u64, Instant)>| {
            let now = Instant::now();
            seen.lock()
                .unwrap()
                .extend(batch.iter().map(|(_, at)| now - *at));
            std::future::ready(Ok::<(), String>(()))
        })
        .unwrap();
    let mut rng: u64 = 7;
    for i in 0..10_000u64 {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        if rng >> 61 == 0 {
            sleep(Duration::from_micros((rng >> 20) % 7_000)).await;
        }
        batcher
            .submit(&(i % 13), (i, Instant::now()))
            .await
            .unwrap();
    }
    batcher.shutdown().await;
    let waits = waits.lock().unwrap();
    assert_eq!(waits.len(), 10_000);
    let longest = waits.iter().max().unwrap();
    assert!(*longest <= max_delay, "an item waited {longest:?}");
    let stats = batcher.stats();
    assert!(
        stats.batches_by_time > 0 && stats.batches_by_size > 0,
        "{stats:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn flush_hands_over_without_waiting_and_returns_when_handled() {
    let log = Log::default();
    let batcher = Batcher::builder()
        .max_batch_size(4)
        .max_delay(Duration::from_secs(3600))
        .buckets(3)
        .build(logging(&log))
        .unwrap();
    let start = Instant::now();
    for i in 0..30 {
        batcher.submit(&(i % 5), i).await.unwrap();
    }
    batcher.flush().await;
    assert_eq!(Instant::now(), start);
    let mut items = log.items();
    items.sort_unstable();
    assert_eq!(items, (0..30).collect::<Vec<_>>());
    let calls = log.calls();
    assert!(calls.iter().all(|c| c.items.len() <= 4));
    assert!(calls.iter().any(|c| c.trigger == Trigger::Flush));
    // Nothing was left to flush the second time.
    let before = calls.len();
    batcher.flush().await;
    assert_eq!(log.calls().len(), before);
}

#[tokio::test(start_paused = true)]
async fn stats_count_items_and_batches_by_trigger() {
    let log = Log::default();
    let batcher = Batcher::builder()
        .max_batch_size(10)
        .max_delay(Duration::from_millis(10))
        .build(logging(&log))
        .unwrap();
    for i in 0..10 {
        batcher.try_submit(&0, i).unwrap(); // size
    }
    for i in 10..13 {
        batcher.submit(&0, i).await.unwrap(); // time
    }
    sleep(Duration::from_millis(20)).await;
    for i in 13..15 {
        batcher.submit(&0, i).await.unwrap(); // flush
    }
    batcher.flush().await;
    batcher.submit(&0, 15).await.unwrap(); // shutdown
    batcher.shutdown().await;
    assert_eq!(
        log.shape(),
        [
            (10, Trigger::Size),
            (3, Trigger::Time),
            (2, Trigger::Flush),
            (1, Trigger::Shutdown)
        ]
    );
    let stats = batcher.stats();
    assert_eq!((stats.submitted, stats.handled), (16, 16));
    assert_eq!(
        [
            stats.batches_by_size,
            stats.batches_by_time,
            stats.batches_by_flush,
            stats.batches_by_shutdown
        ],
        [1, 1, 1, 1]
    );
    assert_eq!((stats.failed, stats.retries, stats.panics), (0, 0, 0));
    assert_eq!(stats.batches(), 4);
    assert_eq!(stats.batches_by(Trigger::Time), 1);
}

#[tokio::test(start_paused = true)]
async fn zero_max_delay_hands_over_what_is_there() {
    let log = Log::default();
    let batcher = Batcher::builder()
        .max_batch_size(100)
        .max_delay(Duration::ZERO)
        .build(logging(&log))
        .unwrap();
    let start = Instant::now();
    batcher.submit_and_wait(&0, 1).await.unwrap();
    assert_eq!(log.shape(), [(1, Trigger::Time)]);
    assert_eq!(log.calls()[0].at, start);
}

#[tokio::test]
async fn invalid_settings_are_reported() {
    let build = |b: seckill_batcher::Builder<u64, String>| {
        b.build(|_: Batch<u64>| async { Ok(()) })
            .unwrap_err()
            .to_string()
    };
    let cases = [
        (
            build(Batcher::builder().max_batch_size(0)),
            "max_batch_size must be 1 to 1048576, got 0",
        ),
        (
            build(Batcher::builder().buckets(0)),
            "buckets must be 1 to 1024, got 0",
        ),
        (
            build(Batcher::builder().capacity(0)),
            "capacity must be 1 to 16777216, got 0",
        ),
        (
            build(Batcher::builder().capacity(usize::MAX)),
            &format!("capacity must be 1 to 16777216, got {}", usize::MAX),
        ),
        (
            build(Batcher::builder().max_delay(Duration::MAX)),
            "max_delay must be 0s to 3600s, got 18446744073709551615.999999999s",
        ),
        (
            build(Batcher::builder().retries(101)),
            "retries must be 0 to 100, got 101",
        ),
        (
            build(Batcher::builder().backoff(Duration::MAX, Duration::MAX)),
            "backoff.initial must be 0s to 60s, got 18446744073709551615.999999999s",
        ),
        (
            build(Batcher::builder().backoff(Duration::from_millis(10), Duration::from_millis(5))),
            "backoff.max must be 10ms to 600s, got 5ms",
        ),
    ];
    for (got, expected) in cases {
        assert_eq!(got, format!("invalid batcher setting: {expected}"));
    }
    let err = Batcher::<u64, String>::builder()
        .buckets(1025)
        .build(|_: Batch<u64>| async { Ok(()) })
        .unwrap_err();
    assert!(matches!(
        err,
        BuildError::Invalid {
            setting: "buckets",
            ..
        }
    ));
}

/// The largest values of every range are accepted, and `Duration::MAX`-like
/// extremes inside them never overflow an `Instant` addition.
#[tokio::test(start_paused = true)]
async fn the_edges_of_every_range_are_accepted() {
    let batcher = Batcher::builder()
        .max_batch_size(1 << 20)
        .max_delay(Duration::from_secs(3600))
        .buckets(1024)
        .capacity(1 << 24)
        .retries(100)
        .backoff(Duration::from_secs(60), Duration::from_secs(600))
        .build(|_: Batch<u64>| async { Ok::<(), String>(()) })
        .unwrap();
    let start = tokio::time::Instant::now();
    batcher.submit_and_wait(&1, 1).await.unwrap();
    assert_eq!(
        tokio::time::Instant::now() - start,
        Duration::from_secs(3600)
    );
    batcher.shutdown().await;
    assert_eq!(batcher.stats().handled, 1);
    let zero = Batcher::builder()
        .max_batch_size(1)
        .max_delay(Duration::ZERO)
        .retries(0)
        .backoff(Duration::ZERO, Duration::ZERO)
        .build(|_: Batch<u64>| async { Ok::<(), String>(()) })
        .unwrap();
    zero.submit_and_wait(&1, 1).await.unwrap();
    zero.shutdown().await;
}

#[test]
fn building_outside_a_runtime_is_an_error_not_a_panic() {
    let built = Batcher::<u64, String>::builder().build(|_: Batch<u64>| async { Ok(()) });
    assert_eq!(built.unwrap_err(), BuildError::NoRuntime);
}
