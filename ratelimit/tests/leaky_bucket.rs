//! Leaky bucket: the meter on a manual clock, the pacer under tokio's paused clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use seckill_ratelimit::{DenyReason, LeakyBucket, ManualClock, TokioClock};
use tokio::time::Instant;

#[test]
fn the_meter_rejects_beyond_capacity_and_drains_at_the_rate() {
    let clock = ManualClock::new();
    let meter = LeakyBucket::with_clock(10, 5, clock.clone());
    meter.try_acquire(3).unwrap();
    meter.try_acquire(2).unwrap();
    let denied = meter.try_acquire(1).unwrap_err();
    assert_eq!(denied.reason, DenyReason::RateExceeded);
    assert_eq!(denied.retry_after, Duration::from_millis(100));
    assert_eq!(
        meter.try_acquire(6).unwrap_err().reason,
        DenyReason::ExceedsCapacity
    );
    // Half a second drains 5: the bucket takes 5 again, not more.
    clock.advance(Duration::from_millis(500));
    meter.try_acquire(5).unwrap();
    assert!(meter.try_acquire(1).is_err());
}

#[tokio::test(start_paused = true)]
async fn the_pacer_spaces_callers_at_one_over_rate() {
    let pacer = Arc::new(LeakyBucket::with_clock(50, 10, TokioClock::new()));
    let start = Instant::now();
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let pacer = pacer.clone();
            tokio::spawn(async move {
                pacer.acquire().await;
                Instant::now()
            })
        })
        .collect();
    let mut times = Vec::new();
    for task in tasks {
        times.push(task.await.unwrap() - start);
    }
    times.sort();
    // No burst: exactly one caller per 20 ms, starting at once.
    for (i, at) in times.iter().enumerate() {
        assert_eq!(*at, Duration::from_millis(20) * i as u32);
    }
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_pacer_gives_its_slot_back() {
    let pacer = LeakyBucket::with_clock(10, 1, TokioClock::new());
    let start = Instant::now();
    pacer.acquire().await; // t = 0
    // This caller's slot is t = 100 ms; it gives up after 10 ms.
    assert!(
        tokio::time::timeout(Duration::from_millis(10), pacer.acquire())
            .await
            .is_err()
    );
    pacer.acquire().await; // takes the freed slot
    assert_eq!(start.elapsed(), Duration::from_millis(100));
}

#[tokio::test(start_paused = true)]
async fn acquire_many_books_consecutive_slots() {
    let pacer = LeakyBucket::with_clock(100, 1, TokioClock::new());
    let start = Instant::now();
    pacer.acquire_many(5).await; // slots 0..5, first at once
    assert_eq!(start.elapsed(), Duration::ZERO);
    pacer.acquire().await; // slot 5
    assert_eq!(start.elapsed(), Duration::from_millis(50));
    pacer.acquire_many(0).await;
    assert_eq!(start.elapsed(), Duration::from_millis(50));
}
