//! Counters the workers keep, and the [`Stats`] snapshot users read.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::batch::Trigger;

/// A snapshot of a batcher's counters, summed over its buckets.
///
/// Every counter only grows: a later snapshot never shows a smaller value
/// than an earlier one, whatever happens in between (the runtime stopping
/// included). Items are counted once: `submitted` when accepted, then
/// `handled`, `failed` or `abandoned` when they are done, so
/// [`pending`](Stats::pending) is the number of items still queued or being
/// handled. In every snapshot `submitted >= handled + failed + abandoned`;
/// when no submit is in progress and the workers are idle (after
/// [`Batcher::flush`](crate::Batcher::flush) or
/// [`Batcher::shutdown`](crate::Batcher::shutdown) returned), `submitted`
/// is exact and `pending()` is 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Items accepted by `submit`, `submit_and_wait` or `try_submit`.
    pub submitted: u64,
    /// Items whose batch the handler accepted.
    pub handled: u64,
    /// Items whose batch failed after its last retry (and went to the
    /// failure callback).
    pub failed: u64,
    /// Items accepted but dropped unhandled because the Tokio runtime running
    /// their worker shut down first (their `submit_and_wait` callers got
    /// [`WaitError::Abandoned`](crate::WaitError::Abandoned)).
    pub abandoned: u64,
    /// Handler calls that were retried (one per retry, not per item).
    pub retries: u64,
    /// Handler calls that panicked (each is also a failed attempt).
    pub panics: u64,
    /// Batches handed over because they reached `max_batch_size`.
    pub batches_by_size: u64,
    /// Batches handed over because their oldest item waited `max_delay`.
    pub batches_by_time: u64,
    /// Batches handed over by [`Batcher::flush`](crate::Batcher::flush).
    pub batches_by_flush: u64,
    /// Batches handed over while shutting down.
    pub batches_by_shutdown: u64,
}

impl Stats {
    /// Items accepted and not yet handled, failed or abandoned: queued, in the
    /// batch being collected, or in the handler.
    pub fn pending(&self) -> u64 {
        self.submitted
            .saturating_sub(self.handled)
            .saturating_sub(self.failed)
            .saturating_sub(self.abandoned)
    }

    /// Batches handed over for any reason.
    pub fn batches(&self) -> u64 {
        self.batches_by_size
            + self.batches_by_time
            + self.batches_by_flush
            + self.batches_by_shutdown
    }

    /// Batches handed over for `trigger`.
    pub fn batches_by(&self, trigger: Trigger) -> u64 {
        match trigger {
            Trigger::Size => self.batches_by_size,
            Trigger::Time => self.batches_by_time,
            Trigger::Flush => self.batches_by_flush,
            Trigger::Shutdown => self.batches_by_shutdown,
        }
    }
}

/// One bucket's counters. Only that bucket's worker writes them, so the
/// producers' hot path touches none of them; aligned so that two buckets'
/// workers never share a cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct BucketCounters {
    received: AtomicU64,
    handled: AtomicU64,
    failed: AtomicU64,
    abandoned: AtomicU64,
    retries: AtomicU64,
    panics: AtomicU64,
    batches: [AtomicU64; 4],
}

impl BucketCounters {
    pub(crate) fn received(&self, n: usize) {
        add(&self.received, n);
    }

    pub(crate) fn handled(&self, n: usize) {
        add(&self.handled, n);
    }

    pub(crate) fn failed(&self, n: usize) {
        add(&self.failed, n);
    }

    pub(crate) fn abandoned(&self, n: usize) {
        add(&self.abandoned, n);
    }

    pub(crate) fn retried(&self) {
        add(&self.retries, 1);
    }

    pub(crate) fn panicked(&self) {
        add(&self.panics, 1);
    }

    pub(crate) fn batch(&self, trigger: Trigger) {
        if let Some(counter) = self.batches.get(trigger.index()) {
            add(counter, 1);
        }
    }

    /// Adds this bucket to `stats`; `accepted` reads how many items the
    /// submitters counted as accepted into this bucket.
    ///
    /// The order of the reads matters. The worker counts an item `received`
    /// after taking it off the queue and before counting it handled, failed
    /// or abandoned (release increments; acquire loads here), so reading the
    /// outcomes first, then `received`, never sees an outcome without its
    /// item. `submitted` is the larger of the worker's and the submitters'
    /// counts: each counts only accepted items, so neither overshoots; the
    /// submitters' lags by the sends still returning, the worker's by the
    /// items still queued, and once no submit is in progress the submitters'
    /// is exact.
    pub(crate) fn add_to(&self, stats: &mut Stats, accepted: impl FnOnce() -> u64) {
        let get = |c: &AtomicU64| c.load(Ordering::Acquire);
        stats.handled += get(&self.handled);
        stats.failed += get(&self.failed);
        stats.abandoned += get(&self.abandoned);
        stats.submitted += get(&self.received).max(accepted());
        stats.retries += get(&self.retries);
        stats.panics += get(&self.panics);
        for (trigger, counter) in Trigger::ALL.iter().zip(&self.batches) {
            let n = get(counter);
            match trigger {
                Trigger::Size => stats.batches_by_size += n,
                Trigger::Time => stats.batches_by_time += n,
                Trigger::Flush => stats.batches_by_flush += n,
                Trigger::Shutdown => stats.batches_by_shutdown += n,
            }
        }
    }
}

fn add(counter: &AtomicU64, n: usize) {
    counter.fetch_add(n as u64, Ordering::Release);
}
