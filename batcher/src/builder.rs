//! [`Builder`]: the settings of a [`Batcher`], each with a working default.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::mpsc;

use crate::batch::Batch;
use crate::batcher::Batcher;
use crate::bucket::{BucketSender, Running, Shared};
use crate::error::{BatchError, BuildError};
use crate::handler::Handler;
use crate::retry::Retry;
use crate::worker::{FailureCallback, Settings, Worker};

/// Largest per-bucket capacity Tokio's bounded channel accepts.
const MAX_CAPACITY: usize = usize::MAX >> 3;

/// Configures and builds a [`Batcher`]. Every setting has a default that works.
///
/// | setting | default |
/// |---|---|
/// | [`max_batch_size`](Builder::max_batch_size) | 100 |
/// | [`max_delay`](Builder::max_delay) | 10 ms |
/// | [`buckets`](Builder::buckets) | 1 |
/// | [`capacity`](Builder::capacity) | 10 000 items per bucket |
/// | [`retries`](Builder::retries) | 0 |
/// | [`backoff`](Builder::backoff) | 10 ms doubling up to 1 s |
/// | [`on_failure`](Builder::on_failure) | none: failed items are only counted |
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
///     .buckets(8)
///     .capacity(10_000)
///     .retries(3)
///     .on_failure(|batch: Batch<String>, error| eprintln!("{} orders lost: {error}", batch.len()))
///     .build(|batch: Batch<String>| async move {
///         let _ = batch.len(); // write the batch to Kafka here
///         Ok::<(), std::io::Error>(())
///     })
///     .unwrap();
/// batcher.shutdown().await;
/// # }
/// ```
pub struct Builder<T, E> {
    max_batch_size: usize,
    max_delay: Duration,
    buckets: usize,
    capacity: usize,
    retry: Retry,
    on_failure: Option<FailureCallback<T, E>>,
    _items: PhantomData<fn(T) -> E>,
}

impl<T, E> Default for Builder<T, E> {
    fn default() -> Self {
        Builder {
            max_batch_size: 100,
            max_delay: Duration::from_millis(10),
            buckets: 1,
            capacity: 10_000,
            retry: Retry::default(),
            on_failure: None,
            _items: PhantomData,
        }
    }
}

impl<T, E> fmt::Debug for Builder<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("max_batch_size", &self.max_batch_size)
            .field("max_delay", &self.max_delay)
            .field("buckets", &self.buckets)
            .field("capacity", &self.capacity)
            .field("retry", &self.retry)
            .field("on_failure", &self.on_failure.is_some())
            .finish()
    }
}

impl<T, E> Builder<T, E>
where
    T: Send + Sync + 'static,
    E: Send + Sync + 'static,
{
    /// A bucket hands its items over as soon as it holds this many (at least 1).
    pub fn max_batch_size(mut self, items: usize) -> Self {
        self.max_batch_size = items;
        self
    }

    /// A bucket hands its items over once the oldest has waited this long
    /// (like Kafka's `linger.ms`; the clock starts at the first item).
    /// `Duration::ZERO` hands over whatever is there without waiting.
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Number of independent buckets (at least 1). Each key always maps to
    /// the same bucket; buckets are handed to the handler in parallel, each
    /// one batch at a time.
    pub fn buckets(mut self, buckets: usize) -> Self {
        self.buckets = buckets;
        self
    }

    /// Items each bucket queues before `submit` waits and `try_submit`
    /// returns [`Full`](crate::TrySubmitError::Full) (at least 1).
    ///
    /// A bucket holds at most `capacity + max_batch_size` items: the queue,
    /// plus the batch being collected or handled.
    pub fn capacity(mut self, items: usize) -> Self {
        self.capacity = items;
        self
    }

    /// How often a failed batch is retried before it goes to the failure
    /// callback. Retrying means the handler may see the same items again, so
    /// it should be idempotent (a Kafka idempotent producer, an upsert).
    pub fn retries(mut self, retries: u32) -> Self {
        self.retry.retries = retries;
        self
    }

    /// Wait before the first retry, doubled after each further failure up to
    /// `max`. The bucket hands nothing else over meanwhile, which keeps each
    /// key's items in order.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.retry.initial_backoff = initial;
        self.retry.max_backoff = max;
        self
    }

    /// Called with each batch that failed its last attempt and the reason, so
    /// nothing is dropped silently: write it to a dead-letter store, log it,
    /// or resubmit it. It runs on the bucket's worker, so keep it short
    /// (spawn a task for slow work). A panic in it is caught and counted in
    /// [`Stats::panics`](crate::Stats::panics).
    pub fn on_failure<F>(mut self, callback: F) -> Self
    where
        F: Fn(Batch<T>, &BatchError<E>) + Send + Sync + 'static,
    {
        self.on_failure = Some(Arc::new(callback));
        self
    }

    /// Starts one worker task per bucket on the current Tokio runtime and
    /// returns the handle to submit items with.
    ///
    /// # Errors
    ///
    /// - [`BuildError::Invalid`] when `max_batch_size`, `buckets` or
    ///   `capacity` is 0, or `capacity` is beyond what Tokio's channel holds.
    /// - [`BuildError::NoRuntime`] when called outside a Tokio runtime.
    ///
    /// # Panics
    ///
    /// Never.
    pub fn build<H>(self, handler: H) -> Result<Batcher<T, E>, BuildError>
    where
        H: Handler<T, Error = E>,
    {
        self.validate()?;
        let runtime = Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        let shared = Arc::new(Shared::new(self.buckets));
        let handler = Arc::new(handler);
        let settings = Arc::new(Settings {
            max_batch_size: self.max_batch_size,
            max_delay: self.max_delay,
            retry: self.retry,
            on_failure: self.on_failure,
        });
        let mut senders = Vec::with_capacity(self.buckets);
        for (bucket, counters) in shared.counters.iter().enumerate() {
            let (items, items_rx) = mpsc::channel(self.capacity);
            let (control, control_rx) = mpsc::unbounded_channel();
            let worker = Worker::new(
                bucket,
                items_rx,
                control_rx,
                Arc::clone(&handler),
                Arc::clone(&settings),
                Arc::clone(counters),
            );
            runtime.spawn(worker.run(Running(Arc::clone(&shared))));
            senders.push(BucketSender { items, control });
        }
        Ok(Batcher::new(senders.into_boxed_slice(), shared))
    }

    fn validate(&self) -> Result<(), BuildError> {
        let invalid = |setting, reason| Err(BuildError::Invalid { setting, reason });
        if self.max_batch_size == 0 {
            return invalid("max_batch_size", "must be at least 1");
        }
        if self.buckets == 0 {
            return invalid("buckets", "must be at least 1");
        }
        if self.capacity == 0 {
            return invalid("capacity", "must be at least 1");
        }
        if self.capacity > MAX_CAPACITY {
            return invalid(
                "capacity",
                "must be at most usize::MAX >> 3 (Tokio's channel limit)",
            );
        }
        Ok(())
    }
}
