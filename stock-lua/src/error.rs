//! Errors: bad input (refused before Redis is touched) and failures of Redis.

use std::time::Duration;

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
    /// The Redis client failed (connection lost, timeout, server error).
    ///
    /// When this comes from [`StockStore::deduct`](crate::StockStore::deduct)
    /// or [`StockStore::refund`](crate::StockStore::refund) the script may or
    /// may not have run: retry with the same request id, which returns the
    /// first outcome if it did.
    #[error(
        "Redis call failed: {source}; if this was a deduct or refund, retry it with the same request id"
    )]
    Redis {
        /// The client's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Redis answered something this crate does not understand, for example a
    /// key of the namespace holding a value of the wrong type.
    #[error(
        "unexpected reply from Redis: {0}; is another program writing to this namespace's keys?"
    )]
    UnexpectedReply(String),
}

/// Input refused before Redis is touched; each variant names the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidInput {
    /// The namespace is empty, longer than 64 bytes, or contains `{` or `}`
    /// (it becomes the Redis Cluster hash tag of every key).
    #[error("namespace {namespace:?} is not usable: it must be 1 to 64 bytes without '{{' or '}}'")]
    Namespace {
        /// The namespace given.
        namespace: String,
    },
    /// The deduction lists no items.
    #[error("the deduction lists no items: give at least one (sku, quantity)")]
    EmptyItems,
    /// The deduction lists more items than [`MAX_ITEMS`](crate::MAX_ITEMS).
    #[error("the deduction lists {count} items, more than the maximum of {max}: split the order")]
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
    /// A quantity (or stock, or limit) is 0 where at least 1 is needed.
    #[error("{what} must be at least 1")]
    Zero {
        /// What was 0, e.g. `quantity of SKU "a"`.
        what: String,
    },
    /// A quantity, stock amount or limit is above what this crate accepts.
    #[error("{what} is {value}, above the maximum of {max}")]
    TooLarge {
        /// What was too large.
        what: String,
        /// The value given.
        value: u64,
        /// The maximum.
        max: u64,
    },
    /// An id (request, user or SKU) is empty.
    #[error("the {field} is empty")]
    EmptyId {
        /// Which id: `request id`, `user id` or `SKU`.
        field: &'static str,
    },
    /// An id (request, user or SKU) is longer than [`MAX_ID_LEN`](crate::MAX_ID_LEN) bytes.
    #[error("the {field} is {len} bytes long, more than the maximum of {max}: use a shorter id")]
    IdTooLong {
        /// Which id: `request id`, `user id` or `SKU`.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// The dedup record TTL is below one millisecond or above ten years.
    #[error("dedup TTL {ttl:?} is out of range: use 1 ms to 10 years")]
    DedupTtl {
        /// The TTL given.
        ttl: Duration,
    },
}
