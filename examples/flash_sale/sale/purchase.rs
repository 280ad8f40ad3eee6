//! One purchase request, from the limits to the queued order.

use std::net::IpAddr;
use std::time::Duration;

use seckill::stock_lua::{Deduction, Error as StockError, Outcome};

use super::PER_USER_LIMIT;
use crate::orders::message::Order;
use crate::state::AppState;

/// A validated purchase request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purchase {
    /// The client's id of this request (1–64 visible ASCII characters).
    pub request_id: String,
    /// The buyer.
    pub user_id: u64,
    /// The SKU.
    pub sku_id: u64,
    /// Units (at least 1).
    pub quantity: u32,
}

/// The decision for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Granted: the order is on its way to MySQL.
    Queued,
    /// No units left.
    SoldOut,
    /// Fewer units left than asked for.
    Insufficient {
        /// Units left when decided.
        available: u64,
    },
    /// The user already bought their share of this SKU.
    LimitExceeded,
    /// An earlier refund of this request id cancelled it.
    Cancelled,
    /// A rate limit refused the request; nothing was decided.
    RateLimited {
        /// When to retry.
        retry_after: Duration,
    },
}

impl Answer {
    /// The `status` field of the answer, also the metrics label.
    pub fn status(&self) -> &'static str {
        match self {
            Answer::Queued => "queued",
            Answer::SoldOut => "sold_out",
            Answer::Insufficient { .. } => "insufficient",
            Answer::LimitExceeded => "limit_exceeded",
            Answer::Cancelled => "cancelled",
            Answer::RateLimited { .. } => "rate_limited",
        }
    }
}

/// Why a purchase could not be decided.
#[derive(Debug, thiserror::Error)]
pub enum PurchaseError {
    /// The SKU is not on sale.
    #[error("SKU {0} is not on sale")]
    UnknownSku(u64),
    /// Redis failed: the request may or may not have been decided.
    #[error("the stock service failed: {0}")]
    Stock(#[source] StockError),
}

/// Decides `purchase` from client address `ip`.
///
/// Order of checks: per-IP and per-user limits, the local sold-out flag, the
/// global bucket in front of Redis, then the Redis deduction. A request
/// Redis decided gets the same answer on every retry: from Redis's request
/// record, or, once the SKU is flagged sold out, from this instance's memory
/// of the ids it saw granted or over the limit ([`Answered`](super::answered::Answered)).
/// A request turned away before Redis was never decided, so its retry is
/// decided afresh.
///
/// # Errors
///
/// Unknown SKU, or Redis failed (retry with the same request id).
pub async fn purchase(
    state: &AppState,
    ip: IpAddr,
    purchase: Purchase,
) -> Result<Answer, PurchaseError> {
    if let Err(denied) = state.limits.check_client(ip, purchase.user_id) {
        return Ok(Answer::RateLimited {
            retry_after: denied.retry_after,
        });
    }
    if state.sold_out.is_sold_out(purchase.sku_id) {
        // A retry of a request granted before the sell-out gets its first answer.
        let answer = state
            .answered
            .get(&purchase.request_id)
            .unwrap_or(Answer::SoldOut);
        state.metrics.sold_out_local.inc();
        return Ok(answer);
    }
    if let Err(denied) = state.limits.check_global() {
        return Ok(Answer::RateLimited {
            retry_after: denied.retry_after,
        });
    }
    let deduction = Deduction {
        request_id: purchase.request_id,
        user_id: purchase.user_id.to_string(),
        items: vec![(purchase.sku_id.to_string(), u64::from(purchase.quantity))],
        per_user_limit: Some(PER_USER_LIMIT),
    };
    state.metrics.redis_deductions.inc();
    let decision = state.stock.deduct(&deduction).await.map_err(|e| match e {
        StockError::UnknownSku { .. } => PurchaseError::UnknownSku(purchase.sku_id),
        other => PurchaseError::Stock(other),
    })?;
    let answer = match decision.outcome {
        Outcome::Deducted => {
            // A replay was queued by its first call (or, if that process
            // died in between, is recovered by the reconciler).
            if !decision.replayed {
                let order = Order {
                    request_id: deduction.request_id.clone(),
                    user_id: purchase.user_id,
                    sku_id: purchase.sku_id,
                    quantity: purchase.quantity,
                };
                if let Err(closed) = state.orders.submit(order).await {
                    // Shutting down: the deduction is in the Redis log, and
                    // the reconciler of a running instance republishes it.
                    tracing::warn!(request_id = %closed.0.request_id, "order sink closed; left to the reconciler");
                }
            }
            Answer::Queued
        }
        Outcome::SoldOut { .. } | Outcome::Insufficient { available: 0, .. } => {
            state.sold_out.mark(purchase.sku_id);
            Answer::SoldOut
        }
        Outcome::Insufficient { available, .. } => Answer::Insufficient { available },
        Outcome::LimitExceeded { .. } => Answer::LimitExceeded,
        // `Outcome` is non-exhaustive; every other outcome is a cancellation.
        _ => Answer::Cancelled,
    };
    if matches!(answer, Answer::Queued | Answer::LimitExceeded) {
        state.answered.remember(&deduction.request_id, answer);
    }
    Ok(answer)
}
