//! Collecting a batch: the first message, then more until
//! [`MAX_BATCH_ORDERS`] orders or [`BATCH_IDLE`] without a message.
//! Messages that are not a batch of orders are counted and skipped (their
//! offsets still move on, so one bad message never blocks a partition).

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::StreamConsumer;
use rdkafka::message::{BorrowedMessage, Message};
use tokio_util::sync::CancellationToken;

use super::lag::LagProbe;
use super::{BACKOFF_MAX, LAG_EVERY};
use crate::domain::order::Order;
use crate::kafka::message;
use crate::metrics::Metrics;

/// Most orders in one batch (one MySQL transaction).
pub const MAX_BATCH_ORDERS: usize = 500;
/// A batch closes when no message arrived for this long.
pub const BATCH_IDLE: Duration = Duration::from_millis(20);

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
/// the topic is quiet. `None`: shutdown before a first message.
pub async fn next_batch(
    consumer: &StreamConsumer,
    metrics: &Metrics,
    shutdown: &CancellationToken,
    lag: &mut LagProbe,
) -> Option<Batch> {
    let mut batch = Batch::default();
    loop {
        let received = tokio::select! {
            biased;
            () = shutdown.cancelled() => return None,
            received = consumer.recv() => received.map(|msg| batch.add(&msg, metrics)),
            () = tokio::time::sleep(LAG_EVERY) => {
                lag.maybe_measure();
                continue;
            }
        };
        match received {
            Ok(()) => break,
            Err(error) => {
                tracing::warn!(%error, "Kafka consumer error; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return None,
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
    Some(batch)
}
