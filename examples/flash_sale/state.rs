//! What every handler shares.

use std::sync::Arc;

use redis::aio::ConnectionManager;
use seckill::cache_aside::Cache;
use seckill::stock_lua::StockStore;
use sqlx::MySqlPool;

use crate::config::SaleSettings;
use crate::metrics::Metrics;
use crate::orders::producer::OrderSink;
use crate::sale::answered::Answered;
use crate::sale::limits::Limits;
use crate::sale::sold_out::SoldOutFlags;

/// The app's shared state: cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The parts of [`AppState`].
pub struct Shared {
    /// Limits and timings.
    pub settings: SaleSettings,
    /// Per-IP, per-user and global rate limits.
    pub limits: Limits,
    /// Local sold-out flags.
    pub sold_out: SoldOutFlags,
    /// First answers Redis gave requests of this instance (for retries after a sell-out).
    pub answered: Answered,
    /// Stock deduction in Redis.
    pub stock: StockStore<ConnectionManager>,
    /// Product data cached in Redis.
    pub cache: Cache<ConnectionManager>,
    /// Prefix of the SKU cache keys (carries the namespace).
    pub cache_prefix: String,
    /// MySQL.
    pub db: MySqlPool,
    /// Granted orders on their way to Kafka.
    pub orders: OrderSink,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Bearer token of the admin routes (`None`: admin routes off).
    pub admin_token: Option<String>,
}

impl AppState {
    /// Wraps the parts.
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}
