//! Settling what MySQL refused: every refused order is refunded in Redis,
//! each refund retried with backoff until it is done or shutdown comes.
//!
//! Shared by the two writers of orders, the consumer
//! (`kafka/consumer/apply.rs`) and the reconciler's direct completion
//! ([`super::direct`]): both run [`Store::write_orders`] (the reconciler
//! fenced) and then this, so a refused order is refunded the same way
//! whoever wrote it. A refund is idempotent, so two writers refunding the
//! same request, or a retry after a lost answer, give back its units once.
//!
//! [`Store::write_orders`]: crate::store::Store::write_orders

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::domain::request_id::RequestId;
use crate::redis::stock::{RedisStock, RefundError};

/// How a failed call is retried: exponential backoff from `first`,
/// doubling up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// The first wait.
    pub first: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Retry {
    /// A fresh backoff, starting at [`first`](Self::first).
    pub fn backoff(&self) -> Backoff {
        Backoff {
            next: self.first,
            max: self.max,
        }
    }
}

/// Exponential backoff that gives up at shutdown.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// Sleeps; `false` when shutdown came first.
    pub async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        tokio::select! {
            () = shutdown.cancelled() => false,
            () = tokio::time::sleep(delay) => true,
        }
    }
}

/// Refunds every request of `refunds` in Redis, retrying a Redis failure
/// per `retry`; a refund Redis refuses outright (retrying cannot help) is
/// logged and passed over. `false`: shutdown came before every refund was
/// done (the rest is healed later: the consumer's batch is delivered again,
/// the reconciler refunds refusals it finds unrefunded).
pub async fn refund_refused(
    stock: &RedisStock,
    refunds: &[RequestId],
    retry: Retry,
    shutdown: &CancellationToken,
) -> bool {
    for request_id in refunds {
        let mut backoff = retry.backoff();
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
