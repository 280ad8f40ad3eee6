//! [`Batcher`]: the handle producers submit items through.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::bucket::{BucketSender, Control, Entry, Shared};
use crate::builder::Builder;
use crate::error::{SubmitError, TrySubmitError, WaitError};
use crate::stats::Stats;

/// Groups submitted items into batches and hands them to an async handler.
///
/// Items are spread over independent buckets by key; each bucket hands a
/// batch over when it holds `max_batch_size` items or when its oldest item
/// has waited `max_delay`, whichever comes first. Within a bucket, handler
/// calls never overlap and items keep their submit order, so items with the
/// same key reach the handler in order. Buckets are handled in parallel.
///
/// `Batcher` is a cheap handle: clones share the same buckets. Build one per
/// destination and keep it for the process's lifetime.
///
/// # Dropping without `shutdown`
///
/// When the last handle is dropped, the workers stop accepting, hand every
/// queued item to the handler (as [`Trigger::Shutdown`](crate::Trigger::Shutdown)
/// batches, without waiting for `max_delay`) and then end, in the
/// background. Nothing waits for that: if the runtime stops first, the items
/// still queued are dropped unhandled (counted in
/// [`Stats::abandoned`](crate::Stats::abandoned)) and their `submit_and_wait`
/// callers get [`WaitError::Abandoned`]. Call [`shutdown`](Batcher::shutdown) and await it
/// before the runtime stops to be sure every accepted item was handed over.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use seckill_batcher::{Batch, Batcher};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let batcher = Batcher::builder()
///     .max_batch_size(100)
///     .max_delay(Duration::from_millis(10))
///     .build(|orders: Batch<String>| async move {
///         println!("one write for {} orders", orders.len());
///         Ok::<(), std::io::Error>(())
///     })
///     .unwrap();
///
/// batcher.submit("sku-1", "order 1".to_string()).await.unwrap();
/// batcher.submit_and_wait("sku-1", "order 2".to_string()).await.unwrap();
/// batcher.shutdown().await;
/// assert_eq!(batcher.stats().handled, 2);
/// # }
/// ```
pub struct Batcher<T, E> {
    inner: Arc<Inner<T, E>>,
}

struct Inner<T, E> {
    senders: Box<[BucketSender<T, E>]>,
    hasher: RandomState,
    shared: Arc<Shared>,
}

impl<T, E> Clone for Batcher<T, E> {
    fn clone(&self) -> Self {
        Batcher {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T, E> fmt::Debug for Batcher<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batcher")
            .field("buckets", &self.inner.senders.len())
            .field("closed", &self.is_closed())
            .field("stats", &self.stats())
            .finish()
    }
}

impl<T, E> Batcher<T, E>
where
    T: Send + Sync + 'static,
    E: Send + Sync + 'static,
{
    /// Starts configuring a batcher; see [`Builder`] for the settings and
    /// their defaults.
    pub fn builder() -> Builder<T, E> {
        Builder::default()
    }
}

impl<T, E> Batcher<T, E> {
    pub(crate) fn new(senders: Box<[BucketSender<T, E>]>, shared: Arc<Shared>) -> Self {
        Batcher {
            inner: Arc::new(Inner {
                senders,
                hasher: RandomState::new(),
                shared,
            }),
        }
    }

    /// Which bucket `key`'s items go to, in `0..self.buckets()`. Fixed for
    /// the batcher's lifetime (not across processes).
    pub fn bucket_of<K: Hash + ?Sized>(&self, key: &K) -> usize {
        let buckets = self.inner.senders.len();
        if buckets <= 1 {
            return 0;
        }
        (self.inner.hasher.hash_one(key) % buckets as u64) as usize
    }

    /// Number of buckets.
    pub fn buckets(&self) -> usize {
        self.inner.senders.len()
    }

    /// Whether [`shutdown`](Batcher::shutdown) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.shared.is_closed()
    }

    /// A snapshot of the counters, summed over the buckets.
    ///
    /// Every counter is monotonic: no snapshot, from any clone or thread,
    /// shows less than one taken before it, even after the runtime stopped.
    /// `submitted` includes items still queued; it is exact whenever no
    /// submit is in progress and the workers are idle, and may lag by a few
    /// items while submits race. In every snapshot
    /// `submitted >= handled + failed + abandoned`.
    pub fn stats(&self) -> Stats {
        self.inner.shared.stats(&self.inner.senders)
    }

    fn sender_for<K: Hash + ?Sized>(&self, key: &K) -> Option<&BucketSender<T, E>> {
        self.inner.senders.get(self.bucket_of(key))
    }

    /// Enqueues `item` in `key`'s bucket, waiting for room when the bucket
    /// holds `capacity` items already (backpressure).
    ///
    /// Items submitted with the same key reach the handler in the order
    /// their `submit` calls returned. The outcome of the item's batch is not
    /// reported here: use [`submit_and_wait`](Batcher::submit_and_wait) for
    /// that, and the failure callback for batches that fail.
    ///
    /// # Errors
    ///
    /// [`SubmitError::Closed`] with the item when the batcher is shut down,
    /// including while this call waited for room.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it completes drops the item unsubmitted
    /// (it was not accepted); once it has returned `Ok`, the item will be
    /// handed over.
    pub async fn submit<K: Hash + ?Sized>(&self, key: &K, item: T) -> Result<(), SubmitError<T>> {
        self.enqueue(key, Entry { item, waiter: None })
            .await
            .map_err(|entry| SubmitError::Closed(entry.item))
    }

    /// Enqueues `item` like [`submit`](Batcher::submit), then waits until the
    /// batch holding it was handled, with that batch's outcome.
    ///
    /// # Errors
    ///
    /// - [`WaitError::Closed`] with the item when the batcher was shut down
    ///   before accepting it.
    /// - [`WaitError::Batch`] when the item's batch failed after every retry
    ///   (its handler returned an error or panicked); the batch also went to
    ///   the failure callback.
    /// - [`WaitError::Abandoned`] when the runtime stopped before the batch
    ///   was handled.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future while it waits for room drops the item
    /// unsubmitted. Dropping it after the item was accepted does not withdraw
    /// the item: it is still handed over, only the outcome is not reported.
    pub async fn submit_and_wait<K: Hash + ?Sized>(
        &self,
        key: &K,
        item: T,
    ) -> Result<(), WaitError<T, E>> {
        let (tx, rx) = oneshot::channel();
        let entry = Entry {
            item,
            waiter: Some(tx),
        };
        if let Err(entry) = self.enqueue(key, entry).await {
            return Err(WaitError::Closed(entry.item));
        }
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(WaitError::Batch(error)),
            Err(_) => Err(WaitError::Abandoned),
        }
    }

    async fn enqueue<K: Hash + ?Sized>(
        &self,
        key: &K,
        entry: Entry<T, E>,
    ) -> Result<(), Entry<T, E>> {
        if self.is_closed() {
            return Err(entry);
        }
        let Some(sender) = self.sender_for(key) else {
            return Err(entry);
        };
        sender.items.send(entry).await.map_err(|e| e.0)?;
        sender.count_accepted();
        Ok(())
    }

    /// Enqueues `item` in `key`'s bucket if it has room, without waiting.
    ///
    /// # Errors
    ///
    /// - [`TrySubmitError::Full`] with the item when the bucket holds
    ///   `capacity` items: retry later, call `submit` to wait, or shed the
    ///   request (answer "busy").
    /// - [`TrySubmitError::Closed`] with the item after shutdown.
    pub fn try_submit<K: Hash + ?Sized>(&self, key: &K, item: T) -> Result<(), TrySubmitError<T>> {
        if self.is_closed() {
            return Err(TrySubmitError::Closed(item));
        }
        let Some(sender) = self.sender_for(key) else {
            return Err(TrySubmitError::Closed(item));
        };
        sender
            .items
            .try_send(Entry { item, waiter: None })
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(entry) => TrySubmitError::Full(entry.item),
                mpsc::error::TrySendError::Closed(entry) => TrySubmitError::Closed(entry.item),
            })?;
        sender.count_accepted();
        Ok(())
    }

    /// Hands every item queued now to the handler without waiting for
    /// `max_delay`, and waits until those batches were handled (or failed
    /// after their retries). Items submitted meanwhile may be included.
    ///
    /// Flush requests travel apart from the items, so a flush is never stuck
    /// behind a full queue; a bucket takes it between two handler calls.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future stops the waiting only; the buckets still hand
    /// their items over.
    pub async fn flush(&self) {
        let mut answers = Vec::with_capacity(self.inner.senders.len());
        for sender in self.inner.senders.iter() {
            let (tx, rx) = oneshot::channel();
            // A stopped worker has handed everything over already.
            if sender.control.send(Control::Flush(tx)).is_ok() {
                answers.push(rx);
            }
        }
        for answer in answers {
            // An error means the worker stopped, after handing everything over.
            let _ = answer.await;
        }
    }

    /// Stops accepting items, hands every accepted item to the handler
    /// (without waiting for `max_delay`), and waits until every handler
    /// call, retries included, has finished.
    ///
    /// Every item whose submit returned `Ok` is handed over exactly once;
    /// submits racing with the shutdown either succeed (and are handed over)
    /// or get their item back in a `Closed` error. Calling it again, from any
    /// clone, waits for the same end.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future stops the waiting only: the shutdown goes on in
    /// the background.
    pub async fn shutdown(&self) {
        self.inner.shared.close();
        for sender in self.inner.senders.iter() {
            // A stopped worker needs no request.
            let _ = sender.control.send(Control::Shutdown);
        }
        self.inner.shared.stopped().await;
    }
}
