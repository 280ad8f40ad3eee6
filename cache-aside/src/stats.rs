//! [`Stats`]: counters readable at runtime.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a cache's counters since it was created.
///
/// Clones of a [`Cache`](crate::Cache) share the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Reads answered from the cache (Redis or the front cache), including
    /// cached "not found".
    pub hits: u64,
    /// Of `hits`, answered by the in-process front cache.
    pub front_hits: u64,
    /// Of `hits`, a cached "not found".
    pub not_found_hits: u64,
    /// Reads that found nothing usable and went on to the shared load.
    pub misses: u64,
    /// Loader runs (one per key per flight, whatever the number of callers).
    pub loads: u64,
    /// Loader runs that returned an error.
    pub load_errors: u64,
    /// Backfills refused because the key changed meanwhile (`NX` found an
    /// entry, or the lease was revoked): each one is a stale write avoided.
    pub fills_refused: u64,
    /// Redis calls that failed or timed out.
    pub redis_errors: u64,
    /// Reads served by the loader because Redis failed ([`OnRedisError::Load`](crate::OnRedisError::Load)).
    pub degraded: u64,
    /// Loads that waited for another process's lease.
    pub lease_waits: u64,
    /// Reads that gave up waiting for another process's lease.
    pub lease_busy: u64,
    /// Second deletes scheduled and not yet finished.
    pub pending_deletes: u64,
    /// Second delete attempts that failed and were retried.
    pub delete_retries: u64,
    /// Second deletes that failed on every attempt.
    pub delete_failures: u64,
}

/// The live counters behind [`Stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) hits: AtomicU64,
    pub(crate) front_hits: AtomicU64,
    pub(crate) not_found_hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) loads: AtomicU64,
    pub(crate) load_errors: AtomicU64,
    pub(crate) fills_refused: AtomicU64,
    pub(crate) redis_errors: AtomicU64,
    pub(crate) degraded: AtomicU64,
    pub(crate) lease_waits: AtomicU64,
    pub(crate) lease_busy: AtomicU64,
    pub(crate) pending_deletes: AtomicU64,
    pub(crate) delete_retries: AtomicU64,
    pub(crate) delete_failures: AtomicU64,
}

/// Adds one to a counter.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn snapshot(&self) -> Stats {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            hits: read(&self.hits),
            front_hits: read(&self.front_hits),
            not_found_hits: read(&self.not_found_hits),
            misses: read(&self.misses),
            loads: read(&self.loads),
            load_errors: read(&self.load_errors),
            fills_refused: read(&self.fills_refused),
            redis_errors: read(&self.redis_errors),
            degraded: read(&self.degraded),
            lease_waits: read(&self.lease_waits),
            lease_busy: read(&self.lease_busy),
            pending_deletes: read(&self.pending_deletes),
            delete_retries: read(&self.delete_retries),
            delete_failures: read(&self.delete_failures),
        }
    }
}
