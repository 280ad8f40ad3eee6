//! What travels from the handles to a bucket's worker, and the state both sides share.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot, watch};

use crate::error::BatchError;
use crate::stats::{BucketCounters, Stats};

/// What a `submit_and_wait` caller is told about its item's batch.
pub(crate) type Outcome<E> = Result<(), BatchError<E>>;

/// One accepted item, with the channel to report its batch's outcome on
/// when the submitter waits for it.
pub(crate) struct Entry<T, E> {
    pub(crate) item: T,
    pub(crate) waiter: Option<oneshot::Sender<Outcome<E>>>,
}

/// Requests that travel on a bucket's own unbounded channel, so that they are
/// never stuck behind (or lost to) a full item queue.
pub(crate) enum Control {
    /// Hand over every item queued now, then answer.
    Flush(oneshot::Sender<()>),
    /// Stop accepting, hand over everything, then stop.
    Shutdown,
}

/// The sending side of one bucket, held by the handles.
pub(crate) struct BucketSender<T, E> {
    pub(crate) items: mpsc::Sender<Entry<T, E>>,
    pub(crate) control: mpsc::UnboundedSender<Control>,
    /// Items whose submit returned `Ok`, counted by the submitter after the
    /// send. The queue's own length is no count of accepted items: a
    /// submitter waiting for room holds a slot it may give back when the
    /// batcher shuts down under it.
    accepted: PaddedCounter,
}

/// A counter on a cache line of its own, so the submitters bumping it do not
/// slow down the worker's counters.
#[repr(align(128))]
#[derive(Default)]
struct PaddedCounter(AtomicU64);

impl<T, E> BucketSender<T, E> {
    pub(crate) fn new(
        items: mpsc::Sender<Entry<T, E>>,
        control: mpsc::UnboundedSender<Control>,
    ) -> Self {
        Self {
            items,
            control,
            accepted: PaddedCounter::default(),
        }
    }

    /// Counts one item accepted into this bucket.
    pub(crate) fn count_accepted(&self) {
        self.accepted.0.fetch_add(1, Ordering::Release);
    }

    /// Items accepted into this bucket so far.
    pub(crate) fn accepted(&self) -> u64 {
        self.accepted.0.load(Ordering::Acquire)
    }
}

/// State shared by the handles and the workers.
pub(crate) struct Shared {
    /// Set by `shutdown`, so that later submits fail at once.
    closed: AtomicBool,
    /// How many workers are still running; `shutdown` waits for zero.
    running: watch::Sender<usize>,
    /// One set of counters per bucket, written only by that bucket's worker.
    pub(crate) counters: Box<[Arc<BucketCounters>]>,
    /// The highest `submitted` any snapshot reported, so that none reports
    /// less later (the live sum may lag while an item moves from the queue
    /// to the worker's counter).
    submitted_seen: AtomicU64,
}

impl Shared {
    pub(crate) fn new(buckets: usize) -> Self {
        Shared {
            closed: AtomicBool::new(false),
            running: watch::Sender::new(buckets),
            counters: (0..buckets).map(|_| Arc::default()).collect(),
            submitted_seen: AtomicU64::new(0),
        }
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Waits until every worker has stopped.
    pub(crate) async fn stopped(&self) {
        let mut running = self.running.subscribe();
        // An error would mean the sender is gone, which cannot happen while
        // `self` exists; either way nothing is left to wait for.
        let _ = running.wait_for(|n| *n == 0).await;
    }

    pub(crate) fn stats<T, E>(&self, senders: &[BucketSender<T, E>]) -> Stats {
        let mut stats = Stats::default();
        for (counters, sender) in self.counters.iter().zip(senders) {
            counters.add_to(&mut stats, || sender.accepted());
        }
        // Neither count overshoots, so the highest sum seen is still a
        // count of accepted items.
        let seen = self
            .submitted_seen
            .fetch_max(stats.submitted, Ordering::AcqRel);
        stats.submitted = stats.submitted.max(seen);
        stats
    }
}

/// Held by a running worker; counts it out when the worker ends, however it
/// ends (finished, or dropped with its runtime).
pub(crate) struct Running(pub(crate) Arc<Shared>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.send_modify(|n| *n = n.saturating_sub(1));
    }
}
