//! The adaptive limit: convergence against a real slowed dependency on the
//! paused clock, bounds under random configurations and samples, the layer,
//! cancellation and thousands of concurrent tasks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use seckill_overload::adaptive::{
    AdaptiveError, AdaptiveLayer, AdaptiveLimit, Aimd, Bbr, Gradient, LimitAlgorithm, LimitChange,
    Outcome, Sample,
};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt, service_fn};

/// A dependency that serves `capacity` calls at once, each taking `delay`,
/// and queues the rest (FIFO): its latency grows with its concurrency.
struct Dependency {
    slots: Semaphore,
    delay_ms: AtomicU64,
}

impl Dependency {
    fn new(capacity: usize, delay_ms: u64) -> Arc<Self> {
        Arc::new(Self {
            slots: Semaphore::new(capacity),
            delay_ms: AtomicU64::new(delay_ms),
        })
    }

    async fn call(&self) {
        let _slot = self.slots.acquire().await.unwrap();
        let delay = self.delay_ms.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
}

struct Run {
    /// (virtual ms since start, limit) every 10 ms.
    limits: Vec<(u64, usize)>,
    admitted: u64,
    rejected: u64,
    /// Admitted calls slower than twice the unloaded latency.
    slow: u64,
}

/// `clients` closed-loop clients hammer `limit` in front of `dependency`
/// until `until_ms` of virtual time; a rejected client retries after 5 ms.
/// At `slow_down_at_ms` the dependency's delay doubles.
async fn hammer(
    limit: &AdaptiveLimit,
    dependency: &Arc<Dependency>,
    clients: usize,
    until_ms: u64,
    slow_down_at_ms: Option<u64>,
) -> Run {
    let start = Instant::now();
    let unloaded = Duration::from_millis(dependency.delay_ms.load(Ordering::SeqCst));
    let slow = Arc::new(AtomicU64::new(0));
    let stop = start + Duration::from_millis(until_ms);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (limit, dependency, slow) = (limit.clone(), dependency.clone(), slow.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < stop {
                let before = Instant::now();
                match limit.try_acquire() {
                    Ok(token) => {
                        dependency.call().await;
                        let took = before.elapsed();
                        // Slower than twice the latency the dependency has
                        // at this moment when unloaded.
                        let now_unloaded =
                            Duration::from_millis(dependency.delay_ms.load(Ordering::SeqCst));
                        if took > 2 * now_unloaded.max(unloaded) {
                            slow.fetch_add(1, Ordering::Relaxed);
                        }
                        token.success();
                    }
                    Err(_) => {
                        assert_eq!(Instant::now(), before, "a rejection took time");
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
        }));
    }
    let mut limits = Vec::new();
    let mut slowed = false;
    while Instant::now() < stop {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let at = start.elapsed().as_millis() as u64;
        if let Some(t) = slow_down_at_ms
            && !slowed
            && at >= t
        {
            let d = dependency.delay_ms.load(Ordering::SeqCst);
            dependency.delay_ms.store(2 * d, Ordering::SeqCst);
            slowed = true;
        }
        limits.push((at, limit.limit()));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let stats = limit.stats();
    assert_eq!(stats.in_flight, 0);
    assert_eq!(stats.samples, stats.admitted);
    Run {
        limits,
        admitted: stats.admitted,
        rejected: stats.rejected,
        slow: slow.load(Ordering::Relaxed),
    }
}

fn gradient_limit(initial: usize) -> AdaptiveLimit {
    AdaptiveLimit::builder(Gradient::builder().build().unwrap())
        .min_limit(1)
        .max_limit(1_000)
        .initial_limit(initial)
        .build()
        .unwrap()
}

const CAPACITY: usize = 50;

/// 2,000 clients offer far more than a capacity-50, 10 ms dependency can
/// take. After a 1 s warm-up the limit stays in the band [C/2, 3C/2] = [25, 75],
/// at most 5 % of the admitted calls took more than twice the unloaded
/// latency, and most offers were rejected (each at once, checked inside).
#[tokio::test(start_paused = true)]
async fn gradient_converges_around_dependency_capacity() {
    let dependency = Dependency::new(CAPACITY, 10);
    let limit = gradient_limit(5);
    let run = hammer(&limit, &dependency, 2_000, 3_000, None).await;
    let settled: Vec<usize> = run
        .limits
        .iter()
        .filter(|(t, _)| *t >= 1_000)
        .map(|(_, l)| *l)
        .collect();
    let (lo, hi) = (
        *settled.iter().min().unwrap(),
        *settled.iter().max().unwrap(),
    );
    eprintln!(
        "band {lo}..={hi}, admitted {}, rejected {}, slow {}",
        run.admitted, run.rejected, run.slow
    );
    assert!(
        lo >= CAPACITY / 2 && hi <= CAPACITY * 3 / 2,
        "limit {lo}..={hi}"
    );
    assert!(
        run.slow * 20 <= run.admitted,
        "{} slow of {}",
        run.slow,
        run.admitted
    );
    // The dependency's ceiling is 50 / 10 ms = 5,000 calls/s: over 3 s the
    // limit must keep it mostly busy (>= 80 %), and shed the rest.
    assert!(
        run.admitted >= 12_000 && run.admitted <= 15_000,
        "{}",
        run.admitted
    );
    assert!(run.rejected > run.admitted);
}

/// When the dependency's latency doubles mid-run (at 2 s), the limit drops
/// far below the band it held before, then recovers into it by 4 s once the
/// slower latency has become the baseline.
#[tokio::test(start_paused = true)]
async fn gradient_limit_drops_when_dependency_slows() {
    let dependency = Dependency::new(CAPACITY, 10);
    let limit = gradient_limit(5);
    let run = hammer(&limit, &dependency, 2_000, 4_000, Some(2_000)).await;
    let before = run
        .limits
        .iter()
        .filter(|(t, _)| (1_000..2_000).contains(t))
        .map(|(_, l)| *l)
        .min()
        .unwrap();
    let after = run
        .limits
        .iter()
        .filter(|(t, _)| *t > 2_000)
        .map(|(_, l)| *l)
        .min()
        .unwrap();
    let recovered = run.limits.last().unwrap().1;
    eprintln!("min before {before}, min after slowdown {after}, at the end {recovered}");
    assert!(before >= CAPACITY / 2);
    assert!(
        after <= CAPACITY / 4,
        "limit dropped only from {before} to {after}"
    );
    assert!(recovered >= CAPACITY / 2, "limit stuck at {recovered}");
}

fn bbr_limit(initial: usize) -> AdaptiveLimit {
    AdaptiveLimit::builder(Bbr::builder().build().unwrap())
        .min_limit(1)
        .max_limit(1_000)
        .initial_limit(initial)
        .build()
        .unwrap()
}

/// 2,000 clients against a capacity-50, 10 ms dependency: from a limit of 5
/// the throughput limit grows to about twice the dependency's concurrency
/// (headroom 2), stays in [C, 3C] after a 1 s warm-up, and the dependency
/// stays busy: at least 90 % of what it can serve was admitted.
#[tokio::test(start_paused = true)]
async fn bbr_settles_at_the_concurrency_that_serves_the_capacity() {
    let dependency = Dependency::new(CAPACITY, 10);
    let limit = bbr_limit(5);
    let run = hammer(&limit, &dependency, 2_000, 4_000, None).await;
    let settled: Vec<usize> = run
        .limits
        .iter()
        .filter(|(t, _)| *t >= 1_000)
        .map(|(_, l)| *l)
        .collect();
    let (low, high) = (settled.iter().min().unwrap(), settled.iter().max().unwrap());
    eprintln!("settled within {low}..={high}, admitted {}", run.admitted);
    assert!(*low >= CAPACITY && *high <= 3 * CAPACITY, "{low}..={high}");
    // 50 slots × 100 calls per second × 4 s.
    assert!(run.admitted >= 18_000, "admitted {}", run.admitted);
    assert!(run.rejected > run.admitted);
}

/// Every call of the dependency takes twice as long from 2 s on (what a
/// saturated CPU does to every request): the gradient falls to a quarter of
/// the capacity (see above); the throughput limit keeps at least the
/// dependency's concurrency, so the dependency stays busy.
#[tokio::test(start_paused = true)]
async fn bbr_keeps_serving_when_every_call_slows() {
    let dependency = Dependency::new(CAPACITY, 10);
    let limit = bbr_limit(5);
    let run = hammer(&limit, &dependency, 2_000, 4_000, Some(2_000)).await;
    let after = run
        .limits
        .iter()
        .filter(|(t, _)| *t > 2_000)
        .map(|(_, l)| *l)
        .min()
        .unwrap();
    eprintln!("min after slowdown {after}, admitted {}", run.admitted);
    assert!(after >= CAPACITY, "limit fell to {after}");
    // 2 s at 5,000/s, then 2 s at 2,500/s, at 90 %.
    assert!(run.admitted >= 13_500, "admitted {}", run.admitted);
}

/// Driven by hand: the limit is left alone until a bucket completed, then
/// it is max passes per bucket × best average RTT / bucket × headroom;
/// dropped calls do not count as passes.
#[tokio::test(start_paused = true)]
async fn bbr_estimate_is_throughput_times_best_latency() {
    let mut bbr = Bbr::builder()
        .window(Duration::from_secs(1))
        .buckets(10)
        .headroom(2.0)
        .build()
        .unwrap();
    let ok = |ms| Sample::new(Duration::from_millis(ms), 1, Outcome::Success);
    // Bucket 0: 40 calls of 5 ms and 1,000 dropped ones.
    for _ in 0..40 {
        assert_eq!(bbr.update(7, &ok(5)), 7);
    }
    for _ in 0..1_000 {
        let dropped = Sample::new(Duration::from_millis(1), 1, Outcome::Dropped);
        assert_eq!(bbr.update(7, &dropped), 7);
    }
    tokio::time::advance(Duration::from_millis(100)).await;
    // 40 passes × 5 ms / 100 ms × 2 = 4.
    assert_eq!(bbr.update(7, &ok(50)), 4);
    // Bucket 2: 99 passes at 50 ms; the best latency stays bucket 0's.
    tokio::time::advance(Duration::from_millis(100)).await;
    for _ in 0..99 {
        bbr.update(4, &ok(50));
    }
    tokio::time::advance(Duration::from_millis(100)).await;
    // Most passes 99 (bucket 2), best latency 5 ms (bucket 0): 99 × 5 / 100 × 2 = 9.9 → 10.
    assert_eq!(bbr.update(4, &ok(50)), 10);
    // A whole window later, only what the window holds counts.
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(bbr.update(10, &ok(50)), 10);
    tokio::time::advance(Duration::from_millis(100)).await;
    // One pass of 50 ms in the last completed bucket: 1 × 50 / 100 × 2 = 1.
    assert_eq!(bbr.update(10, &ok(50)), 1);
}

#[test]
fn bbr_config_ranges_are_checked() {
    let field = |r: Result<Bbr, seckill_overload::ConfigError>| r.unwrap_err().to_string();
    assert!(Bbr::builder().build().is_ok());
    assert!(field(Bbr::builder().window(Duration::from_millis(9)).build()).starts_with("window"));
    assert!(field(Bbr::builder().buckets(1).build()).starts_with("buckets"));
    assert!(field(Bbr::builder().buckets(1_025).build()).starts_with("buckets"));
    assert!(
        field(
            Bbr::builder()
                .window(Duration::from_millis(10))
                .buckets(20)
                .build()
        )
        .starts_with("window / buckets")
    );
    assert!(field(Bbr::builder().headroom(0.9).build()).starts_with("headroom"));
    assert!(field(Bbr::builder().headroom(10.5).build()).starts_with("headroom"));
}

#[test]
fn config_ranges_are_checked() {
    let g = || Gradient::builder().build().unwrap();
    let err = AdaptiveLimit::builder(g())
        .min_limit(0)
        .build()
        .unwrap_err();
    assert_eq!(err.to_string(), "min_limit must be 1 to 1000000, got 0");
    assert_eq!(err.field, "min_limit");
    assert_eq!(err.to_string(), "min_limit must be 1 to 1000000, got 0");
    let err = AdaptiveLimit::builder(g())
        .min_limit(10)
        .max_limit(5)
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "max_limit must be min_limit (10) to 1000000, got 5"
    );
    let err = AdaptiveLimit::builder(g())
        .max_limit(1_000_001)
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "max_limit must be min_limit (1) to 1000000, got 1000001"
    );
    let err = AdaptiveLimit::builder(g())
        .min_limit(2)
        .max_limit(8)
        .initial_limit(9)
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "initial_limit must be min_limit (2) to max_limit (8), got 9"
    );
    // Default initial limit 20, clamped into a narrower range.
    let l = AdaptiveLimit::builder(g()).max_limit(8).build().unwrap();
    assert_eq!(l.limit(), 8);

    let err = Gradient::builder().tolerance(1.0).build().unwrap_err();
    assert_eq!(err.to_string(), "tolerance must be 1.05 to 10, got 1");
    let err = Gradient::builder().backoff(1.0).build().unwrap_err();
    assert_eq!(err.to_string(), "backoff must be 0.5 to 0.99, got 1");
    let err = Gradient::builder().short_window(0).build().unwrap_err();
    assert_eq!(err.to_string(), "short_window must be 1 to 1000, got 0");
    let err = Gradient::builder().baseline_rounds(1).build().unwrap_err();
    assert_eq!(err.to_string(), "baseline_rounds must be 2 to 10000, got 1");
    let err = Gradient::builder().tolerance(f64::NAN).build().unwrap_err();
    assert!(err.to_string().starts_with("tolerance must be 1.05 to 10"));
    let err = Aimd::new(0.4, Duration::from_secs(1)).unwrap_err();
    assert_eq!(err.to_string(), "backoff must be 0.5 to 0.99, got 0.4");
    let err = Aimd::new(0.9, Duration::ZERO).unwrap_err();
    assert_eq!(err.to_string(), "timeout must be 1ms to 3600s, got 0ns");
}

/// Dropped tokens (cancelled calls) release their slot and are no sample;
/// `run` futures dropped mid-way release too.
#[tokio::test(start_paused = true)]
async fn cancellation_releases_tokens_without_samples() {
    let limit = AdaptiveLimit::builder(Gradient::builder().build().unwrap())
        .initial_limit(500)
        .max_limit(500)
        .min_limit(500)
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..2_000 {
        let limit = limit.clone();
        tasks.push(tokio::spawn(async move {
            let _ = limit
                .run(tokio::time::sleep(Duration::from_secs(3_600)))
                .await;
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stats = limit.stats();
    assert_eq!(
        (stats.in_flight, stats.admitted, stats.rejected),
        (500, 500, 1_500)
    );
    for t in &tasks {
        t.abort();
    }
    for t in tasks {
        let _ = t.await;
    }
    let stats = limit.stats();
    assert_eq!((stats.in_flight, stats.samples, stats.ignored), (0, 0, 500));
    let token = limit.try_acquire().unwrap();
    drop(token);
    assert_eq!(limit.stats().ignored, 501);
    assert_eq!(limit.stats().in_flight, 0);
}

/// The layer: `Ok` is a success sample, `Err` a drop sample, a full limit a
/// rejection at `call` that is ready at once; `poll_ready` does not wait.
#[tokio::test(start_paused = true)]
async fn layer_samples_and_rejects() {
    let limit = AdaptiveLimit::builder(Aimd::new(0.5, Duration::from_secs(10)).unwrap())
        .min_limit(1)
        .max_limit(100)
        .initial_limit(10)
        .build()
        .unwrap();
    let service = AdaptiveLayer::new(limit.clone()).layer(service_fn(|fail: bool| async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if fail { Err("busy") } else { Ok("ok") }
    }));
    let mut held = Vec::new();
    for _ in 0..10 {
        let mut s = service.clone();
        held.push(tokio::spawn(s.ready().await.unwrap().call(false)));
    }
    let mut s = service.clone();
    let ready = futures::FutureExt::now_or_never(s.ready());
    assert!(ready.is_some(), "poll_ready waited");
    let rejected = futures::FutureExt::now_or_never(s.call(false)).unwrap();
    assert!(matches!(rejected, Err(AdaptiveError::Rejected(e)) if e.limit == 10));
    for h in held {
        assert_eq!(h.await.unwrap().unwrap(), "ok");
    }
    assert_eq!(limit.stats().samples, 10);
    let before = limit.limit();
    let err = s.ready().await.unwrap().call(true).await.unwrap_err();
    assert_eq!(err, AdaptiveError::Inner("busy"));
    let stats = limit.stats();
    assert_eq!((stats.samples, stats.dropped, stats.in_flight), (11, 1, 0));
    assert_eq!(limit.limit(), before / 2);
}

/// 4,000 tasks on a multi-threaded runtime acquire and complete in a loop:
/// every admission is accounted for and the count returns to zero; the
/// callback sees a gapless chain of changes ending at the final limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousands_of_tasks_keep_counts_exact() {
    let changes: Arc<Mutex<Vec<LimitChange>>> = Arc::default();
    let seen = changes.clone();
    let limit = AdaptiveLimit::builder(Aimd::new(0.9, Duration::from_millis(50)).unwrap())
        .min_limit(4)
        .max_limit(64)
        .initial_limit(16)
        .on_limit_change(move |c| seen.lock().unwrap().push(c))
        .build()
        .unwrap();
    let holders = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..4_000_u64 {
        let (limit, holders) = (limit.clone(), holders.clone());
        tasks.push(tokio::spawn(async move {
            for j in 0..20 {
                if let Ok(token) = limit.try_acquire() {
                    let now = holders.fetch_add(1, Ordering::SeqCst) + 1;
                    assert!(now <= 64);
                    tokio::task::yield_now().await;
                    holders.fetch_sub(1, Ordering::SeqCst);
                    match (i + j) % 3 {
                        0 => token.success(),
                        1 => token.dropped(),
                        _ => drop(token),
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stats = limit.stats();
    assert_eq!(stats.in_flight, 0);
    assert_eq!(stats.admitted + stats.rejected, 80_000);
    assert_eq!(stats.samples + stats.ignored, stats.admitted);
    assert!((4..=64).contains(&stats.limit));
    // Changes are recorded under no lock, so they may be reordered between
    // threads; every one stays in bounds, and there is one per change.
    let changes = changes.lock().unwrap();
    assert!(!changes.is_empty());
    for c in changes.iter() {
        assert!((4..=64).contains(&c.from) && (4..=64).contains(&c.to) && c.from != c.to);
    }
}

/// An algorithm answering whatever the test says, to check the clamping.
struct Wild(Arc<Mutex<Vec<usize>>>);

impl LimitAlgorithm for Wild {
    fn update(&mut self, _limit: usize, _sample: &Sample) -> usize {
        self.0.lock().unwrap().pop().unwrap_or(0)
    }
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![3 => Just(Outcome::Success), 1 => Just(Outcome::Dropped)]
}

fn bounds() -> impl Strategy<Value = (usize, usize, usize)> {
    (1_usize..200, 0_usize..400).prop_flat_map(|(min, span)| {
        let max = min + span;
        (Just(min), Just(max), min..=max)
    })
}

proptest! {
    #![proptest_config(support::proptest_config(128))]

    /// Random bounds, random Gradient/AIMD parameters and random samples fed
    /// through real tokens on the paused clock: the limit never leaves
    /// `min..=max`, admission happens exactly when in-flight < limit, and
    /// the counters match the operations.
    #[test]
    fn limit_stays_in_bounds(
        (min, max, initial) in bounds(),
        use_gradient in any::<bool>(),
        tolerance in 1.05_f64..3.0,
        baseline_rounds in 2_u32..50,
        steps in proptest::collection::vec((0_u64..200, outcome(), 0_usize..8), 1..400),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let algorithm: Box<dyn LimitAlgorithm> = if use_gradient {
                Box::new(
                    Gradient::builder()
                        .tolerance(tolerance)
                        .baseline_rounds(baseline_rounds)
                        .build()
                        .unwrap(),
                )
            } else {
                Box::new(Aimd::new(0.8, Duration::from_millis(100)).unwrap())
            };
            let limit = AdaptiveLimit::builder(algorithm)
                .min_limit(min)
                .max_limit(max)
                .initial_limit(initial)
                .build()
                .unwrap();
            let mut held = Vec::new();
            let mut finished = 0_u64;
            for (ms, outcome, burst) in steps {
                for _ in 0..burst {
                    let current = limit.limit();
                    match limit.try_acquire() {
                        Ok(t) => {
                            prop_assert!(held.len() < current);
                            held.push(t);
                        }
                        Err(e) => {
                            prop_assert!(held.len() >= current);
                            prop_assert_eq!(e.limit, current);
                        }
                    }
                }
                tokio::time::advance(Duration::from_millis(ms)).await;
                if let Some(t) = held.pop() {
                    t.finish(outcome);
                    finished += 1;
                }
                let l = limit.limit();
                prop_assert!((min..=max).contains(&l), "limit {} outside {}..={}", l, min, max);
                prop_assert_eq!(limit.stats().in_flight, held.len());
            }
            let stats = limit.stats();
            prop_assert_eq!(stats.samples, finished);
            drop(held);
            prop_assert_eq!(limit.stats().in_flight, 0);
            Ok(())
        })?;
    }

    /// Whatever an algorithm answers (0, huge, anything), the handle clamps
    /// it into `min..=max`.
    #[test]
    fn answers_are_clamped(
        (min, max, initial) in bounds(),
        answers in proptest::collection::vec(prop_oneof![Just(0_usize), Just(usize::MAX), 0_usize..2_000], 1..100),
    ) {
        let queue = Arc::new(Mutex::new(answers.clone()));
        let limit = AdaptiveLimit::builder(Wild(queue))
            .min_limit(min)
            .max_limit(max)
            .initial_limit(initial)
            .build()
            .unwrap();
        for answer in answers.iter().rev() {
            let token = limit.try_acquire().unwrap();
            token.success();
            prop_assert_eq!(limit.limit(), (*answer).clamp(min, max));
        }
    }
}
