//! The order consumer: Kafka → MySQL, one transaction per batch, offsets
//! committed after the transaction.
//!
//! Delivery is at least once, and every step is idempotent, so a message seen
//! twice (a redelivery after a crash, a republish by the reconciler, a second
//! consumer group replaying the topic) changes nothing the second time:
//!
//! 1. [`batch`]: collect a batch of orders from the topic.
//! 2. [`apply`]: one MySQL transaction for the batch
//!    ([`Store::write_orders`]), then refund in Redis every order MySQL
//!    refused.
//! 3. Commit the Kafka offsets.
//!
//! A MySQL or Redis failure keeps the batch and retries it with backoff; at
//! shutdown the batch in hand is finished, or, when it cannot be, left
//! uncommitted for the next consumer (whose redelivery is a no-op).

mod apply;
mod batch;
mod lag;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use self::lag::LagProbe;
use super::client::Kafka;
use crate::metrics::Metrics;
use crate::redis::stock::RedisStock;
use crate::store::Store;

/// First wait after a failed MySQL transaction or Redis refund; doubles up to
/// [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// How often the lag gauge is measured, at most.
const LAG_EVERY: Duration = Duration::from_secs(1);

/// What the consumer needs.
pub struct ConsumerDeps {
    /// The brokers.
    pub kafka: Arc<Kafka>,
    /// Consumer group.
    pub group: String,
    /// Topic of the orders.
    pub topic: String,
    /// MySQL.
    pub store: Store,
    /// Redis stock, for refunds of orders MySQL refuses.
    pub stock: RedisStock,
    /// Metrics.
    pub metrics: Arc<Metrics>,
}

/// Why the consumer stopped.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    /// Kafka failed.
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

/// Consumes until `shutdown`, then finishes the batch in hand and returns.
///
/// Kafka, MySQL and Redis failures are logged and retried, never returned:
/// the batch in hand is kept until it is written.
///
/// # Errors
///
/// The consumer could not be created or subscribed.
///
/// # Cancel safety
///
/// Cancel `shutdown` to stop cleanly. Dropping the future instead loses
/// nothing either: offsets are committed only after MySQL and Redis are
/// done, so the batch in hand is delivered again, where it is a no-op for
/// what was written.
pub async fn run(deps: ConsumerDeps, shutdown: CancellationToken) -> Result<(), ConsumerError> {
    let consumer = Arc::new(deps.kafka.consumer(&deps.group)?);
    consumer.subscribe(&[deps.topic.as_str()])?;
    let mut lag = LagProbe::new(
        Arc::clone(&consumer),
        deps.topic.clone(),
        Arc::clone(&deps.metrics),
    );
    while let Some(batch) = batch::next_batch(&consumer, &deps.metrics, &shutdown, &mut lag).await {
        let applied = apply::apply(
            &deps.store,
            &deps.stock,
            &deps.metrics,
            &batch.orders,
            &shutdown,
        )
        .await;
        if !applied {
            break;
        }
        commit_offsets(&consumer, &deps.topic, &batch.offsets).await;
        lag.maybe_measure();
    }
    lag.finish().await;
    // Closing leaves the group: a blocking call, so off the async threads.
    let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
    Ok(())
}

/// Commits the offsets (a blocking call, so on the blocking pool). A failure
/// is logged only: the messages come again, and their replay is a no-op.
async fn commit_offsets(consumer: &Arc<StreamConsumer>, topic: &str, offsets: &BTreeMap<i32, i64>) {
    let mut list = TopicPartitionList::new();
    for (&partition, &next) in offsets {
        if let Err(error) = list.add_partition_offset(topic, partition, Offset::Offset(next)) {
            tracing::warn!(%error, partition, "bad offset to commit");
        }
    }
    let consumer = Arc::clone(consumer);
    let committed =
        tokio::task::spawn_blocking(move || consumer.commit(&list, CommitMode::Sync)).await;
    match committed {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::warn!(%error, "Kafka did not take the offsets; the batch will be redelivered (a no-op)");
        }
        Err(error) => tracing::warn!(%error, "the offset commit task failed"),
    }
}
