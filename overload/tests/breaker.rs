//! The circuit breaker (adaptive client-side throttling) under a real failing
//! and a real slowed dependency, thousands of concurrent tasks, cancellation,
//! and a property test against a model of the rolling window.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use seckill_overload::breaker::{
    Breaker, BreakerError, BreakerLayer, BreakerState, Outcome, StateChange,
};
use tokio::sync::Semaphore;
use tower::{Layer, ServiceExt};

#[derive(Debug, Clone, PartialEq)]
enum DepError {
    Down,
    NotFound,
    Timeout,
}

/// A dependency whose latency grows with its concurrency: a fixed number of
/// permits in front of a sleep. It can be made to fail or to be slow.
struct Dependency {
    failing: AtomicBool,
    slow: AtomicBool,
    reached: AtomicU64,
    permits: Semaphore,
}

impl Dependency {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            failing: AtomicBool::new(false),
            slow: AtomicBool::new(false),
            reached: AtomicU64::new(0),
            permits: Semaphore::new(50),
        })
    }

    async fn call(&self) -> Result<u32, DepError> {
        self.reached.fetch_add(1, Ordering::SeqCst);
        let _permit = self.permits.acquire().await.unwrap();
        let delay = if self.slow.load(Ordering::SeqCst) {
            Duration::from_secs(5)
        } else {
            Duration::from_millis(10)
        };
        tokio::time::sleep(delay).await;
        if self.failing.load(Ordering::SeqCst) {
            Err(DepError::Down)
        } else {
            Ok(7)
        }
    }

    fn reached(&self) -> u64 {
        self.reached.load(Ordering::SeqCst)
    }
}

/// The breaker every scenario uses: 1 s window in 10 buckets, defaults
/// otherwise, a fixed seed.
fn breaker(changes: Arc<std::sync::Mutex<Vec<StateChange>>>) -> Breaker {
    Breaker::builder()
        .window(Duration::from_secs(1))
        .buckets(10)
        .seed(42)
        .on_state_change(move |c| changes.lock().unwrap().push(c))
        .build()
        .unwrap()
}

/// One step: `n` concurrent tasks each make one call (with a 200 ms timeout
/// inside the call when `timeout`), then 60 ms pass. Returns the rejected
/// count.
async fn step(breaker: &Breaker, dep: &Arc<Dependency>, n: usize, timeout: bool) -> u64 {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let breaker = breaker.clone();
            let dep = Arc::clone(dep);
            tokio::spawn(async move {
                breaker
                    .call(|| async {
                        if timeout {
                            tokio::time::timeout(Duration::from_millis(200), dep.call())
                                .await
                                .map_err(|_| DepError::Timeout)?
                        } else {
                            dep.call().await
                        }
                    })
                    .await
            })
        })
        .collect();
    let mut rejected = 0;
    for t in tasks {
        match t.await.unwrap() {
            Err(BreakerError::Rejected(open)) => {
                assert!(open.reject_probability > 0.0 && open.reject_probability <= 0.95);
                rejected += 1;
            }
            Err(BreakerError::Inner(_)) | Ok(_) => {}
        }
    }
    tokio::time::sleep(Duration::from_millis(60)).await;
    rejected
}

/// Healthy for 1 s, failing (or slow) for 3 s, then healthy again: the
/// reject rate rises to the cap, most calls never reach the dependency, and
/// the breaker closes again within a bounded number of windows.
async fn fail_then_recover(timeout: bool) {
    const N: usize = 200;
    let changes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let breaker = breaker(Arc::clone(&changes));
    let dep = Dependency::new();

    // Healthy: nothing rejected.
    let start = tokio::time::Instant::now();
    while start.elapsed() < Duration::from_secs(1) {
        assert_eq!(step(&breaker, &dep, N, timeout).await, 0);
    }
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(breaker.stats().rejected, 0);

    // Failing for 3 s.
    if timeout {
        dep.slow.store(true, Ordering::SeqCst);
    } else {
        dep.failing.store(true, Ordering::SeqCst);
    }
    let start = tokio::time::Instant::now();
    let (mut calls, mut rejected, mut reached) = (0u64, 0u64, 0u64);
    while start.elapsed() < Duration::from_secs(3) {
        let before = dep.reached();
        let r = step(&breaker, &dep, N, timeout).await;
        // Counted once the window is full of failures.
        if start.elapsed() > Duration::from_secs(1) {
            calls += N as u64;
            rejected += r;
            reached += dep.reached() - before;
        }
    }
    assert!(calls >= 1000, "{calls}");
    assert_eq!(breaker.state(), BreakerState::Throttling);
    let stats = breaker.stats();
    assert!(stats.reject_probability > 0.9, "{stats:?}");
    // With the cap at 0.95 about 95 % are rejected once the window is full
    // of failures, and only the admitted ones reach the dependency.
    assert!(rejected * 100 >= calls * 85, "{rejected} of {calls}");
    assert_eq!(reached, calls - rejected);

    // Recovered: the reject probability falls back to 0 within 6 windows.
    dep.failing.store(false, Ordering::SeqCst);
    dep.slow.store(false, Ordering::SeqCst);
    let start = tokio::time::Instant::now();
    let mut closed_at = None;
    while start.elapsed() < Duration::from_secs(8) {
        let r = step(&breaker, &dep, N, timeout).await;
        if r == 0 && breaker.state() == BreakerState::Closed {
            closed_at.get_or_insert(start.elapsed());
        } else {
            assert!(closed_at.is_none(), "rejections again after closing");
        }
    }
    let closed_at = closed_at.expect("the breaker never closed after recovery");
    eprintln!(
        "timeout={timeout}: {rejected} of {calls} rejected while failing; closed {closed_at:?} after recovery"
    );
    assert!(
        closed_at <= Duration::from_secs(6),
        "closed after {closed_at:?}"
    );
    assert_eq!(breaker.reject_probability(), 0.0);

    // Every state change reported, with counters to match.
    let stats = breaker.stats();
    let changes = changes.lock().unwrap().clone();
    assert_eq!(stats.opened + stats.closed, changes.len() as u64);
    assert!(stats.opened >= 1);
    assert_eq!(stats.opened, stats.closed);
    assert_eq!(
        changes.first().map(|c| c.to),
        Some(BreakerState::Throttling)
    );
    assert_eq!(changes.last().map(|c| c.to), Some(BreakerState::Closed));
    for (i, c) in changes.iter().enumerate() {
        assert_eq!(c.seq, i as u64 + 1);
        assert_ne!(c.from, c.to);
    }
    // Counters add up; rejected calls never reached the dependency.
    assert_eq!(stats.in_flight, 0);
    assert_eq!(
        stats.admitted,
        stats.successes + stats.failures + stats.ignored
    );
    assert_eq!(stats.admitted, dep.reached());
    assert_eq!(stats.ignored, 0);
    assert!(stats.probes >= 1);
}

#[tokio::test(start_paused = true)]
async fn failing_dependency_is_throttled_then_recovers() {
    fail_then_recover(false).await;
}

#[tokio::test(start_paused = true)]
async fn slow_dependency_timing_out_is_throttled_then_recovers() {
    fail_then_recover(true).await;
}

#[tokio::test(start_paused = true)]
async fn tower_layer_rejects_without_calling_the_service() {
    let dep = Dependency::new();
    dep.failing.store(true, Ordering::SeqCst);
    let breaker = Breaker::builder()
        .window(Duration::from_secs(1))
        .buckets(10)
        .seed(1)
        .build()
        .unwrap();
    let d = Arc::clone(&dep);
    let service = BreakerLayer::new(breaker.clone()).layer(tower::service_fn(move |_: ()| {
        let d = Arc::clone(&d);
        async move { d.call().await }
    }));
    let tasks: Vec<_> = (0..4000)
        .map(|_| {
            let s = service.clone();
            tokio::spawn(async move { s.oneshot(()).await })
        })
        .collect();
    let (mut open, mut inner) = (0u64, 0u64);
    for t in tasks {
        match t.await.unwrap() {
            Err(BreakerError::Rejected(_)) => open += 1,
            Err(BreakerError::Inner(DepError::Down)) => inner += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    let stats = breaker.stats();
    assert_eq!(open + inner, 4000);
    assert_eq!(open, stats.rejected);
    assert_eq!(inner, stats.failures);
    assert_eq!(dep.reached(), inner);
    // All 4000 were asked for at once, before any failure was known: every
    // one of them was admitted. The next wave is throttled.
    assert_eq!(open, 0);
    let mut rejected = 0;
    for _ in 0..1000 {
        if let Err(BreakerError::Rejected(_)) = service.clone().oneshot(()).await {
            rejected += 1;
        }
    }
    assert!(rejected >= 900, "{rejected}");
    assert_eq!(dep.reached(), 4000 + 1000 - rejected);
}

#[tokio::test(start_paused = true)]
async fn not_found_classified_as_success_never_throttles() {
    let breaker = Breaker::builder().seed(3).build().unwrap();
    let not_found_ok = |r: &Result<u32, DepError>| match r {
        Ok(_) | Err(DepError::NotFound) => Outcome::Success,
        Err(_) => Outcome::Failure,
    };
    for _ in 0..1000 {
        let r = breaker
            .call_classified(&not_found_ok, || async {
                Err::<u32, _>(DepError::NotFound)
            })
            .await;
        assert_eq!(r, Err(BreakerError::Inner(DepError::NotFound)));
    }
    let stats = breaker.stats();
    assert_eq!(
        (stats.successes, stats.failures, stats.rejected),
        (1000, 0, 0)
    );
    assert_eq!(stats.state, BreakerState::Closed);

    // The default classifier counts the same errors as failures.
    let breaker = Breaker::builder().seed(3).build().unwrap();
    for _ in 0..1000 {
        let _ = breaker
            .call(|| async { Err::<u32, _>(DepError::NotFound) })
            .await;
    }
    let stats = breaker.stats();
    assert_eq!(stats.state, BreakerState::Throttling);
    assert!(stats.rejected > 800, "{stats:?}");
}

#[tokio::test(start_paused = true)]
async fn guard_marks_and_cancellation_counts_nothing() {
    let breaker = Breaker::builder().min_requests(0).seed(9).build().unwrap();
    breaker.allow().unwrap().success();
    breaker.allow().unwrap().record(Outcome::Ignore);
    drop(breaker.allow().unwrap());
    let s = breaker.stats();
    assert_eq!(
        (s.admitted, s.successes, s.ignored, s.in_flight),
        (3, 1, 2, 0)
    );
    assert_eq!((s.window_requests, s.window_accepts), (1, 1));

    // A call cancelled mid-flight: dropped by a timeout around it.
    let r = tokio::time::timeout(
        Duration::from_millis(10),
        breaker.call(|| async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Err::<(), _>(DepError::Down)
        }),
    )
    .await;
    assert!(r.is_err());
    let s = breaker.stats();
    assert_eq!(
        (s.admitted, s.ignored, s.failures, s.in_flight),
        (4, 3, 0, 0)
    );
    assert_eq!((s.window_requests, s.window_accepts), (1, 1));

    // Thousands of calls in flight, half of them aborted, through the tower
    // layer and through `call`.
    let service = BreakerLayer::new(breaker.clone()).layer(tower::service_fn(|_: ()| async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok::<_, Infallible>(())
    }));
    let mut tasks = Vec::new();
    for i in 0..4000 {
        let s = service.clone();
        let b = breaker.clone();
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                s.oneshot(()).await.map_err(|_| ())
            } else {
                b.call(|| async {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    Ok::<_, ()>(())
                })
                .await
                .map_err(|_| ())
            }
        }));
    }
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(breaker.stats().in_flight, 4000);
    for t in tasks.iter().skip(1).step_by(2) {
        t.abort();
    }
    for t in tasks.iter().step_by(4) {
        t.abort();
    }
    let mut done = 0;
    for t in tasks {
        if let Ok(r) = t.await {
            assert_eq!(r, Ok(()));
            done += 1;
        }
    }
    assert_eq!(done, 1000);
    let s = breaker.stats();
    assert_eq!(s.in_flight, 0);
    assert_eq!(s.admitted, 4004);
    assert_eq!(s.ignored, 3 + 3000);
    assert_eq!(s.successes, 1 + 1000);
    assert_eq!((s.window_requests, s.window_accepts), (1001, 1001));
}

/// Thousands of tasks on several threads: every count adds up exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counters_add_up_under_concurrency() {
    let breaker = Breaker::builder()
        .window(Duration::from_secs(3600))
        .min_requests(0)
        .k(1.5)
        .seed(11)
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..8000u64)
        .map(|i| {
            let b = breaker.clone();
            tokio::spawn(async move {
                match b.allow() {
                    Err(_) => 0,
                    Ok(g) => {
                        tokio::task::yield_now().await;
                        match i % 3 {
                            0 => g.success(),
                            1 => g.failure(),
                            _ => drop(g),
                        }
                        1
                    }
                }
            })
        })
        .collect();
    let mut admitted = 0;
    for t in tasks {
        admitted += t.await.unwrap();
    }
    let s = breaker.stats();
    assert_eq!(s.admitted, admitted);
    assert_eq!(s.admitted + s.rejected, 8000);
    assert_eq!(s.admitted, s.successes + s.failures + s.ignored);
    assert_eq!(s.in_flight, 0);
    assert_eq!(s.window_requests, s.rejected + s.successes + s.failures);
    assert_eq!(s.window_accepts, s.successes);
    assert!(s.rejected > 0 && s.successes > 0 && s.failures > 0);
}

#[derive(Debug, Clone)]
enum Op {
    Success,
    Failure,
    Ignore,
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Success),
        4 => Just(Op::Failure),
        1 => Just(Op::Ignore),
        2 => (0u64..400).prop_map(Op::Advance),
    ]
}

proptest! {
    #![proptest_config(support::proptest_config(64))]

    /// Random configurations and outcome sequences: the reject probability
    /// equals the SRE formula over a model of the window, never leaves
    /// [0, max_reject], the state follows it, and the counters add up.
    #[test]
    fn probability_matches_the_model_and_counters_add_up(
        window_ms in 10u64..2000,
        buckets in 1u32..=64,
        k in 1.0f64..=10.0,
        max_reject in 0.0f64..=0.999,
        min_requests in 0u32..20,
        seed in any::<u64>(),
        ops in proptest::collection::vec(op(), 1..300),
    ) {
        let window = Duration::from_millis(window_ms);
        prop_assume!(window / buckets >= Duration::from_millis(1));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async move {
            let breaker = Breaker::builder()
                .window(window)
                .buckets(buckets)
                .k(k)
                .max_reject(max_reject)
                .min_requests(min_requests)
                .seed(seed)
                .build()
                .unwrap();
            let start = tokio::time::Instant::now();
            let bucket = (window / buckets).as_nanos();
            let index = || (start.elapsed().as_nanos() / bucket) as u64;
            // (bucket index, accepted) of every counted request.
            let mut events: Vec<(u64, bool)> = Vec::new();
            let (mut asked, mut ignored) = (0u64, 0u64);
            for op in ops {
                match op {
                    Op::Advance(ms) => tokio::time::advance(Duration::from_millis(ms)).await,
                    outcome => {
                        asked += 1;
                        match breaker.allow() {
                            Err(open) => {
                                assert!(open.reject_probability > 0.0);
                                assert!(open.reject_probability <= max_reject);
                                events.push((index(), false));
                            }
                            Ok(g) => match outcome {
                                Op::Success => { g.success(); events.push((index(), true)); }
                                Op::Failure => { g.failure(); events.push((index(), false)); }
                                _ => { drop(g); ignored += 1; }
                            },
                        }
                    }
                }
                let now = index();
                let live = events.iter().filter(|(i, _)| i + u64::from(buckets) > now);
                let (req, acc) = live.fold((0u64, 0u64), |(r, a), (_, ok)| (r + 1, a + u64::from(*ok)));
                let expected = if req == 0 || req < u64::from(min_requests) {
                    0.0
                } else {
                    ((req as f64 - k * acc as f64) / (req as f64 + 1.0)).clamp(0.0, max_reject)
                };
                let s = breaker.stats();
                assert_eq!((s.window_requests, s.window_accepts), (req, acc));
                assert!((s.reject_probability - expected).abs() < 1e-12, "{s:?} vs {expected}");
                assert!((0.0..=max_reject).contains(&s.reject_probability));
                assert_eq!(s.state == BreakerState::Throttling, s.reject_probability > 0.0);
                assert_eq!(s.admitted + s.rejected, asked);
                assert_eq!(s.admitted, s.successes + s.failures + s.ignored);
                assert_eq!(s.ignored, ignored);
                assert_eq!(s.in_flight, 0);
                assert!(s.probes <= s.admitted);
                assert!(s.opened == s.closed || s.opened == s.closed + 1);
            }
        });
    }

    /// Out-of-range settings are always rejected with the field's name.
    #[test]
    fn out_of_range_settings_are_rejected(
        buckets in prop_oneof![Just(0u32), 1025u32..u32::MAX],
        k in prop_oneof![0.0f64..0.999, 10.001f64..1e9],
        max_reject in prop_oneof![1.0f64..1e9, -1e9f64..-0.0001],
    ) {
        let err = Breaker::builder().buckets(buckets).build().unwrap_err().to_string();
        prop_assert!(err.starts_with("buckets must be 1 to 1024"), "{}", err);
        let err = Breaker::builder().k(k).build().unwrap_err().to_string();
        prop_assert!(err.starts_with("k must be 1.0 to 10.0"), "{}", err);
        let err = Breaker::builder().max_reject(max_reject).build().unwrap_err().to_string();
        prop_assert!(err.starts_with("max_reject must be 0.0 to 0.999"), "{}", err);
    }
}
