//! Direct completion: a deduction Kafka did not turn into an order within
//! `direct_after` of its first republish is written to MySQL by the
//! reconciler itself, through the consumer's own transaction
//! ([`Store::write_orders_fenced`](crate::store::Store::write_orders_fenced):
//! idempotent, per-user and stock checks, refusals to `failed_orders`),
//! fenced by the lease, then what MySQL refused is refunded in Redis
//! ([`refund_refused`], as the consumer does).
//!
//! Racing the consumer is harmless: whichever transaction comes second
//! finds the request decided and counts a duplicate; both refund a
//! refusal, and a refund is idempotent.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::settle::{Retry, refund_refused};
use super::walk::Walker;
use super::{PassReport, ReconcileError};
use crate::domain::order::Order;
use crate::store::lease::Fence;

/// How the reconciler retries a refund (as the consumer does).
pub(super) const RETRY: Retry = Retry {
    first: Duration::from_millis(50),
    max: Duration::from_secs(2),
};

impl Walker {
    /// Writes `orders` (all of `sku`) to MySQL fenced by `fence`, then
    /// refunds what MySQL refused. On `Ok`, each order is decided in MySQL
    /// and every refusal refunded.
    ///
    /// # Errors
    ///
    /// The lease was lost or MySQL failed (nothing was written); `stop`
    /// came during the refunds (the next pass refunds the rest).
    pub(super) async fn complete(
        &mut self,
        sku: u64,
        orders: &[Order],
        fence: &Fence,
        stop: &CancellationToken,
        report: &mut PassReport,
    ) -> Result<(), ReconcileError> {
        let written = self.store.write_orders_fenced(orders, fence).await?;
        let decided = written.created + written.failed;
        report.direct += decided;
        self.metrics.reconciler_direct.inc_by(decided);
        tracing::warn!(
            sku,
            created = written.created,
            refused = written.failed,
            already_decided = written.duplicate,
            token = fence.token,
            "wrote deductions Kafka did not deliver straight to MySQL"
        );
        for order in orders {
            self.republished.remove(order.request_id.as_str());
        }
        if !refund_refused(&self.stock, &written.refunds, RETRY, stop).await {
            return Err(ReconcileError::Stopped);
        }
        Ok(())
    }
}
