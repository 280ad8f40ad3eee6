//! Defect 2: how long each backfill mode can serve a stale value after a
//! write, measured with one writer and a thousand readers spread over four
//! caches (four "processes", each with its own connection and flights)
//! against the real Redis.
//!
//! Each round: the writer makes the readers miss (an invalidate without a
//! database change) and waits until a load of the current row is in
//! progress; such loads (they read the row before the commit) are held
//! until the first delete returned, then finish after 0 to 3 ms, so their
//! backfill always lands after that delete: the race of the seed. The writer
//! commits the next version of the row, then `invalidate`s (the first
//! delete). Every read records the phase it started in and whether it
//! returned an older version than the last commit:
//!
//! - phase 1: after the commit, before the first delete returned;
//! - phase 2: after the first delete returned;
//! - phase 3: after the second delete ran (`flush_deletes`), with reads
//!   that began before it possibly still in flight;
//! - phase 4: once every read begun before the second delete returned.
//!
//! Documented bounds, asserted: `Backfill::Lease` serves no stale read in
//! phases 2 to 4; `Backfill::SetNx` serves none in phase 4 (phases 2 and 3
//! are its window: until the second delete, plus the loads in flight at that
//! moment; counted and printed).

#![cfg(any(feature = "redis", feature = "fred"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use std::time::Duration;
use tokio::sync::watch;

use rand::Rng;
use seckill_cache_aside::{Backfill, Cache, Connection, Options};
use support::{Connect, Topo, namespace};

const CACHES: usize = 4;
const READERS: usize = 1000;
/// Writes per test on the single server (a quarter elsewhere: `support::scaled`).
const ROUNDS: u32 = 12;
/// Reads that must start in phase 4 before a round ends.
const SETTLED_READS: usize = 2000;
const PHASES: usize = 5;

/// Round and phase, packed: `round * PHASES + phase`.
struct Clock(watch::Sender<u64>);

fn unpack(v: u64) -> (u64, usize) {
    (v / PHASES as u64, (v % PHASES as u64) as usize)
}

impl Clock {
    fn get(&self) -> (u64, usize) {
        unpack(*self.0.borrow())
    }
    fn set(&self, round: u64, phase: usize) {
        self.0.send_replace(round * PHASES as u64 + phase as u64);
    }
    /// Until the first delete of `round` returned (or a later round began).
    async fn after_first_delete(&self, round: u64) {
        let mut rx = self.0.subscribe();
        let _ = rx
            .wait_for(|&v| {
                let (r, p) = unpack(v);
                r != round || p >= 2
            })
            .await;
    }
}

#[derive(Default)]
struct Tally {
    /// Reads in progress, by the phase they started in.
    active: [AtomicUsize; PHASES],
    /// Stale reads, by the phase they started in.
    stale: [AtomicUsize; PHASES],
    /// Reads completed, by the phase they started in.
    reads: [AtomicUsize; PHASES],
    /// Loads in progress that read the row.
    loading: AtomicUsize,
}

async fn wait_until(what: &str, check: impl Fn() -> bool) {
    support::eventually(what, async || check()).await;
}

async fn measure<B: Connection>(topo: Topo, caches: Vec<Cache<B>>, key: String) -> [usize; PHASES] {
    let rounds = u64::from(support::scaled(topo, ROUNDS));
    let row = Arc::new(AtomicU64::new(0));
    let clock = Arc::new(Clock(watch::Sender::new(0)));
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));

    let mut readers = Vec::with_capacity(READERS);
    for i in 0..READERS {
        let cache = caches[i % CACHES].clone();
        let (row, clock, tally, stop, key) = (
            row.clone(),
            clock.clone(),
            tally.clone(),
            stop.clone(),
            key.clone(),
        );
        readers.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let (round, phase) = clock.get();
                tally.active[phase].fetch_add(1, Ordering::SeqCst);
                let (row, tally2, clock2) = (row.clone(), tally.clone(), clock.clone());
                let got = cache
                    .get_or_load(&key, || async move {
                        tally2.loading.fetch_add(1, Ordering::SeqCst);
                        let (load_round, load_phase) = clock2.get();
                        let version = row.load(Ordering::SeqCst);
                        if load_phase == 0 {
                            clock2.after_first_delete(load_round).await;
                        }
                        let pause = rand::rng().random_range(0..4u64);
                        tokio::time::sleep(Duration::from_millis(pause)).await;
                        tally2.loading.fetch_sub(1, Ordering::SeqCst);
                        Ok::<_, String>(Some(version))
                    })
                    .await;
                // A version older than this round's commit, read after it.
                if let Ok(Some(version)) = got
                    && phase >= 1
                    && version < round + 1
                {
                    tally.stale[phase].fetch_add(1, Ordering::SeqCst);
                }
                tally.reads[phase].fetch_add(1, Ordering::SeqCst);
                tally.active[phase].fetch_sub(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
            }
        }));
    }

    let writer = &caches[0];
    for round in 0..rounds {
        clock.set(round, 0);
        // Phase 0: make the readers miss and load the current row.
        writer.invalidate(&key).await.unwrap();
        wait_until("a load in progress", || {
            tally.loading.load(Ordering::SeqCst) > 0
        })
        .await;
        // The write: commit, then the first delete.
        row.store(round + 1, Ordering::SeqCst);
        clock.set(round, 1);
        writer.invalidate(&key).await.unwrap();
        clock.set(round, 2);
        // Every read that began before the first delete returned is over.
        wait_until("reads begun before the delete", || {
            tally.active[0].load(Ordering::SeqCst) == 0
                && tally.active[1].load(Ordering::SeqCst) == 0
        })
        .await;
        // The second delete, then every read that began before it is over.
        writer.flush_deletes().await;
        clock.set(round, 3);
        wait_until("reads begun before the second delete", || {
            tally.active[2].load(Ordering::SeqCst) == 0
        })
        .await;
        let before = tally.reads[4].load(Ordering::SeqCst);
        clock.set(round, 4);
        wait_until("reads after the second delete settled", || {
            tally.reads[4].load(Ordering::SeqCst) >= before + SETTLED_READS
        })
        .await;
    }
    stop.store(true, Ordering::SeqCst);
    for reader in readers {
        reader.await.unwrap();
    }
    for cache in &caches {
        cache.flush_deletes().await;
    }
    support::admin(topo).await.del(&key).await;
    std::array::from_fn(|i| tally.stale[i].load(Ordering::SeqCst))
}

async fn caches<C: Connect>(client: C, mode: Backfill) -> Vec<Cache<C::Conn>> {
    let mut caches = Vec::new();
    for _ in 0..CACHES {
        let options = Options::default()
            .backfill(mode)
            .lease_wait(Duration::from_secs(30))
            .redis_timeout(Duration::from_secs(30))
            // Run by the writer with flush_deletes, at a known point.
            .double_delete_delay(Duration::from_secs(3600));
        caches.push(Cache::new(client.connect().await, options).unwrap());
    }
    caches
}

/// Lease mode: no read that starts after the first delete returned serves
/// the old row, in any of the four processes.
async fn lease_mode_serves_nothing_stale_after_the_delete(client: impl Connect) {
    let key = format!("{}:row", namespace());
    let stale = measure(client.topo(), caches(client, Backfill::Lease).await, key).await;
    eprintln!("Lease: stale reads by phase [-, commit, delete, second delete, settled]: {stale:?}");
    assert_eq!(
        (stale[2], stale[3], stale[4]),
        (0, 0, 0),
        "stale reads by phase: {stale:?}"
    );
}

/// SetNx mode: stale reads are possible until the second delete, and from
/// loads in flight at that moment (printed); none once those ended.
async fn set_nx_serves_nothing_stale_after_the_second_delete(client: impl Connect) {
    let key = format!("{}:row", namespace());
    let stale = measure(client.topo(), caches(client, Backfill::SetNx).await, key).await;
    eprintln!("SetNx: stale reads by phase [-, commit, delete, second delete, settled]: {stale:?}");
    assert_eq!(stale[4], 0, "stale reads by phase: {stale:?}");
}

on_every_topology!(async:
    lease_mode_serves_nothing_stale_after_the_delete,
    set_nx_serves_nothing_stale_after_the_second_delete,
);
