//! Thousands of tasks on many threads hitting one limiter: never one admission too many or too few.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use seckill_ratelimit::{
    FixedWindow, Keyed, LeakyBucket, Limiter, ManualClock, SlidingWindow, TokenBucket,
};

/// 8,000 tasks × 4 attempts each on a frozen clock: exactly `expected` pass.
async fn hammer<L: Limiter>(limiter: L, n: u32, expected: u32) {
    let limiter = Arc::new(limiter);
    let admitted = Arc::new(AtomicU32::new(0));
    let tasks: Vec<_> = (0..8_000)
        .map(|_| {
            let (limiter, admitted) = (limiter.clone(), admitted.clone());
            tokio::spawn(async move {
                for _ in 0..4 {
                    if limiter.try_acquire(n).is_ok() {
                        admitted.fetch_add(n, Ordering::Relaxed);
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(admitted.load(Ordering::Relaxed), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_bucket_admits_exactly_the_burst() {
    hammer(
        TokenBucket::with_clock(1, 5_000, ManualClock::new()),
        1,
        5_000,
    )
    .await;
    hammer(
        TokenBucket::with_clock(1, 5_001, ManualClock::new()),
        3,
        5_001,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leaky_meter_admits_exactly_the_capacity() {
    hammer(
        LeakyBucket::with_clock(1, 7_000, ManualClock::new()),
        1,
        7_000,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sliding_window_admits_exactly_the_limit() {
    let window = Duration::from_secs(1);
    hammer(
        SlidingWindow::with_clock(5_000, window, ManualClock::new()),
        1,
        5_000,
    )
    .await;
    hammer(
        SlidingWindow::with_clock(6_000, window, ManualClock::new()),
        2,
        6_000,
    )
    .await;
    hammer(
        SlidingWindow::with_clock(1, window, ManualClock::new()),
        1,
        1,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fixed_window_admits_exactly_the_limit() {
    let window = Duration::from_secs(1);
    hammer(
        FixedWindow::with_clock(5_000, window, ManualClock::new()),
        1,
        5_000,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_moving_clock_never_lets_the_sliding_window_overflow() {
    // Time moves while 4,000 tasks compete; every admission is logged and
    // every window checked afterwards.
    let clock = ManualClock::new();
    let window = Duration::from_millis(10);
    let limiter = Arc::new(SlidingWindow::with_clock(50, window, clock.clone()));
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let tasks: Vec<_> = (0..4_000u64)
        .map(|i| {
            let (limiter, log, clock) = (limiter.clone(), log.clone(), clock.clone());
            tokio::spawn(async move {
                for _ in 0..10 {
                    if i % 8 == 0 {
                        clock.advance(Duration::from_micros(50));
                    }
                    let now = seckill_ratelimit::Clock::now(&clock);
                    if limiter.try_acquire_at(1, now).is_ok() {
                        log.lock().unwrap().push(now);
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let mut log = log.lock().unwrap().clone();
    log.sort();
    let w = window.as_nanos() as u64;
    for (i, &start) in log.iter().enumerate() {
        let inside = log[i..].iter().take_while(|&&t| t < start + w).count();
        assert!(inside <= 50, "{inside} admissions within one window");
    }
    assert!(log.len() > 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keyed_admits_exactly_the_burst_per_key() {
    let clock = ManualClock::new();
    let c = clock.clone();
    let keyed = Arc::new(Keyed::new(TokenBucket::with_clock(1, 100, c.clone())));
    let admitted: Arc<Vec<AtomicU32>> = Arc::new((0..20).map(|_| AtomicU32::new(0)).collect());
    let tasks: Vec<_> = (0..8_000usize)
        .map(|i| {
            let (keyed, admitted) = (keyed.clone(), admitted.clone());
            tokio::spawn(async move {
                let key = i % 20;
                for _ in 0..2 {
                    if keyed.try_acquire(&key, 1).is_ok() {
                        admitted[key].fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    for count in admitted.iter() {
        assert_eq!(count.load(Ordering::Relaxed), 100);
    }
}

/// 8,000 tasks on 4 threads flood a `Keyed` map of 1,000 with 100,000 new
/// keys while hammering one hot key: the map never holds more than 1,000,
/// and the hot key — the most limited — is never evicted, so it admits
/// exactly its burst.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keyed_flood_stays_bounded_and_keeps_the_limited_key() {
    let clock = ManualClock::new();
    let c = clock.clone();
    let keyed: Arc<Keyed<u64, TokenBucket<ManualClock>>> = Arc::new(
        Keyed::new(TokenBucket::with_clock(1, 2_000, c.clone()))
            .try_max_keys(1_000)
            .unwrap(),
    );
    let hot_admitted = Arc::new(AtomicU32::new(0));
    let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = (0..8_000u64)
        .map(|task| {
            let (keyed, hot_admitted, peak) = (keyed.clone(), hot_admitted.clone(), peak.clone());
            tokio::spawn(async move {
                for i in 0..12u64 {
                    keyed.try_acquire(&(1 + task * 12 + i), 1).unwrap();
                    if keyed.try_acquire(&0, 1).is_ok() {
                        hot_admitted.fetch_add(1, Ordering::Relaxed);
                    }
                    if i % 4 == 0 {
                        peak.fetch_max(keyed.len(), Ordering::Relaxed);
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert!(peak.load(Ordering::Relaxed) <= 1_000);
    assert!(keyed.len() <= 1_000);
    assert!(keyed.contains_key(&0));
    let held = (0..=8_000 * 12u64)
        .filter(|k| keyed.contains_key(k))
        .count();
    assert_eq!(held, keyed.len(), "the count matches the keys really held");
    assert_eq!(hot_admitted.load(Ordering::Relaxed), 2_000);
}
