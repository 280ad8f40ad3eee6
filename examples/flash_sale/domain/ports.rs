//! What the domain asks of the world, one trait per port. Each is
//! implemented once by an edge module (`redis/`, `kafka/`, `store/`), and in
//! the domain's unit tests by a small in-memory stand-in.

use std::collections::HashSet;
use std::fmt;
use std::future::Future;

use futures::future::BoxFuture;

use super::order::{Decided, Ledger, Order};
use super::purchase::Purchase;
use super::request_id::RequestId;
use super::sku::Sku;

/// A service the domain depends on failed, or was not asked at all
/// ([`Cause`] says which).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{service} failed: {detail}")]
pub struct Unavailable {
    /// Which one.
    pub service: Service,
    /// What it said (for logs; never shown to clients).
    pub detail: String,
    /// Whether the service was asked, and so whether anything may have
    /// been decided.
    pub cause: Cause,
}

/// Why a service is unavailable to one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The call was made and failed or timed out: what the service did is
    /// unknown (a retry with the same request id finds out).
    Failed,
    /// The service's circuit breaker rejected the call locally (it has been
    /// failing): nothing was sent, nothing decided.
    Throttled,
    /// The adaptive concurrency limit in front of the service shed the
    /// call (too many in flight): nothing was sent, nothing decided.
    Shed,
}

impl Unavailable {
    /// `service` failed with `error` ([`Cause::Failed`]).
    pub fn new(service: Service, error: impl fmt::Display) -> Self {
        Self::because(service, Cause::Failed, error)
    }

    /// `service` was unavailable for `cause`, described by `error`.
    pub fn because(service: Service, cause: Cause, error: impl fmt::Display) -> Self {
        Self {
            service,
            detail: error.to_string(),
            cause,
        }
    }
}

/// The services behind the ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// The stock ledger (Redis).
    Stock,
    /// The record of SKUs and orders (MySQL).
    Database,
    /// The SKU cache (Redis).
    Cache,
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Service::Stock => "the stock service",
            Service::Database => "the order database",
            Service::Cache => "the product cache",
        })
    }
}

/// How the stock ledger answered a deduction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deduction {
    /// Units taken. `replayed`: this request id was granted before, and
    /// this is the first answer again (nothing taken twice).
    Granted {
        /// A repeat of an earlier grant.
        replayed: bool,
    },
    /// None left.
    SoldOut {
        /// A repeat of an earlier answer (it says nothing about the stock now).
        replayed: bool,
    },
    /// Fewer left than asked for.
    Insufficient {
        /// Units left when decided.
        available: u64,
        /// A repeat of an earlier answer.
        replayed: bool,
    },
    /// The buyer would hold more than the per-user limit.
    LimitExceeded,
    /// A refund of this request id came before it.
    Cancelled,
    /// No stock was ever set for the SKU: it is not on sale.
    UnknownSku,
    /// This request id was first used for another purchase (another SKU,
    /// quantity or buyer): a client bug; nothing was taken.
    Conflict,
}

/// The stock of every SKU on sale, decided atomically (Redis and
/// `seckill-stock-lua`).
pub trait StockLedger: Send + Sync + 'static {
    /// Takes the purchase's units if the buyer stays within
    /// `per_user_limit` units and enough are left; a repeated request id
    /// gets its first answer.
    fn deduct(
        &self,
        purchase: &Purchase,
        per_user_limit: u64,
    ) -> impl Future<Output = Result<Deduction, Unavailable>> + Send;

    /// Sets the sellable units of `sku`.
    fn set_units(
        &self,
        sku: u64,
        units: u64,
    ) -> impl Future<Output = Result<(), Unavailable>> + Send;

    /// Units of `sku` left (0 for an unknown SKU).
    fn units_left(&self, sku: u64) -> impl Future<Output = Result<u64, Unavailable>> + Send;

    /// What was decided for `request_id`, if it is still remembered.
    fn decided(
        &self,
        request_id: &RequestId,
    ) -> impl Future<Output = Result<Option<Decided>, Unavailable>> + Send;
}

/// Where granted orders go on their way to MySQL (Kafka, through the batcher).
pub trait OrderQueue: Send + Sync + 'static {
    /// Queues `order`; waits only while the queue is full.
    ///
    /// # Errors
    ///
    /// The queue is shut down; the order is given back.
    fn enqueue(&self, order: Order) -> impl Future<Output = Result<(), Order>> + Send;
}

/// The record of every order (MySQL).
pub trait OrderBook: Send + Sync + 'static {
    /// What MySQL holds for `request_id`.
    fn ledger(
        &self,
        request_id: &RequestId,
    ) -> impl Future<Output = Result<Ledger, Unavailable>> + Send;
}

/// The products (MySQL behind a cache).
pub trait Catalog: Send + Sync + 'static {
    /// The SKU, through the cache.
    fn sku(&self, id: u64) -> impl Future<Output = Result<Option<Sku>, Unavailable>> + Send;

    /// Writes `sku` to MySQL.
    fn save(&self, sku: &Sku) -> impl Future<Output = Result<(), Unavailable>> + Send;

    /// Invalidates the cache entry of SKU `id` (now, and once more after a
    /// delay, against a reader's stale backfill).
    fn forget(&self, id: u64) -> impl Future<Output = Result<(), Unavailable>> + Send;
}

/// Every request id ever granted units of a SKU: what lets the local
/// sold-out flag answer a retry of a grant `queued` without asking Redis.
/// Grants are at most the units ever sold, so the set is bounded.
///
/// Object safe (the sale holds it as `Arc<dyn GrantRecord>`), hence the
/// boxed future.
pub trait GrantRecord: Send + Sync + 'static {
    /// The ids of every request granted units of `sku`: refunded ones
    /// included (their retry is answered `queued` too).
    fn granted(&self, sku: u64) -> BoxFuture<'_, Result<HashSet<String>, Unavailable>>;
}
