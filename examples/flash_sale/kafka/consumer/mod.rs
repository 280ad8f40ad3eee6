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
//!
//! While it waits for messages, the [`watchdog`] measures the topic and the
//! group about once a second and judges whether the consumer is stuck (the
//! group has uncommitted messages and nothing moves, or no measurement
//! works) for [`ConsumerDeps::stuck_after`]; then the consumer joins the
//! group again with a new Kafka client and drops the old one.

mod apply;
mod batch;
mod group;
mod lag;
mod watchdog;

pub use self::group::group_lag;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use self::batch::Next;
use self::watchdog::{Stuck, Watchdog};
use super::client::Kafka;
use crate::metrics::Metrics;
use crate::redis::stock::RedisStock;
use crate::store::Store;

/// First wait after a failed MySQL transaction or Redis refund; doubles up to
/// [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// How often the topic and the group are measured (lag gauge, watchdog), at most.
const LAG_EVERY: Duration = Duration::from_secs(1);
/// Longest wait for an old Kafka client to close (leave the group): with a
/// dead broker closing can block; past this the consumer goes on and the
/// close finishes, or not, on the blocking pool.
pub const CLOSE_WAIT: Duration = Duration::from_secs(5);

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
    /// With uncommitted messages in the topic and no progress of the group
    /// (or no measurement working) for this long, the consumer recreates its
    /// Kafka client and rejoins the group (`--consumer-stuck-after-ms`).
    pub stuck_after: Duration,
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
/// the batch in hand is kept until it is written. A consumer stuck for
/// [`ConsumerDeps::stuck_after`] (see [`watchdog`]) rejoins the group with a
/// new client, counted in [`Metrics::consumer_rejoins`].
///
/// # Errors
///
/// The first consumer could not be created or subscribed.
///
/// # Cancel safety
///
/// Cancel `shutdown` to stop cleanly. Dropping the future instead loses
/// nothing either: offsets are committed only after MySQL and Redis are
/// done, so the batch in hand is delivered again, where it is a no-op for
/// what was written.
pub async fn run(deps: ConsumerDeps, shutdown: CancellationToken) -> Result<(), ConsumerError> {
    let mut consumer = join(&deps)?;
    let mut watchdog = Watchdog::new(&deps.topic, Arc::clone(&deps.metrics), deps.stuck_after);
    loop {
        let batch =
            match batch::next_batch(&consumer, &deps.metrics, &shutdown, &mut watchdog).await {
                Next::Batch(batch) => batch,
                Next::Shutdown => break,
                Next::Stuck(stuck) => {
                    match rejoin(&deps, consumer, &stuck, &shutdown).await {
                        Some(fresh) => consumer = fresh,
                        None => return Ok(()),
                    }
                    watchdog.rejoined();
                    continue;
                }
            };
        let started = Instant::now();
        let applied = apply::apply(
            &deps.store,
            &deps.stock,
            &deps.metrics,
            &batch.orders,
            &shutdown,
        )
        .await;
        watchdog.applied_in(started.elapsed());
        if !applied {
            break;
        }
        commit_offsets(&consumer, &deps.topic, &batch.offsets).await;
    }
    watchdog.finish(CLOSE_WAIT).await;
    close(consumer).await;
    Ok(())
}

/// A new client in the group, subscribed to the topic.
fn join(deps: &ConsumerDeps) -> Result<Arc<StreamConsumer>, ConsumerError> {
    let consumer = deps.kafka.consumer(&deps.group)?;
    consumer.subscribe(&[deps.topic.as_str()])?;
    Ok(Arc::new(consumer))
}

/// Joins again with a new client, retried until it works, then closes the
/// old one (bounded wait). `None`: shutdown came first.
///
/// The new client joins while the old one is still in the group: a
/// coordinator that kept a dead leader in its cached group state (tansu
/// does, after every member's session expired at once) only reloads the
/// group, and so forgets that leader, when two members join concurrently;
/// a sound coordinator just rebalances once more.
async fn rejoin(
    deps: &ConsumerDeps,
    old: Arc<StreamConsumer>,
    stuck: &Stuck,
    shutdown: &CancellationToken,
) -> Option<Arc<StreamConsumer>> {
    deps.metrics.consumer_rejoins.inc();
    tracing::warn!(
        group = %deps.group,
        topic = %deps.topic,
        stuck_after = ?deps.stuck_after,
        rejoins = deps.metrics.consumer_rejoins.get(),
        "the order consumer is stuck ({stuck}); recreating its Kafka client and rejoining the group"
    );
    let fresh = loop {
        match join(deps) {
            Ok(consumer) => break consumer,
            Err(error) => {
                tracing::warn!(%error, "could not recreate the Kafka consumer; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => {
                        close(old).await;
                        return None;
                    }
                    () = tokio::time::sleep(BACKOFF_MAX) => {}
                }
            }
        }
    };
    close(old).await;
    Some(fresh)
}

/// Closes a client (leaves the group: a blocking call) on a thread of its
/// own, waiting at most [`CLOSE_WAIT`]; past that the close goes on alone.
///
/// Not on Tokio's blocking pool: librdkafka's close can block for good (seen
/// with the mock cluster, inside the rebalance callback of a close), and a
/// runtime waits for its blocking tasks when it shuts down, so one stuck
/// close would hang the process's exit. A detached thread does not.
async fn close(consumer: Arc<StreamConsumer>) {
    let (done, closed) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("kafka-close".into())
        .spawn(move || {
            drop(consumer);
            let _ = done.send(());
        });
    if let Err(error) = spawned {
        // No thread to spare: the client is dropped with the closure,
        // here; nothing else can be done about it.
        tracing::warn!(%error, "could not start a thread to close the old Kafka client");
        return;
    }
    if tokio::time::timeout(CLOSE_WAIT, closed).await.is_err() {
        tracing::warn!(
            wait = ?CLOSE_WAIT,
            "the old Kafka client is still closing; going on without it"
        );
    }
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
