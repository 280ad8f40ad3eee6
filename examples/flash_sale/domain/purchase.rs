//! One purchase request and the answers a sale gives it.

use std::time::Duration;

use super::request_id::{RequestId, RequestIdError};

/// A purchase request that passed every input rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purchase {
    /// The client's id of this request.
    pub request_id: RequestId,
    /// The buyer.
    pub user_id: u64,
    /// The SKU.
    pub sku_id: u64,
    /// Units (1 to the sale's largest quantity).
    pub quantity: u32,
}

/// Why a purchase request is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PurchaseInputError {
    /// The request id breaks the rule.
    #[error(transparent)]
    RequestId(#[from] RequestIdError),
    /// Zero, or more units than one request may ask for.
    #[error("quantity must be 1 to {max}")]
    Quantity {
        /// The largest quantity of one request.
        max: u32,
    },
}

impl Purchase {
    /// A purchase from its raw fields; `max_quantity` is the sale's largest
    /// quantity per request.
    ///
    /// # Errors
    ///
    /// A bad request id or quantity.
    pub fn parse(
        request_id: String,
        user_id: u64,
        sku_id: u64,
        quantity: u32,
        max_quantity: u32,
    ) -> Result<Self, PurchaseInputError> {
        let request_id = RequestId::parse(request_id)?;
        if quantity == 0 || quantity > max_quantity {
            return Err(PurchaseInputError::Quantity { max: max_quantity });
        }
        Ok(Self {
            request_id,
            user_id,
            sku_id,
            quantity,
        })
    }
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
    /// The buyer already holds their share of this SKU.
    LimitExceeded,
    /// An earlier refund of this request id cancelled it.
    Cancelled,
    /// A rate limit refused the request; nothing was decided.
    RateLimited {
        /// When to retry.
        retry_after: Duration,
        /// Which limit refused it.
        limit: RateLimit,
    },
}

/// The rate limits of a sale, in the order a request meets them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimit {
    /// Per client IP.
    Ip,
    /// Per user.
    User,
    /// Per device bound into the buyer's token.
    Device,
    /// The instance's bucket in front of Redis.
    Instance,
}

impl RateLimit {
    /// Its name in the `RateLimit` and `RateLimit-Policy` headers.
    pub fn name(self) -> &'static str {
        match self {
            RateLimit::Ip => "per-ip",
            RateLimit::User => "per-user",
            RateLimit::Device => "per-device",
            RateLimit::Instance => "per-instance",
        }
    }
}

impl Answer {
    /// The `status` field of the answer, also its metrics label.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing() {
        let purchase = Purchase::parse("r-1".into(), 1, 2, 3, 10).unwrap();
        assert_eq!(
            (purchase.request_id.as_str(), purchase.quantity),
            ("r-1", 3)
        );
        assert_eq!(
            Purchase::parse("r".into(), 1, 2, 0, 10),
            Err(PurchaseInputError::Quantity { max: 10 })
        );
        assert_eq!(
            Purchase::parse("r".into(), 1, 2, 11, 10),
            Err(PurchaseInputError::Quantity { max: 10 })
        );
        assert_eq!(
            Purchase::parse(String::new(), 1, 2, 1, 10),
            Err(PurchaseInputError::RequestId(RequestIdError::Length))
        );
    }
}
