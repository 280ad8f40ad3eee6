//! The order consumer: Kafka → MySQL, one transaction per batch, offsets
//! committed after the transaction.
//!
//! Delivery is at least once, and every step is idempotent, so a message seen
//! twice (a redelivery after a crash, a republish by the reconciler, a second
//! consumer group replaying the topic) changes nothing the second time:
//!
//! 1. Collect a batch: the first message, then more until
//!    [`MAX_BATCH_ORDERS`] orders or [`BATCH_IDLE`] without a message.
//! 2. One MySQL transaction: lock the batch's SKU rows, then per order insert
//!    it (`uq_orders_request` hit = already done; `uq_orders_user_sku` hit =
//!    the user already has one, refused) and take its units with
//!    `WHERE stock >= ?` (no row = out of stock, refused). Refused orders go
//!    to `failed_orders`; one already there is a no-op.
//! 3. After the commit, refund every refused order in Redis (idempotent, and
//!    repeated for orders refused by an earlier delivery, so a crash between
//!    the commit and the refund is healed by the redelivery).
//! 4. Commit the Kafka offsets.
//!
//! A MySQL or Redis failure keeps the batch and retries it with backoff; at
//! shutdown the batch in hand is finished, or, when it cannot be, left
//! uncommitted for the next consumer (whose redelivery is a no-op).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use redis::aio::ConnectionManager;
use seckill::stock_lua::{Error as StockError, StockStore};
use sqlx::error::ErrorKind;
use sqlx::{MySql, MySqlPool, Transaction};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::kafka::Kafka;
use super::message::{self, MAX_REQUEST_ID, Order};
use crate::metrics::Metrics;

/// Most orders in one batch (one MySQL transaction).
pub const MAX_BATCH_ORDERS: usize = 500;
/// A batch closes when no message arrived for this long.
pub const BATCH_IDLE: Duration = Duration::from_millis(20);
/// First wait after a failed MySQL transaction or Redis refund; doubles up to
/// [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// How often the lag gauge is measured, at most.
const LAG_EVERY: Duration = Duration::from_secs(1);
/// Longest wait for one partition's watermarks.
const WATERMARK_TIMEOUT: Duration = Duration::from_secs(1);

/// `failed_orders.reason` of an order MySQL had too few units for.
pub const REASON_OUT_OF_STOCK: &str = "out_of_stock";
/// `failed_orders.reason` of an order whose user already has one of its SKU
/// (the per-user limit is 1: the unique key `uq_orders_user_sku`).
pub const REASON_PER_USER_LIMIT: &str = "per_user_limit";

/// What the consumer needs.
pub struct ConsumerDeps {
    /// The brokers.
    pub kafka: Arc<Kafka>,
    /// Consumer group.
    pub group: String,
    /// Topic of the orders.
    pub topic: String,
    /// MySQL.
    pub db: MySqlPool,
    /// Redis stock, for refunds of orders MySQL refuses.
    pub stock: StockStore<ConnectionManager>,
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
    while let Some(batch) = next_batch(&consumer, &deps, &shutdown, &mut lag).await {
        if !handle(&deps, &batch, &shutdown).await {
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

/// The part of a batch of messages the consumer keeps (messages borrow the
/// consumer and cannot be held across an `.await`).
#[derive(Debug, Default)]
struct Batch {
    /// The orders, in message order.
    orders: Vec<Order>,
    /// Per partition, the offset to commit: last message's offset + 1.
    offsets: BTreeMap<i32, i64>,
}

impl Batch {
    fn add(&mut self, msg: &BorrowedMessage<'_>, metrics: &Metrics) {
        let next = msg.offset() + 1;
        let committed = self.offsets.entry(msg.partition()).or_insert(next);
        *committed = (*committed).max(next);
        let decoded = msg
            .payload()
            .map(message::decode)
            .map(|r| r.map_err(|e| e.to_string()));
        let orders = match decoded {
            Some(Ok(orders)) => orders,
            Some(Err(error)) => {
                return malformed(metrics, msg, &error);
            }
            None => return malformed(metrics, msg, "no payload"),
        };
        if let Some(bad) = orders.iter().find(|o| !storable(o)) {
            let error = format!(
                "order {bad:?} cannot be stored (request id of 1 to {MAX_REQUEST_ID} visible ASCII characters, quantity at least 1)"
            );
            return malformed(metrics, msg, &error);
        }
        self.orders.extend(orders);
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

/// Whether MySQL can store `order`: a request id of 1 to 64 visible ASCII
/// characters and at least one unit. Checked before the transaction, so one
/// bad order never fails its batch forever.
pub fn storable(order: &Order) -> bool {
    message::is_valid_request_id(&order.request_id) && order.quantity >= 1
}

/// Waits for the first message, then takes more until the batch is full or
/// the topic is quiet. `None`: shutdown before a first message.
async fn next_batch(
    consumer: &StreamConsumer,
    deps: &ConsumerDeps,
    shutdown: &CancellationToken,
    lag: &mut LagProbe,
) -> Option<Batch> {
    let mut batch = Batch::default();
    loop {
        let received = tokio::select! {
            biased;
            () = shutdown.cancelled() => return None,
            received = consumer.recv() => received.map(|msg| batch.add(&msg, &deps.metrics)),
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
            .map(|r| r.map(|msg| batch.add(&msg, &deps.metrics)));
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

/// Writes the batch and refunds what MySQL refused, retrying until done.
/// `false`: shutdown came first (the offsets must not be committed).
async fn handle(deps: &ConsumerDeps, batch: &Batch, shutdown: &CancellationToken) -> bool {
    if batch.orders.is_empty() {
        return true;
    }
    let mut backoff = Backoff::new();
    let written = loop {
        match write(&deps.db, &batch.orders).await {
            Ok(written) => break written,
            Err(error) => {
                tracing::warn!(%error, orders = batch.orders.len(), "MySQL did not take a batch of orders; retrying");
                if !backoff.wait(shutdown).await {
                    return false;
                }
            }
        }
    };
    deps.metrics.orders_created.add(written.created);
    deps.metrics.orders_duplicate.add(written.duplicate);
    deps.metrics.orders_failed.add(written.failed);
    for request_id in &written.refunds {
        let mut backoff = Backoff::new();
        loop {
            match deps.stock.refund(request_id).await {
                Ok(_) => break,
                Err(StockError::Redis { source }) => {
                    tracing::warn!(error = %source, %request_id, "Redis did not take a refund; retrying");
                    if !backoff.wait(shutdown).await {
                        return false;
                    }
                }
                Err(error) => {
                    // Not a failure of Redis: retrying cannot help.
                    tracing::error!(%error, %request_id, "refund refused; the order stays refused in MySQL");
                    break;
                }
            }
        }
    }
    true
}

/// Exponential backoff that gives up at shutdown.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Self(BACKOFF_MIN)
    }

    /// Sleeps; `false` when shutdown came first.
    async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        let delay = self.0;
        self.0 = (self.0 * 2).min(BACKOFF_MAX);
        tokio::select! {
            () = shutdown.cancelled() => false,
            () = tokio::time::sleep(delay) => true,
        }
    }
}

/// What one committed transaction did.
#[derive(Debug, Default)]
struct Written {
    created: u64,
    duplicate: u64,
    failed: u64,
    /// Refused orders (now or by an earlier delivery), each once.
    refunds: Vec<String>,
}

/// How MySQL took one order.
enum Placed {
    Created,
    /// The request id is already in `orders`.
    Duplicate,
    /// Refused, with the `failed_orders.reason`.
    Refused(&'static str),
}

/// One transaction for the whole batch.
async fn write(db: &MySqlPool, orders: &[Order]) -> Result<Written, sqlx::Error> {
    let mut tx = db.begin().await?;
    lock_skus(&mut tx, orders).await?;
    let mut refused = already_failed(&mut tx, orders).await?;
    let mut written = Written::default();
    let mut refunds = BTreeSet::new();
    for order in orders {
        if refused.contains(&order.request_id) {
            written.duplicate += 1;
            refunds.insert(order.request_id.clone());
            continue;
        }
        match place(&mut tx, order).await? {
            Placed::Created => written.created += 1,
            Placed::Duplicate => written.duplicate += 1,
            Placed::Refused(reason) => {
                if record_failure(&mut tx, order, reason).await? {
                    written.failed += 1;
                } else {
                    written.duplicate += 1;
                }
                refused.insert(order.request_id.clone());
                refunds.insert(order.request_id.clone());
            }
        }
    }
    tx.commit().await?;
    written.refunds = refunds.into_iter().collect();
    Ok(written)
}

/// Locks the batch's SKU rows in id order, so two transactions on the same
/// SKUs (two consumer groups, a rebalance) queue up instead of deadlocking.
async fn lock_skus(tx: &mut Transaction<'_, MySql>, orders: &[Order]) -> Result<(), sqlx::Error> {
    let skus: BTreeSet<u64> = orders.iter().map(|o| o.sku_id).collect();
    let sql = format!(
        "SELECT id FROM skus WHERE id IN ({}) ORDER BY id FOR UPDATE",
        placeholders(skus.len())
    );
    let mut query = sqlx::query_scalar::<_, u64>(&sql);
    for sku in skus {
        query = query.bind(sku);
    }
    query.fetch_all(&mut **tx).await?;
    Ok(())
}

/// Request ids of the batch already in `failed_orders`: refused by an
/// earlier delivery. They stay refused even if stock was added since.
async fn already_failed(
    tx: &mut Transaction<'_, MySql>,
    orders: &[Order],
) -> Result<HashSet<String>, sqlx::Error> {
    let ids: BTreeSet<&str> = orders.iter().map(|o| o.request_id.as_str()).collect();
    let sql = format!(
        "SELECT CAST(request_id AS CHAR) FROM failed_orders WHERE request_id IN ({})",
        placeholders(ids.len())
    );
    let mut query = sqlx::query_scalar::<_, String>(&sql);
    for id in ids {
        query = query.bind(id);
    }
    Ok(query.fetch_all(&mut **tx).await?.into_iter().collect())
}

/// Inserts the order and takes its units.
///
/// Instead of a savepoint per order (two more round trips for every order),
/// the rare out-of-stock case deletes the row it just inserted: inside the
/// transaction nobody else sees it, and the effect is the same.
async fn place(tx: &mut Transaction<'_, MySql>, order: &Order) -> Result<Placed, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO orders (request_id, user_id, sku_id, quantity) VALUES (?, ?, ?, ?)",
    )
    .bind(&order.request_id)
    .bind(order.user_id)
    .bind(order.sku_id)
    .bind(order.quantity)
    .execute(&mut **tx)
    .await;
    // A failed statement is rolled back on its own; the transaction goes on.
    let id = match inserted {
        Ok(done) => done.last_insert_id(),
        Err(error) => {
            match unique_key(&error) {
                None => return Err(error),
                // The request id is in `orders`: certainly a redelivery.
                Some(UniqueKey::Request) => return Ok(Placed::Duplicate),
                // A redelivered order violates both unique keys, and which
                // one the server reports depends on its internal key order:
                // ask whether this request id is the one already there.
                Some(UniqueKey::UserSku) => {}
            }
            let exists =
                sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM orders WHERE request_id = ?")
                    .bind(&order.request_id)
                    .fetch_one(&mut **tx)
                    .await?;
            return Ok(if exists > 0 {
                Placed::Duplicate
            } else {
                Placed::Refused(REASON_PER_USER_LIMIT)
            });
        }
    };
    let taken = sqlx::query("UPDATE skus SET stock = stock - ? WHERE id = ? AND stock >= ?")
        .bind(order.quantity)
        .bind(order.sku_id)
        .bind(order.quantity)
        .execute(&mut **tx)
        .await?;
    if taken.rows_affected() == 0 {
        sqlx::query("DELETE FROM orders WHERE id = ?")
            .bind(id)
            .execute(&mut **tx)
            .await?;
        return Ok(Placed::Refused(REASON_OUT_OF_STOCK));
    }
    Ok(Placed::Created)
}

/// Records a refused order; `false` when it was recorded before.
async fn record_failure(
    tx: &mut Transaction<'_, MySql>,
    order: &Order,
    reason: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO failed_orders (request_id, user_id, sku_id, quantity, reason) \
         VALUES (?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE request_id = request_id",
    )
    .bind(&order.request_id)
    .bind(order.user_id)
    .bind(order.sku_id)
    .bind(order.quantity)
    .bind(reason)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// The unique keys of `orders`.
#[derive(Debug, PartialEq, Eq)]
enum UniqueKey {
    Request,
    UserSku,
}

/// Which unique key of `orders` `error` violated, if that is what it is.
fn unique_key(error: &sqlx::Error) -> Option<UniqueKey> {
    let sqlx::Error::Database(db) = error else {
        return None;
    };
    if db.kind() != ErrorKind::UniqueViolation {
        return None;
    }
    key_of_message(db.message())
}

/// MariaDB: "Duplicate entry 'x' for key 'uq_orders_request'"; MySQL 8 puts
/// the table in front ('orders.uq_orders_request'). Only the text after the
/// last "for key" is looked at: the entry itself is client data.
fn key_of_message(message: &str) -> Option<UniqueKey> {
    let (_, key) = message.rsplit_once("for key")?;
    if key.contains("uq_orders_request") {
        Some(UniqueKey::Request)
    } else if key.contains("uq_orders_user_sku") {
        Some(UniqueKey::UserSku)
    } else {
        None
    }
}

fn placeholders(n: usize) -> String {
    let mut out = "?,".repeat(n);
    out.pop();
    out
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

/// Measures the consumer lag at most once per [`LAG_EVERY`], on the blocking
/// pool (watermarks are a broker round trip).
struct LagProbe {
    consumer: Arc<StreamConsumer>,
    topic: Arc<str>,
    metrics: Arc<Metrics>,
    last: Option<Instant>,
    task: Option<JoinHandle<()>>,
}

impl LagProbe {
    fn new(consumer: Arc<StreamConsumer>, topic: String, metrics: Arc<Metrics>) -> Self {
        Self {
            consumer,
            topic: topic.into(),
            metrics,
            last: None,
            task: None,
        }
    }

    fn maybe_measure(&mut self) {
        let due = self.last.is_none_or(|last| last.elapsed() >= LAG_EVERY);
        let idle = self.task.as_ref().is_none_or(JoinHandle::is_finished);
        if !(due && idle) {
            return;
        }
        self.last = Some(Instant::now());
        let (consumer, topic, metrics) = (
            Arc::clone(&self.consumer),
            Arc::clone(&self.topic),
            Arc::clone(&self.metrics),
        );
        self.task = Some(tokio::task::spawn_blocking(move || {
            match lag(&consumer, &topic) {
                Ok(lag) => metrics.consumer_lag.set(lag),
                Err(error) => tracing::debug!(%error, "could not measure the consumer lag"),
            }
        }));
    }

    /// Waits for a measurement in progress (it holds the consumer).
    async fn finish(&mut self) {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// High watermark minus position, summed over the assigned partitions of
/// `topic`. A partition with no position yet (nothing consumed since the
/// assignment) counts from its low watermark.
fn lag(consumer: &StreamConsumer, topic: &str) -> Result<i64, KafkaError> {
    let assignment = consumer.assignment()?;
    let position = consumer.position()?;
    let mut total = 0;
    for element in assignment.elements_for_topic(topic) {
        let partition = element.partition();
        let (low, high) = consumer.fetch_watermarks(topic, partition, WATERMARK_TIMEOUT)?;
        let at = position
            .find_partition(topic, partition)
            .and_then(|p| match p.offset() {
                Offset::Offset(at) => Some(at),
                _ => None,
            })
            .unwrap_or(low);
        total += (high - at).max(0);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_keys_from_messages() {
        let mariadb = "Duplicate entry 'r1' for key 'uq_orders_request'";
        let mysql = "Duplicate entry '7-3' for key 'orders.uq_orders_user_sku'";
        let tricky = "Duplicate entry 'uq_orders_user_sku' for key 'uq_orders_request'";
        assert_eq!(key_of_message(mariadb), Some(UniqueKey::Request));
        assert_eq!(key_of_message(mysql), Some(UniqueKey::UserSku));
        assert_eq!(key_of_message(tricky), Some(UniqueKey::Request));
        assert_eq!(
            key_of_message("Duplicate entry '1' for key 'PRIMARY'"),
            None
        );
    }

    #[test]
    fn storable_orders() {
        let order = |request_id: &str, quantity| Order {
            request_id: request_id.into(),
            user_id: 1,
            sku_id: 1,
            quantity,
        };
        assert!(storable(&order("a-1", 1)));
        assert!(!storable(&order("", 1)));
        assert!(!storable(&order("a b", 1)));
        assert!(!storable(&order(&"x".repeat(65), 1)));
        assert!(storable(&order(&"x".repeat(64), 1)));
        assert!(!storable(&order("a", 0)));
        assert_eq!(placeholders(3), "?,?,?");
    }
}
