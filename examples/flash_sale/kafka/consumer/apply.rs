//! Applying a batch: the [`Store`]'s transaction, then the refunds in Redis
//! of every order MySQL refused, each retried with backoff until done or
//! shutdown.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{BACKOFF_MAX, BACKOFF_MIN};
use crate::domain::order::Order;
use crate::metrics::Metrics;
use crate::redis::stock::{RedisStock, RefundError};
use crate::store::Store;

/// Writes `orders` and refunds what MySQL refused, retrying until done.
/// `false`: shutdown came first (the offsets must not be committed).
pub async fn apply(
    store: &Store,
    stock: &RedisStock,
    metrics: &Metrics,
    orders: &[Order],
    shutdown: &CancellationToken,
) -> bool {
    if orders.is_empty() {
        return true;
    }
    let mut backoff = Backoff::new();
    let written = loop {
        match store.write_orders(orders).await {
            Ok(written) => break written,
            Err(error) => {
                tracing::warn!(%error, orders = orders.len(), "MySQL did not take a batch of orders; retrying");
                if !backoff.wait(shutdown).await {
                    return false;
                }
            }
        }
    };
    metrics.orders_created.inc_by(written.created);
    metrics.orders_duplicate.inc_by(written.duplicate);
    metrics.orders_failed.inc_by(written.failed);
    for request_id in &written.refunds {
        let mut backoff = Backoff::new();
        loop {
            match stock.refund(request_id).await {
                Ok(()) => break,
                Err(RefundError::Redis(error)) => {
                    tracing::warn!(%error, %request_id, "Redis did not take a refund; retrying");
                    if !backoff.wait(shutdown).await {
                        return false;
                    }
                }
                Err(error @ RefundError::Refused(_)) => {
                    tracing::error!(%error, %request_id, "the order stays refused in MySQL");
                    break;
                }
            }
        }
    }
    true
}

/// Exponential backoff that gives up at shutdown.
pub struct Backoff(Duration);

impl Backoff {
    /// Starts at the shortest wait.
    pub fn new() -> Self {
        Self(BACKOFF_MIN)
    }

    /// Sleeps; `false` when shutdown came first.
    pub async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        let delay = self.0;
        self.0 = (self.0 * 2).min(BACKOFF_MAX);
        tokio::select! {
            () = shutdown.cancelled() => false,
            () = tokio::time::sleep(delay) => true,
        }
    }
}
