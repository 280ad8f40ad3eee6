//! [`Builder`]: the settings of a [`Batcher`], each with a working default.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::mpsc;

use crate::batcher::Batcher;
use crate::bucket::{BucketSender, Running, Shared};
use crate::error::BuildError;
use crate::failed::FailedBatch;
use crate::handler::Handler;
use crate::retry::Retry;
use crate::worker::{FailureCallback, Settings, Worker};

/// Largest `max_batch_size`: 2^20 items.
const MAX_BATCH_SIZE: usize = 1 << 20;
/// Longest `max_delay`: one hour.
const MAX_DELAY: Duration = Duration::from_secs(3600);
/// Most buckets (each is a task and two channels).
const MAX_BUCKETS: usize = 1024;
/// Largest per-bucket capacity: 2^24 items.
const MAX_CAPACITY: usize = 1 << 24;
/// Most retries of one batch.
const MAX_RETRIES: u32 = 100;
/// Longest wait before the first retry.
const MAX_INITIAL_BACKOFF: Duration = Duration::from_secs(60);
/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// Configures and builds a [`Batcher`]. Every setting has a default that
/// works, and a range that [`build`](Builder::build) checks: a value outside
/// it is a [`BuildError::Invalid`] naming the setting and its range. The
/// ranges keep every setting from turning into unbounded memory (items held
/// per bucket) or work (retries, waits).
///
/// | setting | default | range |
/// |---|---|---|
/// | [`max_batch_size`](Builder::max_batch_size) | 100 | 1 to 1048576 items |
/// | [`max_delay`](Builder::max_delay) | 10 ms | 0 to 3600 s |
/// | [`buckets`](Builder::buckets) | 1 | 1 to 1024 |
/// | [`capacity`](Builder::capacity) | 10 000 items per bucket | 1 to 16777216 items |
/// | [`retries`](Builder::retries) | 0 | 0 to 100 |
/// | [`backoff`](Builder::backoff) | 10 ms doubling up to 1 s | initial 0 to 60 s; max from initial to 600 s |
/// | [`on_failure`](Builder::on_failure) | none: failed items are only counted | |
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use seckill_batcher::{Batch, Batcher, FailedBatch};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let batcher = Batcher::builder()
///     .max_batch_size(100)
///     .max_delay(Duration::from_millis(10))
///     .buckets(8)
///     .capacity(10_000)
///     .retries(3)
///     .on_failure(|failed: FailedBatch<String, std::io::Error>| {
///         eprintln!("{} orders lost: {}", failed.len(), failed.error())
///     })
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
    /// A bucket hands its items over as soon as it holds this many.
    ///
    /// Range: 1 to 1048576 (2^20) items; checked by [`build`](Builder::build).
    pub fn max_batch_size(mut self, items: usize) -> Self {
        self.max_batch_size = items;
        self
    }

    /// A bucket hands its items over once the oldest has waited this long
    /// (like Kafka's `linger.ms`; the clock starts at the first item).
    /// `Duration::ZERO` hands over whatever is there without waiting.
    ///
    /// Range: 0 to 3600 s (one hour); checked by [`build`](Builder::build).
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Number of independent buckets. Each key always maps to the same
    /// bucket; buckets are handed to the handler in parallel, each one batch
    /// at a time. Each bucket is one Tokio task.
    ///
    /// Range: 1 to 1024; checked by [`build`](Builder::build).
    pub fn buckets(mut self, buckets: usize) -> Self {
        self.buckets = buckets;
        self
    }

    /// Items each bucket queues before `submit` waits and `try_submit`
    /// returns [`Full`](crate::TrySubmitError::Full).
    ///
    /// A bucket holds at most `capacity + max_batch_size` items: the queue,
    /// plus the batch being collected or handled. The queue grows in small
    /// blocks as items arrive; nothing is reserved up front.
    ///
    /// Range: 1 to 16777216 (2^24) items; checked by [`build`](Builder::build).
    pub fn capacity(mut self, items: usize) -> Self {
        self.capacity = items;
        self
    }

    /// How often a failed batch is retried before it goes to the failure
    /// callback. Retrying means the handler may see the same items again, so
    /// it should be idempotent (a Kafka idempotent producer, an upsert).
    ///
    /// Range: 0 to 100; checked by [`build`](Builder::build).
    pub fn retries(mut self, retries: u32) -> Self {
        self.retry.retries = retries;
        self
    }

    /// Wait before the first retry, doubled after each further failure up to
    /// `max`. The bucket hands nothing else over meanwhile, which keeps each
    /// key's items in order.
    ///
    /// Range: `initial` 0 to 60 s; `max` from `initial` to 600 s; checked by
    /// [`build`](Builder::build). So a batch spends at most
    /// `retries × max` (100 × 600 s) waiting.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.retry.initial_backoff = initial;
        self.retry.max_backoff = max;
        self
    }

    /// Called with each batch that failed its last attempt, so nothing is
    /// dropped silently. The [`FailedBatch`] owns the items (take them with
    /// [`FailedBatch::try_into_items`]) and tells the error, the bucket, the
    /// trigger and the number of attempts: write them to a dead-letter
    /// store, log them, or resubmit them. The batch's `submit_and_wait`
    /// callers get the error after the callback returned.
    ///
    /// It runs on the bucket's worker, so keep it short (send the items to a
    /// channel, or spawn a task for slow work). A panic in it is caught and
    /// counted in [`Stats::panics`](crate::Stats::panics).
    pub fn on_failure<F>(mut self, callback: F) -> Self
    where
        F: Fn(FailedBatch<T, E>) + Send + Sync + 'static,
    {
        self.on_failure = Some(Arc::new(callback));
        self
    }

    /// Starts one worker task per bucket on the current Tokio runtime and
    /// returns the handle to submit items with.
    ///
    /// # Errors
    ///
    /// - [`BuildError::Invalid`] when a setting is outside its range (see the
    ///   table above); the error names the setting, its range and the value.
    ///   Settings are checked before the runtime.
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
            senders.push(BucketSender::new(items, control));
        }
        Ok(Batcher::new(senders.into_boxed_slice(), shared))
    }

    fn validate(&self) -> Result<(), BuildError> {
        check_count("max_batch_size", self.max_batch_size, 1, MAX_BATCH_SIZE)?;
        check_duration("max_delay", self.max_delay, Duration::ZERO, MAX_DELAY)?;
        check_count("buckets", self.buckets, 1, MAX_BUCKETS)?;
        check_count("capacity", self.capacity, 1, MAX_CAPACITY)?;
        let retries = self.retry.retries;
        if retries > MAX_RETRIES {
            return Err(BuildError::Invalid {
                setting: "retries",
                range: format!("0 to {MAX_RETRIES}"),
                got: retries.to_string(),
            });
        }
        let initial = self.retry.initial_backoff;
        check_duration(
            "backoff.initial",
            initial,
            Duration::ZERO,
            MAX_INITIAL_BACKOFF,
        )?;
        check_duration("backoff.max", self.retry.max_backoff, initial, MAX_BACKOFF)?;
        Ok(())
    }
}

fn check_count(
    setting: &'static str,
    value: usize,
    min: usize,
    max: usize,
) -> Result<(), BuildError> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    Err(BuildError::Invalid {
        setting,
        range: format!("{min} to {max}"),
        got: value.to_string(),
    })
}

fn check_duration(
    setting: &'static str,
    value: Duration,
    min: Duration,
    max: Duration,
) -> Result<(), BuildError> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    Err(BuildError::Invalid {
        setting,
        range: format!("{} to {}", show(min), show(max)),
        got: show(value),
    })
}

/// A duration as `Debug` shows it (`10ms`, `1.5s`), with zero as `0s`.
fn show(duration: Duration) -> String {
    if duration.is_zero() {
        "0s".to_string()
    } else {
        format!("{duration:?}")
    }
}
