//! The bulkhead: exact admission counts under thousands of tasks, the layer
//! rejecting at `call` without waiting, cancellation, configuration ranges.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use seckill_overload::ConfigError;
use seckill_overload::bulkhead::{
    Bulkhead, BulkheadError, BulkheadFull, BulkheadLayer, MAX_CONCURRENT_LIMIT,
};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt, service_fn};

#[test]
fn max_concurrent_range_is_checked() {
    let err: ConfigError = Bulkhead::new(0).unwrap_err();
    assert_eq!(err.field, "max_concurrent");
    assert_eq!(
        err.to_string(),
        "max_concurrent must be 1 to 1000000, got 0"
    );
    assert_eq!(
        Bulkhead::new(MAX_CONCURRENT_LIMIT + 1)
            .unwrap_err()
            .to_string(),
        "max_concurrent must be 1 to 1000000, got 1000001"
    );
    assert_eq!(Bulkhead::new(1).unwrap().max_concurrent(), 1);
    assert_eq!(
        Bulkhead::new(MAX_CONCURRENT_LIMIT)
            .unwrap()
            .max_concurrent(),
        1_000_000
    );
}

/// 5,000 tasks on a multi-threaded runtime all try at once while every
/// admitted task holds its permit: exactly `max` get in.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exactly_max_admitted_among_thousands() {
    const TASKS: usize = 5_000;
    const MAX: usize = 137;
    let bulkhead = Bulkhead::new(MAX).unwrap();
    let hold = Arc::new(Semaphore::new(0));
    let admitted = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for _ in 0..TASKS {
        let (bulkhead, hold, admitted) = (bulkhead.clone(), hold.clone(), admitted.clone());
        handles.push(tokio::spawn(async move {
            match bulkhead.try_acquire() {
                Ok(permit) => {
                    admitted.fetch_add(1, Ordering::SeqCst);
                    let _held = hold.acquire().await.unwrap();
                    drop(permit);
                    true
                }
                Err(full) => {
                    assert_eq!(
                        full,
                        BulkheadFull {
                            max_concurrent: MAX
                        }
                    );
                    false
                }
            }
        }));
    }
    // Wait until every task has tried (the rejected ones finish at once).
    while bulkhead.stats().admitted + bulkhead.stats().rejected < TASKS as u64 {
        tokio::task::yield_now().await;
    }
    let stats = bulkhead.stats();
    assert_eq!(stats.in_flight, MAX);
    assert_eq!(stats.admitted, MAX as u64);
    assert_eq!(stats.rejected, (TASKS - MAX) as u64);
    hold.add_permits(TASKS);
    let mut ok = 0;
    for h in handles {
        ok += usize::from(h.await.unwrap());
    }
    assert_eq!(ok, MAX);
    assert_eq!(admitted.load(Ordering::SeqCst), MAX);
    assert_eq!(bulkhead.stats().in_flight, 0);
}

/// Thousands of tasks acquiring and releasing in a loop never see more
/// than `max` holders, and the count returns to zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn never_more_than_max_under_churn() {
    const MAX: usize = 16;
    let bulkhead = Bulkhead::new(MAX).unwrap();
    let holders = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for _ in 0..2_000 {
        let (bulkhead, holders, peak) = (bulkhead.clone(), holders.clone(), peak.clone());
        handles.push(tokio::spawn(async move {
            let mut mine = 0_u64;
            for _ in 0..50 {
                if let Ok(permit) = bulkhead.try_acquire() {
                    let now = holders.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    holders.fetch_sub(1, Ordering::SeqCst);
                    drop(permit);
                    mine += 1;
                }
                tokio::task::yield_now().await;
            }
            mine
        }));
    }
    let mut admitted = 0;
    for h in handles {
        admitted += h.await.unwrap();
    }
    let stats = bulkhead.stats();
    assert!(peak.load(Ordering::SeqCst) <= MAX);
    assert_eq!(stats.admitted, admitted);
    assert_eq!(stats.admitted + stats.rejected, 2_000 * 50);
    assert_eq!(stats.in_flight, 0);
}

/// A slowed dependency (capacity 8 behind a semaphore, 50 ms each) behind a
/// bulkhead of 20 on the paused clock: of 3,000 concurrent calls exactly 20
/// run; the other 2,980 are rejected at `call` with no time passing.
#[tokio::test(start_paused = true)]
async fn layer_rejects_at_call_without_waiting() {
    let dependency = Arc::new(Semaphore::new(8));
    let inner = service_fn(move |_: u32| {
        let dependency = dependency.clone();
        async move {
            let _slot = dependency.acquire().await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok::<_, std::convert::Infallible>("done")
        }
    });
    let bulkhead = Bulkhead::new(20).unwrap();
    let service = BulkheadLayer::new(bulkhead.clone()).layer(inner);
    let mut calls = Vec::new();
    let started = Instant::now();
    let mut rejected = 0;
    for i in 0..3_000 {
        let mut service = service.clone();
        // poll_ready never waits for a permit, even when the bulkhead is full.
        futures::FutureExt::now_or_never(service.ready())
            .expect("poll_ready waited")
            .unwrap();
        let call = service.call(i);
        if bulkhead.stats().in_flight == 20 && i >= 20 {
            // A rejected call is ready at the first poll.
            match futures::FutureExt::now_or_never(call) {
                Some(Err(BulkheadError::Rejected(full))) => {
                    assert_eq!(full.max_concurrent, 20);
                    rejected += 1;
                }
                other => panic!("expected a rejection, got {:?}", other.map(|r| r.is_ok())),
            }
        } else {
            calls.push(tokio::spawn(call));
        }
    }
    assert_eq!(Instant::now(), started, "rejections took no (virtual) time");
    assert_eq!(rejected, 2_980);
    assert_eq!(calls.len(), 20);
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap(), "done");
    }
    // 20 calls through a capacity of 8 at 50 ms each: three waves.
    assert_eq!(started.elapsed(), Duration::from_millis(150));
    let stats = bulkhead.stats();
    assert_eq!(
        (stats.admitted, stats.rejected, stats.in_flight),
        (20, 2_980, 0)
    );
}

/// Inner errors come back as `Inner`, and their permits are released.
#[tokio::test]
async fn inner_error_releases_permit() {
    let bulkhead = Bulkhead::new(1).unwrap();
    let mut service = BulkheadLayer::new(bulkhead.clone())
        .layer(service_fn(|_: ()| async { Err::<(), _>("boom") }));
    for _ in 0..3 {
        let err = service.ready().await.unwrap().call(()).await.unwrap_err();
        assert_eq!(err, BulkheadError::Inner("boom"));
    }
    assert_eq!(bulkhead.stats().in_flight, 0);
    assert_eq!(bulkhead.stats().admitted, 3);
}

/// Dropping in-flight futures (layer calls and `run`) mid-way releases
/// every permit.
#[tokio::test(start_paused = true)]
async fn cancellation_releases_permits() {
    let bulkhead = Bulkhead::new(1_000).unwrap();
    let service = BulkheadLayer::new(bulkhead.clone()).layer(service_fn(|_: ()| async {
        tokio::time::sleep(Duration::from_secs(3_600)).await;
        Ok::<_, std::convert::Infallible>(())
    }));
    let mut tasks = Vec::new();
    for i in 0..2_000 {
        let mut service = service.clone();
        let bulkhead = bulkhead.clone();
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                let _ = service.ready().await.unwrap().call(()).await;
            } else {
                let _ = bulkhead
                    .run(tokio::time::sleep(Duration::from_secs(3_600)))
                    .await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stats = bulkhead.stats();
    assert_eq!(
        (stats.in_flight, stats.admitted, stats.rejected),
        (1_000, 1_000, 1_000)
    );
    for task in &tasks {
        task.abort();
    }
    for task in tasks {
        let _ = task.await;
    }
    assert_eq!(bulkhead.stats().in_flight, 0);
    assert!(bulkhead.try_acquire().is_ok());
}

#[derive(Debug, Clone)]
enum Op {
    Acquire,
    Release(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![Just(Op::Acquire), (0_usize..64).prop_map(Op::Release)]
}

proptest! {
    #![proptest_config(support::proptest_config(256))]

    /// Random limits and random acquire/release sequences against a model:
    /// admission happens exactly when fewer than `max` permits are held, and
    /// the counters agree with the model after every step.
    #[test]
    fn matches_a_model(max in 1_usize..=32, ops in proptest::collection::vec(op(), 0..300)) {
        let bulkhead = Bulkhead::new(max).unwrap();
        let mut held = Vec::new();
        let (mut admitted, mut rejected) = (0_u64, 0_u64);
        for op in ops {
            match op {
                Op::Acquire => match bulkhead.try_acquire() {
                    Ok(permit) => {
                        prop_assert!(held.len() < max);
                        held.push(permit);
                        admitted += 1;
                    }
                    Err(full) => {
                        prop_assert_eq!(held.len(), max);
                        prop_assert_eq!(full.max_concurrent, max);
                        rejected += 1;
                    }
                },
                Op::Release(i) => {
                    if !held.is_empty() {
                        let i = i % held.len();
                        drop(held.swap_remove(i));
                    }
                }
            }
            let stats = bulkhead.stats();
            prop_assert_eq!(stats.in_flight, held.len());
            prop_assert_eq!((stats.admitted, stats.rejected), (admitted, rejected));
        }
        drop(held);
        prop_assert_eq!(bulkhead.stats().in_flight, 0);
    }

    /// Out-of-range limits are rejected with the field and range named;
    /// in-range ones are accepted.
    #[test]
    fn config_range(max in 0_usize..=2_000_000) {
        match Bulkhead::new(max) {
            Ok(b) => prop_assert!((1..=MAX_CONCURRENT_LIMIT).contains(&b.max_concurrent())),
            Err(e) => {
                prop_assert!(max == 0 || max > MAX_CONCURRENT_LIMIT);
                prop_assert!(e.to_string().starts_with("max_concurrent must be 1 to 1000000"));
            }
        }
    }
}
