//! The reconciler: Redis deduction log vs MySQL orders. A deduction older
//! than the grace period with no order (and no refund) is republished;
//! the consumer's unique key makes a republish of an existing order a no-op.
//!
//! Each pass walks every SKU's deduction log from a per-SKU cursor, a page
//! at a time. A deduction entry is *resolved* when MySQL has decided its
//! request (a row in `orders` or `failed_orders`) or Redis refunded it. An
//! unresolved entry older than the grace period is republished to Kafka, and
//! stays unresolved until the consumer has written it: the cursor only moves
//! over the resolved prefix of the log, so a republish that got lost is
//! retried by a later pass (once [`REPUBLISH_AGAIN_AFTER`] or the grace
//! period, whichever is longer, has passed: a consumer that is merely behind
//! is not sent a copy on every pass). The walk of a SKU stops at the first
//! entry younger than the grace period.
//!
//! The reconciler never writes MySQL: the only way to an order is through
//! the consumer, whose unique request-id key turns a second delivery into a
//! no-op, so a republish can never create a second order.
//!
//! Clocks: a log entry's time is the Redis server's clock, and its age is
//! measured with this process's clock. They are the same machine's clock
//! here; across machines, pick a grace period well above their skew (a
//! skew only republishes early, which is harmless, or late).
//!
//! Cursors live in memory: a restarted reconciler walks the logs from the
//! start once, checking (not republishing) what is resolved.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;
use seckill::stock_lua::{Error as StockError, LogEntry, LogKind};
use tokio_util::sync::CancellationToken;

use crate::domain::order::Order;
use crate::domain::request_id::RequestId;
use crate::kafka::producer;
use crate::metrics::Metrics;
use crate::redis::stock::RedisStock;
use crate::store::Store;

/// Log entries read per Redis call (and request ids per MySQL query).
pub const PAGE: usize = 500;

/// Most unresolved deductions one pass looks at per SKU: behind a consumer
/// that is far behind, the rest wait for later passes instead of costing a
/// Redis read each on every pass.
pub const MAX_UNRESOLVED_PER_PASS: usize = 5 * PAGE;

/// Least time between two republishes of one deduction (or the grace period,
/// when longer): a consumer that is merely behind is not flooded with copies.
pub const REPUBLISH_AGAIN_AFTER: Duration = Duration::from_secs(5);

/// Compares the deduction logs with MySQL and republishes what is missing.
pub struct Reconciler {
    store: Store,
    stock: RedisStock,
    producer: FutureProducer,
    topic: String,
    grace: Duration,
    metrics: Arc<Metrics>,
    /// Per SKU, the id of the last entry of the resolved prefix of its log.
    cursors: HashMap<u64, String>,
    /// Request ids republished and not yet resolved, with when.
    republished: HashMap<String, Instant>,
}

/// What one pass found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    /// Deductions checked.
    pub checked: u64,
    /// Deductions republished.
    pub republished: u64,
}

/// Why a pass failed.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// MySQL failed.
    #[error("MySQL: {0}")]
    Db(#[from] sqlx::Error),
    /// Redis failed (reading a log or a request record).
    #[error("Redis: {0}")]
    Stock(#[from] StockError),
    /// Kafka did not take a republished batch; the next pass tries again.
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
}

/// What became of one log entry in this pass.
enum Verdict {
    /// Decided in MySQL, refunded, or not a deduction: nothing to do.
    Resolved,
    /// Past the grace period and undecided: republish it.
    Republish(Order),
}

impl Reconciler {
    /// A reconciler that republishes deductions older than `grace`.
    pub fn new(
        store: Store,
        stock: RedisStock,
        producer: FutureProducer,
        topic: String,
        grace: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            store,
            stock,
            producer,
            topic,
            grace,
            metrics,
            cursors: HashMap::new(),
            republished: HashMap::new(),
        }
    }

    /// One pass over every SKU's log.
    ///
    /// # Errors
    ///
    /// MySQL, Redis or Kafka failed; the next pass starts over.
    ///
    /// # Cancel safety
    ///
    /// Safe to drop: a cursor only moves over entries already resolved, so
    /// an interrupted pass is redone by the next one.
    pub async fn pass(&mut self) -> Result<PassReport, ReconcileError> {
        let mut report = PassReport::default();
        for sku in self.store.sku_ids().await? {
            self.pass_sku(sku, &mut report).await?;
        }
        // Forget republishes long past (their log entries were trimmed).
        let forget = self.again_after() * 100;
        self.republished.retain(|_, at| at.elapsed() < forget);
        Ok(report)
    }

    /// Walks one SKU's log from its cursor up to the first entry younger
    /// than the grace period.
    async fn pass_sku(&mut self, sku: u64, report: &mut PassReport) -> Result<(), ReconcileError> {
        let mut cursor = self.cursors.get(&sku).cloned();
        // Where reading goes on; ahead of `cursor` once an entry is unresolved.
        let mut read_after = cursor.clone();
        let mut prefix_resolved = true;
        let mut unresolved = 0;
        let grace_ms = u64::try_from(self.grace.as_millis()).unwrap_or(u64::MAX);
        loop {
            let page = self.stock.log(sku, read_after.as_deref(), PAGE).await?;
            let now_ms = now_ms();
            // The entries past the grace period (the log is in time order).
            let ripe = page
                .iter()
                .take_while(|e| now_ms.saturating_sub(e.time_ms) >= grace_ms)
                .count();
            let verdicts = self.judge(sku, &page[..ripe]).await?;
            let mut republish = Vec::new();
            for (entry, verdict) in page[..ripe].iter().zip(verdicts) {
                if entry.kind == LogKind::Deduction {
                    report.checked += 1;
                }
                match verdict {
                    Verdict::Resolved => {
                        if prefix_resolved {
                            cursor = Some(entry.id.clone());
                        }
                        if !self.republished.is_empty() {
                            self.republished.remove(&entry.request_id);
                        }
                    }
                    Verdict::Republish(order) => {
                        prefix_resolved = false;
                        unresolved += 1;
                        let recent = self
                            .republished
                            .get(order.request_id.as_str())
                            .is_some_and(|at| at.elapsed() < self.again_after());
                        if !recent {
                            republish.push(order);
                        }
                    }
                }
            }
            if !republish.is_empty() {
                let result = producer::publish(&self.producer, &self.topic, &republish).await;
                // Keep what was resolved, even when Kafka failed.
                self.save_cursor(sku, &cursor);
                result?;
                let at = Instant::now();
                for order in &republish {
                    self.republished.insert(order.request_id.to_string(), at);
                }
                let n = republish.len() as u64;
                report.republished += n;
                self.metrics.reconciler_republished.inc_by(n);
                tracing::info!(sku, orders = n, "republished deductions with no order");
            }
            if ripe < page.len() || page.len() < PAGE || unresolved >= MAX_UNRESOLVED_PER_PASS {
                break;
            }
            read_after = page.last().map(|e| e.id.clone());
        }
        self.save_cursor(sku, &cursor);
        Ok(())
    }

    fn again_after(&self) -> Duration {
        self.grace.max(REPUBLISH_AGAIN_AFTER)
    }

    fn save_cursor(&mut self, sku: u64, cursor: &Option<String>) {
        if let Some(cursor) = cursor {
            self.cursors.insert(sku, cursor.clone());
        }
    }

    /// One verdict per entry: one MySQL query for the page, then Redis for
    /// the deductions MySQL does not know.
    async fn judge(&self, sku: u64, entries: &[LogEntry]) -> Result<Vec<Verdict>, ReconcileError> {
        let ids: Vec<&str> = entries
            .iter()
            .filter(|e| e.kind == LogKind::Deduction)
            .map(|e| e.request_id.as_str())
            .collect();
        let decided = self.store.decided_requests(&ids).await?;
        let mut verdicts = Vec::with_capacity(entries.len());
        for entry in entries {
            let verdict = if self.resolved(entry, &decided).await? {
                Verdict::Resolved
            } else if let Some(order) = order_of(sku, entry) {
                Verdict::Republish(order)
            } else {
                // No order the consumer could store: retrying cannot help.
                tracing::error!(sku, entry = ?entry, "a deduction log entry cannot be made into an order; skipping it");
                Verdict::Resolved
            };
            verdicts.push(verdict);
        }
        Ok(verdicts)
    }

    /// Whether nothing is left to do for `entry`: not a deduction, decided in
    /// MySQL (`decided`), or refunded in Redis.
    async fn resolved(
        &self,
        entry: &LogEntry,
        decided: &HashSet<String>,
    ) -> Result<bool, ReconcileError> {
        if entry.kind != LogKind::Deduction || decided.contains(&entry.request_id) {
            return Ok(true);
        }
        Ok(self.stock.refunded(&entry.request_id).await?)
    }

    /// Passes every `every` until `shutdown`.
    pub async fn run(mut self, every: Duration, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                result = self.pass() => {
                    if let Err(e) = result {
                        tracing::warn!(error = %e, "reconciler pass failed");
                    }
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }
}

/// The order a deduction entry stands for; `None` when the entry does not
/// hold one this app could have written.
fn order_of(sku: u64, entry: &LogEntry) -> Option<Order> {
    // Anything else the consumer would skip as malformed: republishing cannot help.
    let order = Order {
        request_id: RequestId::parse(entry.request_id.as_str()).ok()?,
        user_id: entry.user_id.parse().ok()?,
        sku_id: sku,
        quantity: u32::try_from(entry.quantity).ok().filter(|q| *q >= 1)?,
    };
    Some(order)
}

/// This machine's clock, in milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(user_id: &str, quantity: u64) -> LogEntry {
        LogEntry {
            id: "1-0".into(),
            time_ms: 1,
            request_id: "r".into(),
            user_id: user_id.into(),
            quantity,
            kind: LogKind::Deduction,
        }
    }

    #[test]
    fn orders_from_entries() {
        assert_eq!(
            order_of(7, &entry("42", 2)),
            Some(Order {
                request_id: RequestId::parse("r").unwrap(),
                user_id: 42,
                sku_id: 7,
                quantity: 2,
            })
        );
        assert_eq!(order_of(7, &entry("bob", 1)), None);
        assert_eq!(order_of(7, &entry("42", 0)), None);
        assert_eq!(order_of(7, &entry("1", u64::from(u32::MAX) + 1)), None);
    }
}
