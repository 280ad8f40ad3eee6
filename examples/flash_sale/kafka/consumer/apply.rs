//! Applying a batch: the [`Store`]'s transaction, then the refunds in Redis
//! of every order MySQL refused, each retried with backoff until done or
//! shutdown ([`refund_refused`], shared with the reconciler).

use tokio_util::sync::CancellationToken;

use super::{BACKOFF_MAX, BACKOFF_MIN};
use crate::domain::order::Order;
use crate::metrics::Metrics;
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
