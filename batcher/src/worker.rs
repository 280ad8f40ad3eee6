//! One bucket's worker: collects items into batches and hands them to the handler.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep, sleep_until};

use crate::batch::{Batch, Trigger};
use crate::bucket::{Control, Entry, Outcome, Running};
use crate::catch_panic::catching;
use crate::error::BatchError;
use crate::failed::FailedBatch;
use crate::handler::Handler;
use crate::retry::Retry;
use crate::stats::BucketCounters;

/// Called with a batch that failed its last attempt; it owns the items.
pub(crate) type FailureCallback<T, E> = Arc<dyn Fn(FailedBatch<T, E>) + Send + Sync>;

/// What every worker of one batcher is configured with.
pub(crate) struct Settings<T, E> {
    pub(crate) max_batch_size: usize,
    pub(crate) max_delay: Duration,
    pub(crate) retry: Retry,
    pub(crate) on_failure: Option<FailureCallback<T, E>>,
}

/// How collecting one batch ended.
enum Collected {
    /// Hand the pending items over for this reason.
    Deliver(Trigger),
    /// A flush already handed them over.
    Flushed,
    /// Shut down: hand over everything and stop.
    Stop,
}

/// What woke the worker up.
enum Event {
    Control(Option<Control>),
    Received(usize),
    Deadline,
}

pub(crate) struct Worker<T, H: Handler<T>> {
    bucket: usize,
    items: mpsc::Receiver<Entry<T, H::Error>>,
    control: mpsc::UnboundedReceiver<Control>,
    control_open: bool,
    handler: Arc<H>,
    settings: Arc<Settings<T, H::Error>>,
    counters: Arc<BucketCounters>,
    /// Items of the batch being collected, in arrival order.
    pending: Vec<T>,
    /// Who waits for the outcome of the batch being collected.
    waiters: Vec<oneshot::Sender<Outcome<H::Error>>>,
    /// Where `recv_many` puts entries before they are split into the two above.
    received: Vec<Entry<T, H::Error>>,
    /// The last batch's allocation, reused when the handler kept no handle.
    spare: Option<Arc<Vec<T>>>,
    /// When items arrived while the handler ran: the start of that call,
    /// an upper bound on how long they have waited already.
    backlog_since: Option<Instant>,
    /// Items of the batch being handed over right now (0 between batches),
    /// so that a worker dropped mid-call can count them as abandoned.
    in_flight: usize,
}

impl<T, H> Worker<T, H>
where
    T: Send + Sync + 'static,
    H: Handler<T>,
{
    pub(crate) fn new(
        bucket: usize,
        items: mpsc::Receiver<Entry<T, H::Error>>,
        control: mpsc::UnboundedReceiver<Control>,
        handler: Arc<H>,
        settings: Arc<Settings<T, H::Error>>,
        counters: Arc<BucketCounters>,
    ) -> Self {
        let reserve = settings.max_batch_size.min(1024);
        Worker {
            bucket,
            items,
            control,
            control_open: true,
            handler,
            settings,
            counters,
            pending: Vec::with_capacity(reserve),
            waiters: Vec::new(),
            received: Vec::with_capacity(reserve),
            spare: None,
            backlog_since: None,
            in_flight: 0,
        }
    }

    /// Runs until shut down or until every handle is dropped, then hands
    /// over every item still queued.
    pub(crate) async fn run(mut self, running: Running) {
        let max = self.settings.max_batch_size;
        loop {
            // Idle: wait for the first item of the next batch.
            let event = tokio::select! {
                biased;
                msg = self.control.recv(), if self.control_open => Event::Control(msg),
                n = self.items.recv_many(&mut self.received, max) => Event::Received(n),
            };
            match event {
                // Every handle is gone (the control sender lives in them):
                // no item can come any more, so this is a shutdown.
                Event::Control(None) => {
                    self.control_open = false;
                    break;
                }
                Event::Control(Some(Control::Flush(ack))) => self.flush(ack).await,
                Event::Control(Some(Control::Shutdown)) | Event::Received(0) => break,
                Event::Received(_) => match self.collect().await {
                    Collected::Deliver(trigger) => self.deliver(trigger).await,
                    Collected::Flushed => {}
                    Collected::Stop => break,
                },
                Event::Deadline => {}
            }
        }
        self.drain().await;
        drop(running);
    }

    /// Moves what `recv_many` received into the pending batch.
    fn take_received(&mut self) {
        self.counters.received(self.received.len());
        for entry in self.received.drain(..) {
            self.pending.push(entry.item);
            if let Some(waiter) = entry.waiter {
                self.waiters.push(waiter);
            }
        }
    }

    /// Fills the pending batch until it is full, its oldest item is due, or
    /// a control message arrives.
    async fn collect(&mut self) -> Collected {
        self.take_received();
        let max = self.settings.max_batch_size;
        if self.pending.len() >= max {
            // Full at once: no clock read, no timer.
            self.backlog_since = None;
            return Collected::Deliver(Trigger::Size);
        }
        // The oldest item arrived now, or, if it queued up while the handler
        // ran, at the earliest when that call started.
        let since = self.backlog_since.take().unwrap_or_else(Instant::now);
        let deadline = since.checked_add(self.settings.max_delay);
        let timer = sleep_until(deadline.unwrap_or(since));
        tokio::pin!(timer);
        loop {
            if self.pending.len() >= max {
                return Collected::Deliver(Trigger::Size);
            }
            let room = max - self.pending.len();
            let event = tokio::select! {
                biased;
                msg = self.control.recv(), if self.control_open => Event::Control(msg),
                // Items before the timer: a timer that is never polled is
                // never registered, so a batch that fills up at once costs
                // no timer at all. Each ready poll adds at least one item,
                // so a flood fills the batch instead of starving the timer.
                n = self.items.recv_many(&mut self.received, room) => Event::Received(n),
                () = &mut timer, if deadline.is_some() => Event::Deadline,
            };
            match event {
                Event::Control(None) => {
                    // Every handle is gone: hand everything over as a shutdown.
                    self.control_open = false;
                    return Collected::Stop;
                }
                Event::Control(Some(Control::Flush(ack))) => {
                    self.flush(ack).await;
                    return Collected::Flushed;
                }
                Event::Control(Some(Control::Shutdown)) | Event::Received(0) => {
                    return Collected::Stop;
                }
                Event::Received(_) => self.take_received(),
                Event::Deadline => return Collected::Deliver(Trigger::Time),
            }
        }
    }

    /// Hands over the pending items and every item queued right now, then
    /// answers the flush.
    async fn flush(&mut self, ack: oneshot::Sender<()>) {
        let max = self.settings.max_batch_size;
        let mut remaining = self.items.len();
        while remaining > 0 {
            if self.pending.len() >= max {
                self.deliver(Trigger::Flush).await;
            }
            let room = (max - self.pending.len()).min(remaining);
            let n = self.items.recv_many(&mut self.received, room).await;
            if n == 0 {
                break;
            }
            remaining = remaining.saturating_sub(n);
            self.take_received();
        }
        self.deliver(Trigger::Flush).await;
        // The flusher may have stopped waiting; that is fine.
        let _ = ack.send(());
    }

    /// Refuses further items, then hands over the pending batch and every
    /// queued item. Submits already waiting for room get their item back.
    async fn drain(&mut self) {
        self.items.close();
        let max = self.settings.max_batch_size;
        loop {
            if self.pending.len() >= max {
                self.deliver(Trigger::Shutdown).await;
            }
            let room = max - self.pending.len();
            if self.items.recv_many(&mut self.received, room).await == 0 {
                break;
            }
            self.take_received();
        }
        self.deliver(Trigger::Shutdown).await;
    }

    /// Hands the pending batch to the handler, with retries, then tells its
    /// waiters the outcome.
    async fn deliver(&mut self, trigger: Trigger) {
        if self.pending.is_empty() {
            return;
        }
        let started = Instant::now();
        let items = self.seal();
        let count = items.len();
        self.in_flight = count;
        self.counters.batch(trigger);
        match self.attempts(&items, trigger).await {
            Ok(()) => {
                self.counters.handled(count);
                self.in_flight = 0;
                for waiter in self.waiters.drain(..) {
                    // A waiter that stopped waiting needs no answer.
                    let _ = waiter.send(Ok(()));
                }
                self.recycle(items);
            }
            Err((error, attempts)) => {
                self.counters.failed(count);
                self.in_flight = 0;
                if let Some(on_failure) = &self.settings.on_failure {
                    // The batcher lets go of the items: the callback owns them.
                    let failed =
                        FailedBatch::new(items, self.bucket, trigger, attempts, error.clone());
                    let called = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        on_failure(failed)
                    }));
                    if called.is_err() {
                        self.counters.panicked();
                    }
                } else {
                    drop(items);
                }
                // After the callback, so a waiter that sees the error knows
                // the batch was dead-lettered already.
                for waiter in self.waiters.drain(..) {
                    let _ = waiter.send(Err(error.clone()));
                }
            }
        }
        self.backlog_since = (!self.items.is_empty()).then_some(started);
    }

    /// Calls the handler until it succeeds or the retries run out; on
    /// failure, the last error and how many calls were made.
    async fn attempts(
        &self,
        items: &Arc<Vec<T>>,
        trigger: Trigger,
    ) -> Result<(), (BatchError<H::Error>, u32)> {
        let retry = self.settings.retry;
        let mut attempt: u32 = 1;
        loop {
            let batch = Batch::new(Arc::clone(items), self.bucket, trigger, attempt);
            let handler = &self.handler;
            let error = match catching(|| handler.handle(batch)).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(error)) => BatchError::Failed(Arc::new(error)),
                Err(message) => {
                    self.counters.panicked();
                    BatchError::Panicked(message)
                }
            };
            if attempt > retry.retries {
                return Err((error, attempt));
            }
            self.counters.retried();
            sleep(retry.backoff(attempt)).await;
            attempt = attempt.saturating_add(1);
        }
    }

    /// Turns the pending items into a shareable batch, reusing the last
    /// batch's allocation when possible.
    fn seal(&mut self) -> Arc<Vec<T>> {
        if let Some(mut spare) = self.spare.take()
            && let Some(empty) = Arc::get_mut(&mut spare)
        {
            std::mem::swap(empty, &mut self.pending);
            return spare;
        }
        let reserve = self.settings.max_batch_size.min(1024);
        Arc::new(std::mem::replace(
            &mut self.pending,
            Vec::with_capacity(reserve),
        ))
    }

    /// Keeps a handled batch's allocation for the next one when nobody else
    /// holds it (a handler may keep a clone; then it is simply dropped).
    fn recycle(&mut self, mut items: Arc<Vec<T>>) {
        if let Some(vec) = Arc::get_mut(&mut items) {
            vec.clear();
            self.spare = Some(items);
        }
    }
}

impl<T, H: Handler<T>> Drop for Worker<T, H> {
    /// A worker dropped before it ended (its runtime shut down) counts what
    /// it still held as abandoned, so that no counter goes backwards: the
    /// queued items it drains here stay in `submitted`. Their waiters are
    /// dropped, so `submit_and_wait` callers get `WaitError::Abandoned`.
    fn drop(&mut self) {
        self.items.close();
        let mut queued = 0;
        while self.items.try_recv().is_ok() {
            queued += 1;
        }
        let unreceived = queued + self.received.len();
        let lost = unreceived + self.pending.len() + self.in_flight;
        if lost > 0 {
            self.counters.received(unreceived);
            self.counters.abandoned(lost);
        }
    }
}
