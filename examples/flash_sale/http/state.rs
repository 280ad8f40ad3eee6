//! What the handlers share, split by concern: each handler takes only the
//! part it uses (axum's `FromRef`).

use std::sync::Arc;

use axum::extract::FromRef;

use crate::domain::blacklist::Blacklist;
use crate::domain::sale::Sale;
use crate::identity::challenge::Challenge;
use crate::identity::token::TokenKeys;
use crate::kafka::producer::OrderSink;
use crate::metrics::Metrics;
use crate::redis::blacklist::BlacklistStore;
use crate::redis::sku_cache::SkuCatalog;
use crate::redis::stock::RedisStock;
use crate::store::Store;

/// The sale as the app runs it: stock in Redis, orders to Kafka.
pub type AppSale = Sale<RedisStock, OrderSink>;

/// Every part; the router's state.
#[derive(Clone)]
pub struct HttpState {
    /// The buy path.
    pub buy: BuyState,
    /// Order and SKU lookups.
    pub query: QueryState,
    /// The admin routes; `None`: off.
    pub admin: Option<AdminState>,
    /// Health and metrics.
    pub ops: OpsState,
    /// Tokens and challenges.
    pub identity: IdentityState,
}

/// Who the buyer is: tokens, the blacklist copy, the challenge.
#[derive(Clone)]
pub struct IdentityState {
    /// Verifies (and, for the demo endpoint, mints) buyers' tokens.
    pub keys: Arc<TokenKeys>,
    /// This instance's copy of the blacklist.
    pub blacklist: Blacklist,
    /// The challenge a purchase must pass; `None`: none.
    pub challenge: Option<Arc<dyn Challenge>>,
    /// Lifetime of demo tokens; `None`: the demo endpoint is off.
    pub demo_token_ttl: Option<std::time::Duration>,
}

/// What `POST /api/v1/seckill` needs.
#[derive(Clone)]
pub struct BuyState {
    /// Who is buying, and may they.
    pub identity: IdentityState,
    /// At most `--max-in-flight` purchases at once; the rest get 503.
    pub bulkhead: seckill::overload::Bulkhead,
    /// The sale.
    pub sale: Arc<AppSale>,
    /// The `RateLimit-Policy` of each of its limits, for 429 answers.
    pub rate_policies: Arc<super::rate_headers::RatePolicies>,
    /// Request outcomes and latency.
    pub metrics: Arc<Metrics>,
    /// Take the client IP from `X-Forwarded-For`.
    pub trust_forwarded_for: bool,
    /// SKUs (to tell a paused sale from an unknown SKU).
    pub catalog: SkuCatalog,
}

/// What the order and SKU lookups need.
#[derive(Clone)]
pub struct QueryState {
    /// The sale (its stock ledger).
    pub sale: Arc<AppSale>,
    /// Orders in MySQL.
    pub book: Store,
    /// SKUs through the cache.
    pub catalog: SkuCatalog,
}

/// What the admin routes need.
#[derive(Clone)]
pub struct AdminState {
    /// The bearer token.
    pub token: Arc<str>,
    /// The sale (restocks).
    pub sale: Arc<AppSale>,
    /// SKUs in MySQL and the cache.
    pub catalog: SkuCatalog,
    /// MySQL and the Redis stock, for the calibration.
    pub store: Store,
    /// The Redis stock ledger.
    pub stock: RedisStock,
    /// The shared blacklist.
    pub blacklist: BlacklistStore,
    /// This instance's copy, reloaded at once after a change here.
    pub blacklist_copy: Blacklist,
}

/// What `/healthz` and `/metrics` need.
#[derive(Clone)]
pub struct OpsState {
    /// MySQL, for the health check.
    pub store: Store,
    /// Every series.
    pub metrics: Arc<Metrics>,
}

impl FromRef<HttpState> for BuyState {
    fn from_ref(state: &HttpState) -> Self {
        state.buy.clone()
    }
}

/// Whether to take the client IP from `X-Forwarded-For`: a copy of one
/// flag, so the per-request IP extractor clones no state.
#[derive(Debug, Clone, Copy)]
pub struct TrustForwardedFor(pub bool);

impl FromRef<HttpState> for TrustForwardedFor {
    fn from_ref(state: &HttpState) -> Self {
        TrustForwardedFor(state.buy.trust_forwarded_for)
    }
}

impl FromRef<HttpState> for IdentityState {
    fn from_ref(state: &HttpState) -> Self {
        state.identity.clone()
    }
}

impl FromRef<HttpState> for QueryState {
    fn from_ref(state: &HttpState) -> Self {
        state.query.clone()
    }
}

impl FromRef<HttpState> for OpsState {
    fn from_ref(state: &HttpState) -> Self {
        state.ops.clone()
    }
}
