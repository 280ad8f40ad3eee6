//! One pass: every SKU's deduction log, from its cursor, a page at a time.
//!
//! Per page: judge the entries past the grace period ([`Verdict`]), act
//! (refund refusals left unrefunded, complete the deductions due for it
//! straight in MySQL, republish the others that are due), then move the
//! cursor over the resolved prefix. After the walk, trim the log up to the
//! cursor. See the [module docs](super) for why each step is safe.

use crate::recovery::StockRebuild;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::producer::FutureProducer;
use seckill::stock_lua::{LogEntry, LogKind};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::direct::RETRY;
use super::settle::refund_refused;
use super::{
    MAX_UNRESOLVED_PER_PASS, PAGE, PassReport, REPUBLISH_AGAIN_AFTER, REPUBLISH_WAIT,
    ReconcileError, ReconcileSettings,
};
use crate::domain::order::Order;
use crate::domain::request_id::RequestId;
use crate::kafka::producer;
use crate::metrics::Metrics;
use crate::redis::stock::RedisStock;
use crate::store::Store;
use crate::store::lease::Fence;

/// The state of the passes: cursors, trim points, republish times.
pub(super) struct Walker {
    pub(super) store: Store,
    pub(super) stock: RedisStock,
    producer: FutureProducer,
    topic: String,
    grace: Duration,
    direct_after: Duration,
    pub(super) metrics: Arc<Metrics>,
    /// Per SKU and stock bucket (each bucket has its own log), the id of
    /// the last entry of the resolved prefix of that log.
    cursors: HashMap<(u64, usize), String>,
    /// Per SKU and bucket, the cursor the log was last trimmed up to.
    trimmed: HashMap<(u64, usize), String>,
    /// Request ids due for a republish and not yet resolved.
    pub(super) republished: HashMap<String, Republished>,
    /// The stock rebuild after a Redis data loss, and the calibration.
    pub(super) recovery: Option<StockRebuild>,
}

/// When a deduction was due for a republish.
#[derive(Debug, Clone, Copy)]
pub(super) struct Republished {
    /// The first time (sent or not: Kafka may have been down); direct
    /// completion counts from here.
    first: Instant,
    /// The last time it was actually sent to Kafka (delivered or not).
    last: Option<Instant>,
}

/// What became of one log entry in this pass.
enum Verdict {
    /// Nothing to do: an order in MySQL, a refusal refunded in Redis, a
    /// refunded grant, a refund entry, or an entry no order can come of.
    Resolved,
    /// Refused in MySQL but not refunded in Redis (a crash or a shutdown
    /// between the commit and the refund): refund it.
    Unrefunded(RequestId),
    /// Past the grace period and undecided: republish or complete it.
    Pending(Order),
}

/// What to do with a pending deduction now.
enum Due {
    /// Write it to MySQL ourselves.
    Direct,
    /// Send it to Kafka (again).
    Republish,
    /// Sent recently: give the consumer time.
    Wait,
}

/// Whether Kafka took the republishes of this pass so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kafka {
    Up,
    /// A republish failed: the rest of the pass sends nothing (each send
    /// would wait for its timeout) and only notes what was due.
    Down,
}

impl Walker {
    pub(super) fn new(
        store: Store,
        stock: RedisStock,
        producer: FutureProducer,
        topic: String,
        settings: &ReconcileSettings,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            store,
            stock,
            producer,
            topic,
            grace: settings.grace,
            direct_after: settings.direct_after,
            metrics,
            cursors: HashMap::new(),
            trimmed: HashMap::new(),
            republished: HashMap::new(),
            recovery: None,
        }
    }

    /// One pass over every SKU's log, its MySQL writes fenced by `fence`.
    /// At `stop` it ends at the next page boundary (refunds in progress
    /// give up at the next Redis failure).
    ///
    /// # Errors
    ///
    /// MySQL or Redis failed, the lease was lost, or `stop` came during the
    /// refunds; the next pass starts over from the cursors.
    ///
    /// # Cancel safety
    ///
    /// Safe to drop: a cursor only moves over entries already resolved,
    /// and every write is idempotent, so an interrupted pass is redone by
    /// the next one.
    pub(super) async fn pass(
        &mut self,
        fence: &Fence,
        stop: &CancellationToken,
    ) -> Result<PassReport, ReconcileError> {
        let skus = self.store.sku_ids().await?;
        self.rebuild_missing_stock(&skus).await?;
        let mut report = PassReport::default();
        let mut kafka = Kafka::Up;
        let logs = skus
            .iter()
            .flat_map(|&sku| (0..self.stock.buckets()).map(move |bucket| (sku, bucket)));
        for log in logs.collect::<Vec<_>>() {
            if stop.is_cancelled() {
                break;
            }
            let mut cursor = self.cursors.get(&log).cloned();
            let walked = self
                .walk_sku(log, fence, stop, &mut cursor, &mut report, &mut kafka)
                .await;
            // Keep what was resolved, also when the walk failed.
            if let Some(cursor) = cursor {
                self.cursors.insert(log, cursor);
            }
            walked?;
            self.trim(log, &mut report).await?;
        }
        // Forget deductions not seen for long (their SKU is gone).
        let forget = self.again_after().max(self.direct_after) * 100;
        self.republished.retain(|_, r| r.first.elapsed() < forget);
        Ok(report)
    }

    /// Rebuilds, from MySQL, the Redis stock of the SKUs whose stock key
    /// is missing (Redis lost it), before their logs are walked, and
    /// calibrates Redis against MySQL when due (see [`crate::recovery`]).
    /// Runs only under the lease, like the rest of the pass.
    async fn rebuild_missing_stock(&mut self, skus: &[u64]) -> Result<(), ReconcileError> {
        let Some(recovery) = self.recovery.as_mut() else {
            return Ok(());
        };
        recovery.pass(skus).await?;
        recovery.calibrate_if_due().await;
        Ok(())
    }

    /// Walks one SKU's log in one bucket from `cursor` up to the first
    /// entry younger than the grace period (or [`MAX_UNRESOLVED_PER_PASS`]),
    /// moving `cursor` over the resolved prefix.
    async fn walk_sku(
        &mut self,
        (sku, bucket): (u64, usize),
        fence: &Fence,
        stop: &CancellationToken,
        cursor: &mut Option<String>,
        report: &mut PassReport,
        kafka: &mut Kafka,
    ) -> Result<(), ReconcileError> {
        // Where reading goes on; ahead of `cursor` once an entry is unresolved.
        let mut read_after = cursor.clone();
        let mut prefix_resolved = true;
        let mut unresolved = 0;
        let grace_ms = u64::try_from(self.grace.as_millis()).unwrap_or(u64::MAX);
        loop {
            // Shutdown: stop at a page boundary, with nothing half done.
            if stop.is_cancelled() {
                return Ok(());
            }
            let page = self
                .stock
                .log(sku, bucket, read_after.as_deref(), PAGE)
                .await?;
            let now_ms = now_ms();
            // The entries past the grace period (the log is in time order).
            let ripe = page
                .iter()
                .take_while(|e| now_ms.saturating_sub(e.time_ms) >= grace_ms)
                .count();
            let entries = &page[..ripe];
            let verdicts = self.judge(sku, entries).await?;
            let settled = self.act(sku, &verdicts, fence, stop, report, kafka).await?;
            for (entry, verdict) in entries.iter().zip(&verdicts) {
                if entry.kind == LogKind::Deduction {
                    report.checked += 1;
                }
                let resolved = match verdict {
                    Verdict::Resolved => true,
                    Verdict::Unrefunded(id) => settled.contains(id.as_str()),
                    Verdict::Pending(order) => settled.contains(order.request_id.as_str()),
                };
                if resolved {
                    if prefix_resolved {
                        *cursor = Some(entry.id.clone());
                    }
                    if !self.republished.is_empty() {
                        self.republished.remove(&entry.request_id);
                    }
                } else {
                    prefix_resolved = false;
                    unresolved += 1;
                }
            }
            if ripe < page.len() || page.len() < PAGE || unresolved >= MAX_UNRESOLVED_PER_PASS {
                return Ok(());
            }
            read_after = page.last().map(|e| e.id.clone());
        }
    }

    /// Acts on a page's verdicts; the request ids resolved by it.
    async fn act(
        &mut self,
        sku: u64,
        verdicts: &[Verdict],
        fence: &Fence,
        stop: &CancellationToken,
        report: &mut PassReport,
        kafka: &mut Kafka,
    ) -> Result<HashSet<String>, ReconcileError> {
        let mut settled = HashSet::new();
        let unrefunded: Vec<RequestId> = verdicts
            .iter()
            .filter_map(|v| match v {
                Verdict::Unrefunded(id) => Some(id.clone()),
                _ => None,
            })
            .collect();
        if !unrefunded.is_empty() {
            tracing::warn!(
                sku,
                refunds = unrefunded.len(),
                "orders refused in MySQL were not refunded in Redis; refunding them"
            );
            if !refund_refused(&self.stock, &unrefunded, RETRY, stop).await {
                return Err(ReconcileError::Stopped);
            }
            settled.extend(unrefunded.iter().map(ToString::to_string));
        }
        let mut direct = Vec::new();
        let mut republish = Vec::new();
        for verdict in verdicts {
            if let Verdict::Pending(order) = verdict {
                match self.due(order) {
                    Due::Direct => direct.push(order.clone()),
                    Due::Republish => republish.push(order.clone()),
                    Due::Wait => {}
                }
            }
        }
        if !direct.is_empty() {
            self.complete(sku, &direct, fence, stop, report).await?;
            settled.extend(direct.iter().map(|o| o.request_id.to_string()));
        }
        if !republish.is_empty() {
            self.republish(sku, &republish, report, kafka).await;
        }
        Ok(settled)
    }

    /// Whether a pending deduction goes straight to MySQL, to Kafka, or waits.
    fn due(&self, order: &Order) -> Due {
        if self.direct_after.is_zero() {
            return Due::Direct;
        }
        match self.republished.get(order.request_id.as_str()) {
            Some(r) if r.first.elapsed() >= self.direct_after => Due::Direct,
            Some(r) if r.last.is_some_and(|at| at.elapsed() < self.again_after()) => Due::Wait,
            _ => Due::Republish,
        }
    }

    /// Sends `orders` to Kafka (unless Kafka failed earlier in the pass),
    /// waiting at most [`REPUBLISH_WAIT`]; notes when each was due.
    async fn republish(
        &mut self,
        sku: u64,
        orders: &[Order],
        report: &mut PassReport,
        kafka: &mut Kafka,
    ) {
        let now = Instant::now();
        let send = *kafka == Kafka::Up;
        for order in orders {
            let due = self
                .republished
                .entry(order.request_id.to_string())
                .or_insert(Republished {
                    first: now,
                    last: None,
                });
            if send {
                due.last = Some(now);
            }
        }
        let n = orders.len() as u64;
        if !send {
            report.unpublished += n;
            return;
        }
        let sent = tokio::time::timeout(
            REPUBLISH_WAIT,
            producer::publish(&self.producer, &self.topic, orders),
        )
        .await;
        match sent {
            Ok(Ok(())) => {
                report.republished += n;
                self.metrics.reconciler_republished.inc_by(n);
                tracing::info!(sku, orders = n, "republished deductions with no order");
            }
            Ok(Err(error)) => {
                *kafka = Kafka::Down;
                report.unpublished += n;
                tracing::warn!(%error, sku, orders = n, "Kafka did not take republished deductions");
            }
            Err(_elapsed) => {
                *kafka = Kafka::Down;
                report.unpublished += n;
                tracing::warn!(sku, orders = n, wait = ?REPUBLISH_WAIT, "Kafka did not acknowledge republished deductions in time");
            }
        }
    }

    fn again_after(&self) -> Duration {
        self.grace.max(REPUBLISH_AGAIN_AFTER)
    }

    /// Trims one SKU's log in one bucket up to and including its cursor,
    /// once per cursor.
    async fn trim(
        &mut self,
        (sku, bucket): (u64, usize),
        report: &mut PassReport,
    ) -> Result<(), ReconcileError> {
        let Some(cursor) = self.cursors.get(&(sku, bucket)) else {
            return Ok(());
        };
        if self.trimmed.get(&(sku, bucket)) == Some(cursor) {
            return Ok(());
        }
        let cursor = cursor.clone();
        // `trim_log` keeps ids at or above its bound: the next possible id
        // after the cursor drops the cursor's entry too.
        let before = next_id(&cursor).unwrap_or_else(|| cursor.clone());
        let n = self.stock.trim_log(sku, bucket, &before).await?;
        self.trimmed.insert((sku, bucket), cursor);
        report.trimmed += n;
        self.metrics.reconciler_trimmed.inc_by(n);
        if n > 0 {
            tracing::debug!(
                sku,
                entries = n,
                "trimmed the resolved prefix of the deduction log"
            );
        }
        Ok(())
    }

    /// One verdict per entry: MySQL for the page (decided, then which of
    /// those were refused), then Redis for the refusals (refunded yet?)
    /// and for the deductions MySQL does not know (refunded?).
    async fn judge(&self, sku: u64, entries: &[LogEntry]) -> Result<Vec<Verdict>, ReconcileError> {
        let ids: Vec<&str> = entries
            .iter()
            .filter(|e| e.kind == LogKind::Deduction)
            .map(|e| e.request_id.as_str())
            .collect();
        let decided = self.store.decided_requests(&ids).await?;
        let decided_ids: Vec<&str> = ids
            .iter()
            .copied()
            .filter(|id| decided.contains(*id))
            .collect();
        let refused = self.store.refused_requests(&decided_ids).await?;
        let mut verdicts = Vec::with_capacity(entries.len());
        for entry in entries {
            let id = entry.request_id.as_str();
            let verdict = if entry.kind != LogKind::Deduction {
                Verdict::Resolved
            } else if decided.contains(id) {
                if refused.contains(id) && !self.stock.refunded(id).await? {
                    // Ids in MySQL were parsed before they were written.
                    RequestId::parse(id).map_or(Verdict::Resolved, Verdict::Unrefunded)
                } else {
                    Verdict::Resolved
                }
            } else if self.stock.refunded(id).await? {
                Verdict::Resolved
            } else if let Some(order) = order_of(sku, entry) {
                Verdict::Pending(order)
            } else {
                // No order the consumer could store: retrying cannot help.
                tracing::error!(sku, entry = ?entry, "a deduction log entry cannot be made into an order; skipping it");
                Verdict::Resolved
            };
            verdicts.push(verdict);
        }
        Ok(verdicts)
    }
}

/// The order a deduction entry stands for; `None` when the entry does not
/// hold one this app could have written.
pub(super) fn order_of(sku: u64, entry: &LogEntry) -> Option<Order> {
    // Anything else the consumer would skip as malformed: republishing cannot help.
    let order = Order {
        request_id: RequestId::parse(entry.request_id.as_str()).ok()?,
        user_id: entry.user_id.parse().ok()?,
        sku_id: sku,
        quantity: u32::try_from(entry.quantity).ok().filter(|q| *q >= 1)?,
    };
    Some(order)
}

/// The smallest stream entry id after `id` (`<ms>-<seq>`); `None` when
/// `id` is not one.
pub(super) fn next_id(id: &str) -> Option<String> {
    let (ms, seq) = id.split_once('-')?;
    let ms: u64 = ms.parse().ok()?;
    let seq: u64 = seq.parse().ok()?;
    Some(match seq.checked_add(1) {
        Some(seq) => format!("{ms}-{seq}"),
        None => format!("{}-0", ms.checked_add(1)?),
    })
}

/// This machine's clock, in milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
