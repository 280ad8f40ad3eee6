//! Applying a batch: the [`Store`]'s transaction, then the refunds in Redis
//! of every order MySQL refused, each retried with backoff until done or
//! shutdown ([`refund_refused`], shared with the reconciler).
//!
//! The transaction goes through the MySQL breaker (when the app guards
//! its store): while MySQL is failing, the breaker rejects most attempts
//! without touching MySQL, and the consumer keeps its batch, backs off and
//! tries again, committing no offset until the batch is written.

use tokio_util::sync::CancellationToken;

use super::{BACKOFF_MAX, BACKOFF_MIN};
use crate::domain::order::Order;
use crate::metrics::Metrics;
use crate::protection::GuardError;
use crate::reconcile::settle::{Retry, refund_refused};
use crate::redis::stock::RedisStock;
use crate::store::Store;

/// How a MySQL transaction or a Redis refund is retried.
const RETRY: Retry = Retry {
    first: BACKOFF_MIN,
    max: BACKOFF_MAX,
};

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
    let mut backoff = RETRY.backoff();
    let written = loop {
        match store.write_orders(orders).await {
            Ok(written) => break written,
            Err(error @ GuardError::Throttled { .. }) => {
                // Logged once by the breaker when it started throttling.
                tracing::debug!(%error, orders = orders.len(), "MySQL is failing; the batch waits");
                if !backoff.wait(shutdown).await {
                    return false;
                }
            }
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
    // Shared with the reconciler's direct completion.
    refund_refused(stock, &written.refunds, RETRY, shutdown).await
}
