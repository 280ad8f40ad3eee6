//! Collecting a batch: the first message, then more until
//! [`MAX_BATCH_ORDERS`] orders or [`BATCH_IDLE`] without a message.
//! Messages that are not a batch of orders are counted and skipped (their
//! offsets still move on, so one bad message never blocks a partition).
//! While it waits for the first message (no batch in hand), the
//! [`Watchdog`] judges whether the consumer is stuck.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::StreamConsumer;
use rdkafka::message::{BorrowedMessage, Message};
use tokio_util::sync::CancellationToken;

use super::BACKOFF_MAX;
use super::watchdog::{Stuck, Watchdog};
use crate::domain::order::Order;
use crate::kafka::message;
use crate::metrics::Metrics;

/// Most orders in one batch (one MySQL transaction).
pub const MAX_BATCH_ORDERS: usize = 500;
/// A batch closes when no message arrived for this long.
pub const BATCH_IDLE: Duration = Duration::from_millis(20);
/// While waiting for a first message, the watchdog is looked at this often
/// (it measures at most once per [`LAG_EVERY`](super::LAG_EVERY)).
const WATCH_EVERY: Duration = Duration::from_millis(250);

/// What waiting for messages ended with.
#[derive(Debug)]
pub enum Next {
    /// A batch to apply.
    Batch(Batch),
    /// The watchdog found the consumer stuck (no batch in hand).
    Stuck(Stuck),
    /// Shutdown before a first message.
    Shutdown,
}

/// What the consumer keeps of a batch of messages (messages borrow the
/// consumer and cannot be held across an `.await`).
#[derive(Debug, Default)]
pub struct Batch {
    /// The orders, in message order.
    pub orders: Vec<Order>,
    /// Per partition, the offset to commit: last message's offset + 1.
    pub offsets: BTreeMap<i32, i64>,
}

impl Batch {
    fn add(&mut self, msg: &BorrowedMessage<'_>, metrics: &Metrics) {
        let next = msg.offset() + 1;
        let committed = self.offsets.entry(msg.partition()).or_insert(next);
        *committed = (*committed).max(next);
        let Some(payload) = msg.payload() else {
            return malformed(metrics, msg, "no payload");
        };
        match message::decode(payload) {
            Ok(orders) => self.orders.extend(orders),
            Err(error) => malformed(metrics, msg, &error.to_string()),
        }
    }
}

fn malformed(metrics: &Metrics, msg: &BorrowedMessage<'_>, error: &str) {
    metrics.messages_malformed.inc();
    tracing::warn!(
        partition = msg.partition(),
        offset = msg.offset(),
        error,
        "skipping a Kafka message that is not a batch of orders"
    );
}

/// Waits for the first message, then takes more until the batch is full or
/// the topic is quiet. Until the first message, the watchdog is ticked.
pub async fn next_batch(
    consumer: &Arc<StreamConsumer>,
    metrics: &Metrics,
    shutdown: &CancellationToken,
    watchdog: &mut Watchdog,
) -> Next {
    let mut batch = Batch::default();
    loop {
        if let Some(stuck) = watchdog.tick(consumer).await {
            return Next::Stuck(stuck);
        }
        let received = tokio::select! {
            biased;
            () = shutdown.cancelled() => return Next::Shutdown,
            received = consumer.recv() => received.map(|msg| batch.add(&msg, metrics)),
            () = tokio::time::sleep(WATCH_EVERY) => continue,
        };
        match received {
            Ok(()) => break,
            Err(error) => {
                tracing::warn!(%error, "Kafka consumer error; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return Next::Shutdown,
                    () = tokio::time::sleep(BACKOFF_MAX) => {}
                }
            }
        }
    }
    while batch.orders.len() < MAX_BATCH_ORDERS && !shutdown.is_cancelled() {
        let received = tokio::time::timeout(BATCH_IDLE, consumer.recv())
            .await
            .map(|r| r.map(|msg| batch.add(&msg, metrics)));
        match received {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, "Kafka consumer error; closing the batch");
                break;
            }
            Err(_quiet) => break,
        }
    }
    Next::Batch(batch)
}
