//! What a deduction or a refund decided.

/// How the script decided a [`Deduction`](crate::Deduction).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// Every item was deducted and logged.
    Deducted,
    /// `sku` has fewer units than asked for; nothing was deducted anywhere.
    Insufficient {
        /// The first SKU found short.
        sku: String,
        /// Its units left when the request was decided.
        available: u64,
    },
    /// `sku` has no units left; nothing was deducted anywhere.
    SoldOut {
        /// The first SKU found sold out.
        sku: String,
    },
    /// The user would own more than `per_user_limit` units of `sku`; nothing
    /// was deducted anywhere.
    LimitExceeded {
        /// The first SKU over the limit.
        sku: String,
        /// Units of it the user had already bought.
        bought: u64,
    },
    /// A [`refund`](crate::StockStore::refund) of this request id arrived
    /// before the deduction did, so the deduction was cancelled: nothing was
    /// deducted, and nothing ever will be for this id.
    Cancelled,
}

impl Outcome {
    /// Whether stock was taken.
    pub fn is_deducted(&self) -> bool {
        matches!(self, Outcome::Deducted)
    }
}

/// The answer to [`StockStore::deduct`](crate::StockStore::deduct): the
/// outcome, and whether it was decided by an earlier call with the same request id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Decision {
    /// What was decided for this request id.
    pub outcome: Outcome,
    /// `true` when this request id had been decided before (by an earlier
    /// call, or cancelled by a refund) and this call changed nothing:
    /// `outcome` is the first decision, stored in the request record.
    pub replayed: bool,
}

/// The answer to [`StockStore::refund`](crate::StockStore::refund).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Refund {
    /// The request's items were put back, each exactly as deducted.
    Refunded {
        /// The `(sku, quantity)` pairs put back.
        items: Vec<(String, u64)>,
    },
    /// This request was refunded before; nothing changed.
    AlreadyRefunded,
    /// The request was decided without a deduction (sold out, insufficient,
    /// over the limit, cancelled): there is nothing to put back.
    NothingDeducted,
    /// No record of this request id (never deducted, or its record expired
    /// after the dedup TTL). A tombstone now makes a late deduction with this
    /// id return [`Outcome::Cancelled`].
    NotFound,
}

/// What Redis holds about one request id: see
/// [`StockStore::request`](crate::StockStore::request).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct RequestRecord {
    /// The first decision for this id ([`Outcome::Cancelled`] for the
    /// tombstone a refund of an unknown id leaves).
    pub outcome: Outcome,
    /// The buyer (empty for a tombstone).
    pub user_id: String,
    /// The `(sku, quantity)` pairs taken, empty unless the outcome is
    /// [`Outcome::Deducted`].
    pub items: Vec<(String, u64)>,
    /// Whether the deduction was refunded.
    pub refunded: bool,
}
