//! Redis, through the toolkit's crates: the stock ledger
//! (`seckill-stock-lua`) and the SKU cache (`seckill-cache-aside`), on one
//! redis-rs `ConnectionManager` (reconnects by itself, 5 s timeouts).

pub mod blacklist;
pub mod sku_cache;
pub mod stock;

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// Connects to the Redis at `url`.
///
/// # Errors
///
/// A malformed URL, or Redis does not answer.
pub async fn connect(url: &str) -> Result<ConnectionManager, redis::RedisError> {
    let client = redis::Client::open(url)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(5)));
    ConnectionManager::new_with_config(client, config).await
}
