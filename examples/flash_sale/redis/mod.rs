//! Redis, through the toolkit's crates: the stock ledger
//! (`seckill-stock-lua`), the SKU cache (`seckill-cache-aside`), the rate
//! limits (`seckill-ratelimit`) and the blacklist, all on one connection of
//! the shared Redis layer (`seckill-redis`): a single server, a Redis
//! Cluster or a Sentinel group, whichever `--redis-url` names.

pub mod blacklist;
pub mod sku_cache;
pub mod stock;

/// The app's Redis connection: a single server (reconnecting by itself), a
/// Cluster (routed by key) or a Sentinel group's primary (followed across
/// failovers). Cheap to clone; clones share the connection.
pub type Redis = seckill::redis::redis_rs::AnyConnection;

/// Connects to the Redis `url` names: `redis://host:port`,
/// `redis+cluster://host:port,host:port,...` (or several `redis://` URLs
/// separated by commas) or `redis+sentinel://host:port,.../master`.
///
/// # Errors
///
/// A malformed URL, or Redis does not answer.
pub async fn connect(url: &str) -> Result<Redis, seckill::redis::Error> {
    seckill::redis::redis_rs::connect(url).await
}
