//! The reconciler: Redis deduction log vs MySQL orders, one per sale.
//!
//! # One reconciler per sale: the lease
//!
//! Every instance runs a reconciler, but only the holder of the sale's
//! lease (a row of `leases` named by the namespace, see
//! [`crate::store::lease`]) runs passes. The [`lease`] keeper acquires it,
//! renews it every third of `--reconcile-lease-ms` (beside the passes, not
//! between them), counts it lost when a renewal did not succeed in time,
//! and releases it at a clean stop, so another instance takes over at its
//! next attempt (a third of the lease) instead of after the expiry. A
//! killed holder's lease expires and the next holder gets a larger fencing
//! token. A pass runs only while the keeper says the lease is held and is
//! dropped as soon as it is not; its MySQL writes are fenced by the token
//! anyway.
//!
//! # A pass
//!
//! Each pass walks every SKU's deduction log from a per-SKU cursor, a page
//! at a time ([`walk`]). A deduction entry is *resolved* when MySQL has
//! decided its request and, if MySQL refused it, Redis refunded it, or when
//! Redis refunded it. Past the grace period, an unresolved entry is:
//!
//! 1. republished to Kafka, the consumer's unique request-id key making a
//!    copy of an existing order a no-op; again after
//!    [`REPUBLISH_AGAIN_AFTER`] (or the grace period, whichever is longer)
//!    while unresolved, so a consumer merely behind is not flooded;
//! 2. written straight to MySQL ([`direct`]) once `--reconcile-direct-after-ms`
//!    has passed since it was first due for a republish (at once when that
//!    is 0): the consumer's own idempotent transaction, fenced by the lease,
//!    then the refunds of what MySQL refused ([`settle`], shared with the
//!    consumer). So an order answered `queued` reaches MySQL while Kafka is
//!    down or the consumer is stuck.
//!
//! A refusal found in MySQL but not refunded in Redis (a crash between the
//! commit and the refund) is refunded. The cursor only moves over the
//! resolved prefix of the log, so anything left unresolved is seen again by
//! the next pass. The walk of a SKU stops at the first entry younger than
//! the grace period, or after [`MAX_UNRESOLVED_PER_PASS`] unresolved ones.
//! Once its cursor has moved, the log is trimmed up to and including the
//! cursor.
//!
//! # The trim keeps "every grant" exact
//!
//! Invariant: **every entry trimmed is durable**. The cursor moves over
//! resolved entries only, and a resolved deduction is in MySQL (`orders`,
//! or `failed_orders` and refunded: a refund only ever follows a refusal
//! MySQL committed), or is a refund entry, or holds no order this app could
//! write. MySQL rows are never deleted. So a reader that takes every grant
//! of a SKU as (log entries still present) ∪ (its `orders` and
//! `failed_orders` rows), reading the log **first** and MySQL second (see
//! `grants.rs`), misses none: an entry trimmed before its log read was in
//! MySQL before that read, hence in the MySQL read after it; one not
//! trimmed is in the log read. (Read the other way round, an entry trimmed
//! between the two reads would be in neither.) The only grants that leave
//! the union are those refunded in Redis with no MySQL row, which this app
//! never makes: those units were given back. Trimming needs no fencing:
//! whoever trims, only durable entries go.
//!
//! # How late an order can be
//!
//! Let T be the longest time between two visits of one SKU's log by
//! consecutive passes: `--reconcile-every-ms` plus the duration of a pass
//! (at most twice that in the worst interleaving). While one reconciler
//! holds the lease and MySQL and Redis answer, a request answered `queued`
//! is in MySQL (an order, or a refusal refunded in Redis) at most
//!
//! - **grace + T** after its deduction when direct_after is 0;
//! - **grace + direct_after + 2T** otherwise: its first republish comes at
//!   the first visit past the grace period, its direct write at the first
//!   visit at least direct_after after that;
//! - after a takeover, add up to **4/3 × lease** (the dead holder's lease
//!   runs out at most a lease after its last renewal, the next holder
//!   tries every third of a lease) plus one more T: the new holder keeps no
//!   memory of first republishes and starts those clocks again. A clean
//!   stop releases the lease: at most a third of a lease then.
//!
//! A backlog above [`MAX_UNRESOLVED_PER_PASS`] unresolved deductions per SKU
//! (Kafka delivering, slowly) is worked through over several passes; a
//! republish waits at most [`REPUBLISH_WAIT`] for Kafka, and once one fails
//! the rest of the pass republishes nothing (each would wait as long).
//!
//! # Clocks
//!
//! A log entry's time is the Redis server's clock, and its age is measured
//! with this process's clock. They are the same machine's clock here;
//! across machines, pick a grace period well above their skew (a skew only
//! republishes or completes early, which is harmless, or late). The lease
//! lives on MySQL's clock only ([`crate::store::lease`]); this process
//! counts it held until a lease after it *sent* the last successful
//! renewal, which is never later than MySQL's expiry.
//!
//! Cursors and republish times live in memory: a new holder walks the logs
//! from the start once, checking (not republishing) what is resolved, and
//! trims them.

mod direct;
mod lease;
pub mod settle;
mod walk;

use crate::recovery::StockRebuild;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::producer::FutureProducer;
use seckill::stock_lua::Error as StockError;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use self::lease::{Keeper, Lease};
use self::walk::Walker;
use crate::config::SaleSettings;
use crate::metrics::Metrics;
use crate::redis::stock::RedisStock;
use crate::store::Store;
use crate::store::lease::FencedError;

/// Log entries read per Redis call (and request ids per MySQL query).
pub const PAGE: usize = 500;

/// Most unresolved deductions one pass looks at per SKU: behind a consumer
/// that is far behind, the rest wait for later passes instead of costing a
/// Redis read each on every pass.
pub const MAX_UNRESOLVED_PER_PASS: usize = 5 * PAGE;

/// Least time between two republishes of one deduction (or the grace period,
/// when longer): a consumer that is merely behind is not flooded with copies.
pub const REPUBLISH_AGAIN_AFTER: Duration = Duration::from_secs(5);

/// Longest wait for Kafka to acknowledge one republish; past it the pass
/// goes on (the copy may still arrive, which is harmless).
pub const REPUBLISH_WAIT: Duration = Duration::from_secs(3);

/// Longest wait at shutdown for the pass in progress to reach a page
/// boundary (it writes nothing more after it); past it the pass is dropped,
/// which is safe too (see [`Reconciler::run`]).
pub const STOP_WAIT: Duration = Duration::from_secs(5);

/// The reconciler's timings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileSettings {
    /// Age of a deduction with no order before anything is done about it.
    pub grace: Duration,
    /// Pause between two passes.
    pub every: Duration,
    /// Time after its first republish before a deduction still not in
    /// MySQL is written there directly (0: at once, no republish).
    pub direct_after: Duration,
    /// Lifetime of the lease; renewed every third of it.
    pub lease: Duration,
}

impl From<&SaleSettings> for ReconcileSettings {
    fn from(sale: &SaleSettings) -> Self {
        Self {
            grace: Duration::from_millis(sale.reconcile_grace_ms),
            every: Duration::from_millis(sale.reconcile_every_ms),
            direct_after: Duration::from_millis(sale.reconcile_direct_after_ms),
            lease: Duration::from_millis(sale.reconcile_lease_ms),
        }
    }
}

/// Compares the deduction logs with MySQL, republishes or writes what is
/// missing, and trims what is durable, while it holds the sale's lease.
pub struct Reconciler {
    walker: Walker,
    lease: Lease,
    every: Duration,
    metrics: Arc<Metrics>,
}

/// What one pass found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    /// Deductions checked.
    pub checked: u64,
    /// Deductions republished (Kafka acknowledged them).
    pub republished: u64,
    /// Deductions due for a republish that Kafka did not take, or that were
    /// not sent because a republish had failed earlier in the pass.
    pub unpublished: u64,
    /// Deductions written to MySQL by the reconciler (new orders and new
    /// refusals; ones the consumer decided first are not counted).
    pub direct: u64,
    /// Log entries trimmed.
    pub trimmed: u64,
}

/// Why a pass failed.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// MySQL failed.
    #[error("MySQL: {0}")]
    Db(#[from] sqlx::Error),
    /// Redis failed (reading a log or a request record, trimming).
    #[error("Redis: {0}")]
    Stock(#[from] StockError),
    /// The lease was lost: a direct write was refused and wrote nothing.
    #[error("{0}")]
    LeaseLost(#[source] FencedError),
    /// Another reconciler holds the lease: no pass.
    #[error("another reconciler holds the lease {name:?}")]
    NotHolder {
        /// The lease.
        name: String,
    },
    /// Shutdown came before every refund of the pass was done (the next
    /// holder refunds the rest: they are refusals not refunded).
    #[error("stopped before every refund was done")]
    Stopped,
    /// Rebuilding a SKU's stock after a Redis data loss failed (it stays
    /// paused; the next pass tries again).
    #[error("stock rebuild: {0}")]
    Rebuild(#[from] crate::recovery::RebuildError),
}

impl From<FencedError> for ReconcileError {
    fn from(error: FencedError) -> Self {
        match error {
            FencedError::Db(error) => Self::Db(error),
            lost @ FencedError::LeaseLost { .. } => Self::LeaseLost(lost),
        }
    }
}

impl Reconciler {
    /// A reconciler of the sale in `namespace` (the lease's name).
    pub fn new(
        store: Store,
        stock: RedisStock,
        producer: FutureProducer,
        topic: String,
        namespace: &str,
        settings: ReconcileSettings,
        metrics: Arc<Metrics>,
    ) -> Self {
        let lease = Lease::new(store.clone(), namespace, settings.lease);
        let walker = Walker::new(
            store,
            stock,
            producer,
            topic,
            &settings,
            Arc::clone(&metrics),
        );
        Self {
            walker,
            lease,
            every: settings.every,
            metrics,
        }
    }

    /// Also rebuilds SKUs whose Redis stock is gone and calibrates Redis
    /// against MySQL, each pass (see [`crate::recovery`]).
    pub fn with_recovery(mut self, recovery: StockRebuild) -> Self {
        self.walker.recovery = Some(recovery);
        self
    }

    /// This reconciler's lease holder id (unique per process).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn holder(&self) -> &str {
        self.lease.holder()
    }

    /// Acquires (or renews) the lease once and, when held, runs one pass
    /// fenced by it; [`run`](Self::run) is the long-running form.
    ///
    /// # Errors
    ///
    /// [`ReconcileError::NotHolder`] when another reconciler holds the
    /// lease; otherwise as a pass (see [`ReconcileError`]).
    ///
    /// # Cancel safety
    ///
    /// Safe to drop: cursors only move over resolved entries and every
    /// write is idempotent.
    #[cfg_attr(not(test), allow(dead_code))]
    pub async fn pass(&mut self) -> Result<PassReport, ReconcileError> {
        let held = self.lease.acquire().await?;
        self.metrics.reconciler_lease.set(i64::from(held.is_some()));
        let Some(token) = held else {
            return Err(ReconcileError::NotHolder {
                name: self.lease.name().to_owned(),
            });
        };
        let fence = self.lease.fence(token);
        self.walker.pass(&fence, &CancellationToken::new()).await
    }

    /// Gives the lease up now if held (`false` when it was not ours).
    ///
    /// # Errors
    ///
    /// MySQL failed.
    #[cfg_attr(not(test), allow(dead_code))]
    pub async fn release(&self) -> Result<bool, ReconcileError> {
        self.metrics.reconciler_lease.set(0);
        Ok(self.lease.release().await?)
    }

    /// Keeps the lease and passes while holding it, pausing `every`
    /// between passes, until `shutdown`; then releases the lease.
    ///
    /// # Cancel safety
    ///
    /// Cancel `shutdown` for a clean stop: the pass in progress ends at its
    /// next page boundary (within [`STOP_WAIT`], or it is dropped), then the
    /// lease is released. Dropping the future instead is a crash: the pass
    /// in progress stops where it is (it is redone: cursors only move over
    /// resolved entries, every write is idempotent), the lease is not
    /// released and passes to another instance when it expires.
    pub async fn run(self, shutdown: CancellationToken) {
        let Self {
            mut walker,
            lease,
            every,
            metrics,
        } = self;
        let (keeper, held) = Keeper::new(lease.clone(), metrics);
        let stop_keeper = CancellationToken::new();
        let keeping = keeper.run(stop_keeper.clone());
        let passing = async {
            passes(&mut walker, &lease, held, every, &shutdown).await;
            // The pass is over: now the lease may go.
            stop_keeper.cancel();
        };
        tokio::join!(keeping, passing);
    }
}

/// Passes while the lease is held, until `shutdown`.
async fn passes(
    walker: &mut Walker,
    lease: &Lease,
    mut held: watch::Receiver<Option<u64>>,
    every: Duration,
    shutdown: &CancellationToken,
) {
    loop {
        let token = tokio::select! {
            () = shutdown.cancelled() => return,
            token = held.wait_for(Option::is_some) => match token {
                Ok(token) => *token,
                // The keeper is gone (it only stops after the passes).
                Err(_) => return,
            },
        };
        let Some(token) = token else { continue };
        let fence = lease.fence(token);
        let pass = walker.pass(&fence, shutdown);
        tokio::pin!(pass);
        let result = tokio::select! {
            () = lost(&mut held, token) => {
                tracing::warn!(token, "the reconciler lease was lost during a pass; the pass stops here");
                continue;
            }
            result = &mut pass => result,
            () = shutdown.cancelled() => {
                // The pass sees the shutdown at its next page boundary: let
                // it get there, so no write is cut between its commit and
                // its refunds and counts.
                match tokio::time::timeout(STOP_WAIT, &mut pass).await {
                    Ok(result) => result,
                    Err(_elapsed) => {
                        tracing::warn!(wait = ?STOP_WAIT, "the reconciler pass did not end in time at shutdown; dropped");
                        return;
                    }
                }
            }
        };
        match result {
            Ok(report) if report != PassReport::default() => {
                tracing::debug!(?report, "reconciler pass");
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "reconciler pass failed"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// Resolves once `held` no longer says `token` (or the keeper is gone).
async fn lost(held: &mut watch::Receiver<Option<u64>>, token: u64) {
    // The guard `wait_for` returns is dropped here, not held across awaits.
    let _ = held.wait_for(|now| *now != Some(token)).await;
}

#[cfg(test)]
mod tests {
    use seckill::stock_lua::{LogEntry, LogKind};

    use super::walk::{next_id, order_of};
    use crate::domain::order::Order;
    use crate::domain::request_id::RequestId;

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

    #[test]
    fn next_stream_ids() {
        assert_eq!(
            next_id("1700000000000-0").as_deref(),
            Some("1700000000000-1")
        );
        assert_eq!(next_id("5-41").as_deref(), Some("5-42"));
        assert_eq!(next_id(&format!("5-{}", u64::MAX)).as_deref(), Some("6-0"));
        assert_eq!(next_id(&format!("{}-{}", u64::MAX, u64::MAX)), None);
        assert_eq!(next_id("5"), None);
        assert_eq!(next_id("a-1"), None);
        assert_eq!(next_id("1-b"), None);
    }
}
