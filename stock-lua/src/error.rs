//! Errors: bad input (refused before Redis is touched) and failures of Redis.

use std::time::Duration;

use crate::outcome::Outcome;

/// Why a [`StockStore`](crate::StockStore) call returned no answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input was refused before anything was sent to Redis; nothing changed.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// No stock was ever set for this SKU (its stock key is missing), so the
    /// request was refused and nothing was written, not even the request record.
    #[error(
        "no stock is set for SKU {sku:?}: call StockStore::set_stock first; nothing was deducted"
    )]
    UnknownSku {
        /// The SKU without a stock key.
        sku: String,
    },
    /// The Redis call failed (connection lost, timeout, failover in
    /// progress, server error); `source` says which, and whether it
    /// [may have run](seckill_redis::Error::may_have_run) and
    /// [is worth retrying](seckill_redis::Error::is_retryable).
    ///
    /// When this comes from [`StockStore::deduct`](crate::StockStore::deduct)
    /// or [`StockStore::refund`](crate::StockStore::refund) the script may or
    /// may not have run: retry with the same request id, which returns the
    /// first outcome if it did.
    #[error(
        "Redis call failed: {source}; if this was a deduct or refund, retry it with the same request id"
    )]
    Redis {
        /// The Redis layer's error.
        #[source]
        source: seckill_redis::Error,
    },
    /// The request id was decided before for a *different* request (another
    /// user, other SKUs or other quantities): a request id was reused, which
    /// is a client bug. Nothing changed; `stored` is the first request's
    /// outcome, which still stands for this id.
    #[error(
        "request id {request_id:?} was already used for a different request (other user, SKUs or quantities), decided as {stored:?}; nothing changed: give each distinct request its own id"
    )]
    RequestConflict {
        /// The reused request id.
        request_id: String,
        /// The outcome stored for the first request with this id.
        stored: Outcome,
    },
    /// Redis answered something this crate does not understand, for example a
    /// key of the namespace holding a value of the wrong type.
    #[error(
        "unexpected reply from Redis: {0}; is another program writing to this namespace's keys?"
    )]
    UnexpectedReply(String),
}

/// Input refused before Redis is touched; each variant names the field, its
/// valid range and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidInput {
    /// The namespace is empty, longer than 64 bytes, or contains `{` or `}`
    /// (it becomes the Redis Cluster hash tag of every key).
    #[error(
        "namespace must be 1 to 64 bytes without '{{' or '}}', got {namespace:?} ({} bytes)",
        namespace.len()
    )]
    Namespace {
        /// The namespace given.
        namespace: String,
    },
    /// A [`ShardedStock`](crate::ShardedStock) was asked for a bucket count
    /// outside 1 to [`MAX_BUCKETS`](crate::MAX_BUCKETS).
    #[error(
        "buckets must be 1 to {max}, got {buckets}: about one per Redis Cluster primary is the point",
        max = crate::MAX_BUCKETS
    )]
    Buckets {
        /// The count given.
        buckets: usize,
    },
    /// The deduction lists no items.
    #[error(
        "items must list 1 to {max} (sku, quantity) pairs, got 0: give at least one",
        max = crate::MAX_ITEMS
    )]
    EmptyItems,
    /// The deduction lists more items than [`MAX_ITEMS`](crate::MAX_ITEMS).
    #[error("items must list 1 to {max} (sku, quantity) pairs, got {count}: split the order")]
    TooManyItems {
        /// Items given.
        count: usize,
        /// The maximum.
        max: usize,
    },
    /// The same SKU appears twice in one deduction.
    #[error(
        "SKU {sku:?} appears more than once in the deduction: merge its quantities into one item"
    )]
    DuplicateSku {
        /// The repeated SKU.
        sku: String,
    },
    /// A number (quantity, stock amount, per-user limit, page size) is
    /// outside its documented range.
    #[error("{field} must be {min} to {max}, got {value}")]
    OutOfRange {
        /// What was out of range, e.g. `quantity of SKU "a"`.
        field: String,
        /// The value given.
        value: u64,
        /// The smallest value accepted.
        min: u64,
        /// The largest value accepted.
        max: u64,
    },
    /// An id (request, user, SKU or log entry) is empty.
    #[error("the {field} must be 1 to {max} bytes, got 0 (empty)", max = crate::MAX_ID_LEN)]
    EmptyId {
        /// Which id: `request id`, `user id`, `SKU` or `log entry id`.
        field: &'static str,
    },
    /// An id (request, user, SKU or log entry) is longer than
    /// [`MAX_ID_LEN`](crate::MAX_ID_LEN) bytes.
    #[error("the {field} must be 1 to {max} bytes, got {len}: use a shorter id")]
    IdTooLong {
        /// Which id: `request id`, `user id`, `SKU` or `log entry id`.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// The dedup record TTL is below one millisecond or above ten years.
    #[error("dedup_ttl must be 1 ms to 10 years (315360000 s), got {ttl:?}")]
    DedupTtl {
        /// The TTL given.
        ttl: Duration,
    },
}

impl From<seckill_redis::Error> for Error {
    fn from(source: seckill_redis::Error) -> Self {
        Error::Redis { source }
    }
}
