//! Redis lost its data (restarted empty, or failed over to a replica that
//! missed writes): find the SKUs of this sale whose stock key is gone,
//! keep them paused until nothing is in flight, rebuild them from MySQL,
//! reopen.
//!
//! **Paused by itself.** A SKU without a stock key sells nothing: the
//! deduction script answers "unknown SKU" and writes nothing, and the HTTP
//! layer answers such a SKU that exists in MySQL with 503 `paused` (and
//! `Retry-After`) instead of 404. So no grant is made while the rebuild
//! waits, on any instance, with no coordination.
//!
//! **Nothing in flight.** Grants made before the loss are on their way to
//! MySQL (in an instance's batcher, in Kafka) and must land before the
//! stock is computed from MySQL, or their units would be sold twice. The
//! rebuild waits until the consumer group has committed every message of
//! the topic and the SKU's orders in MySQL have not changed over a settle
//! period longer than any batcher's delay; otherwise it tries again at the
//! next pass.
//!
//! **Rebuilt.** From MySQL: a request record for every order (so a retry is
//! answered `queued` again) and every refused order (granted, refunded),
//! each buyer's units (the per-user limit), then the stock key last, set to
//! the units MySQL has not sold. See `seckill-stock-lua`'s
//! `restore_grants`.
//!
//! **What can be lost.** A grant whose only trace was Redis: its instance
//! died before handing it to Kafka, or its publish failed and the
//! reconciler had not yet republished it from the (now lost) deduction log.
//! That is two faults at once (Redis and the instance, or Redis and
//! Kafka). Its buyer was answered `queued`; after the rebuild its request
//! id is unknown, so a retry is decided afresh, and its order lookup says
//! `unknown`. Redis persistence (AOF with `appendfsync everysec`) or a
//! replica shrinks that window to the last second of writes.
//!
//! Runs on the reconciler's lease holder only: one rebuild per sale.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use seckill::stock_lua::RestoredGrant;

use crate::kafka::client::Kafka;
use crate::metrics::Metrics;
use crate::redis::stock::RedisStock;
use crate::store::Store;

/// Why a rebuild pass stopped; the next pass tries again.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    /// MySQL failed.
    #[error("MySQL: {0}")]
    Db(#[from] sqlx::Error),
    /// Redis failed.
    #[error("Redis: {0}")]
    Redis(#[from] seckill::stock_lua::Error),
    /// Kafka failed (the consumer group's progress is unknown).
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum RebuildPass {
    /// Every SKU of the sale has its stock key.
    #[default]
    Intact,
    /// SKUs are missing, and grants are still in flight: they stay paused.
    Waiting(Vec<u64>),
    /// These SKUs were rebuilt and reopened.
    Rebuilt(Vec<u64>),
}

/// Rebuilds the Redis stock of SKUs whose key is gone.
pub struct StockRebuild {
    store: Store,
    stock: RedisStock,
    kafka: Arc<Kafka>,
    group: String,
    topic: String,
    settle: Duration,
    metrics: Arc<Metrics>,
    /// When the last calibration ran.
    calibrated: Option<Instant>,
    /// Per SKU, the drift the last calibration saw (0 = agreed).
    drifts: HashMap<u64, Option<i64>>,
}

/// Time between two calibrations by the lease holder.
pub const CALIBRATE_EVERY: Duration = Duration::from_secs(30);

impl StockRebuild {
    /// A rebuild that waits `settle` with nothing moving before it trusts
    /// MySQL (longer than every instance's batch delay).
    pub fn new(
        store: Store,
        stock: RedisStock,
        kafka: Arc<Kafka>,
        group: String,
        topic: String,
        settle: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            store,
            stock,
            kafka,
            group,
            topic,
            settle,
            metrics,
            calibrated: None,
            drifts: HashMap::new(),
        }
    }

    /// Calibrates Redis against MySQL at the first pass and then every
    /// [`CALIBRATE_EVERY`] (see [`crate::calibrate`]). A drift seen by two
    /// calibrations in a row (not a grant caught in transit) is logged as
    /// an error; a missing key is the rebuild's business. Failures are
    /// logged: calibration only reports.
    pub async fn calibrate_if_due(&mut self) {
        if self
            .calibrated
            .is_some_and(|at| at.elapsed() < CALIBRATE_EVERY)
        {
            return;
        }
        self.calibrated = Some(Instant::now());
        let report = match crate::calibrate::calibrate(&self.store, &self.stock).await {
            Ok(report) => report,
            Err(error) => {
                tracing::warn!(%error, "calibration failed; trying again later");
                return;
            }
        };
        let mut drifts = HashMap::new();
        for sku in report {
            let before = self.drifts.get(&sku.sku_id).copied().flatten();
            if let Some(drift) = sku.drift.filter(|d| *d != 0)
                && before == Some(drift)
            {
                tracing::error!(
                    sku = sku.sku_id,
                    drift,
                    redis = ?sku.redis_stock,
                    mysql_unsold = sku.mysql_unsold,
                    in_flight = sku.in_flight,
                    "Redis's stock disagrees with MySQL's in two calibrations in a row"
                );
            }
            drifts.insert(sku.sku_id, sku.drift);
        }
        self.drifts = drifts;
    }

    /// One pass (see the module docs).
    ///
    /// # Errors
    ///
    /// MySQL, Redis or Kafka failed; the SKUs stay paused until a later pass.
    pub async fn pass(&self, skus: &[u64]) -> Result<RebuildPass, RebuildError> {
        let mut missing = Vec::new();
        for &sku in skus {
            if !self.stock.is_stocked(sku).await? {
                missing.push(sku);
            }
        }
        if missing.is_empty() {
            return Ok(RebuildPass::Intact);
        }
        tracing::warn!(skus = ?missing, "Redis lost the stock of these SKUs; their sale is paused until it is rebuilt from MySQL");
        let before = fingerprint(&self.durable(&missing).await?);
        let lag = crate::kafka::consumer::group_lag(&self.kafka, &self.group, &self.topic).await?;
        if lag > 0 {
            tracing::info!(
                lag,
                "orders still in Kafka; the rebuild waits for the consumer"
            );
            return Ok(RebuildPass::Waiting(missing));
        }
        tokio::time::sleep(self.settle).await;
        let lag = crate::kafka::consumer::group_lag(&self.kafka, &self.group, &self.topic).await?;
        let durable = self.durable(&missing).await?;
        if lag > 0 || fingerprint(&durable) != before {
            return Ok(RebuildPass::Waiting(missing));
        }
        for (sku, grants) in durable {
            let Some(unsold) = self.store.units_unsold(sku).await? else {
                continue;
            };
            let written = self.stock.restore(sku, &grants, unsold).await?;
            self.metrics.stock_rebuilds.inc();
            tracing::warn!(
                sku,
                grants = grants.len(),
                written,
                unsold,
                "rebuilt the SKU's Redis stock from MySQL; its sale is open again"
            );
        }
        Ok(RebuildPass::Rebuilt(missing))
    }

    /// Per SKU, the orders and refusals MySQL holds.
    async fn durable(
        &self,
        skus: &[u64],
    ) -> Result<BTreeMap<u64, Vec<RestoredGrant>>, RebuildError> {
        let mut durable = BTreeMap::new();
        for &sku in skus {
            durable.insert(sku, self.store.durable_grants(sku).await?);
        }
        Ok(durable)
    }
}

/// Per SKU, how many orders and refusals MySQL holds and their units: a
/// change between two reads means something was still in flight.
fn fingerprint(durable: &BTreeMap<u64, Vec<RestoredGrant>>) -> BTreeMap<u64, (usize, u64)> {
    durable
        .iter()
        .map(|(&sku, grants)| (sku, (grants.len(), grants.iter().map(|g| g.quantity).sum())))
        .collect()
}
