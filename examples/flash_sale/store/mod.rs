//! MySQL: every SQL statement of the app lives under this folder.
//!
//! - [`skus`]: products and their stock;
//! - [`orders`]: looking orders up (the [`OrderBook`](crate::domain::ports::OrderBook) port);
//! - [`order_batch`]: the consumer's transaction that turns a batch of
//!   granted orders into rows (also fenced by a lease, for the reconciler);
//! - [`lease`]: leases with fencing tokens on MySQL's clock (one reconciler per sale).
//!
//! The schema is in `migrations/` (embedded, run at start).
//!
//! Once [`guarded`](Store::guarded), the consumer's batch transaction
//! ([`Store::write_orders`]) and the SKU loads ([`Store::load_sku`]) go
//! through the MySQL breaker and its timeout; the other statements
//! (reconciler, admin, lookups) do not.

pub mod lease;
pub mod order_batch;
pub mod orders;
pub mod skus;

use std::sync::Arc;
use std::time::Duration;

use sqlx::MySqlPool;
use sqlx::mysql::MySqlPoolOptions;

use crate::protection::{Guard, GuardError, any_error};

/// The app's MySQL database, migrated, seen from one sale (the Redis
/// namespace its SKUs are recorded under). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: MySqlPool,
    namespace: Arc<str>,
    /// The MySQL breaker and timeout; `None`: unguarded.
    guard: Option<Guard>,
}

/// The error of a guarded statement: the breaker rejected it (nothing was
/// sent), it timed out (its transaction's outcome is unknown), or MySQL's
/// own error.
pub type StoreError = GuardError<sqlx::Error>;

impl Store {
    /// Connects with up to `max_connections` and brings the schema up to
    /// date, for the sale in `namespace`.
    ///
    /// # Errors
    ///
    /// MySQL is unreachable, or a migration fails.
    pub async fn connect(
        url: &str,
        max_connections: u32,
        namespace: &str,
    ) -> Result<Self, sqlx::Error> {
        let pool = MySqlPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        sqlx::migrate!("examples/flash_sale/migrations")
            .run(&pool)
            .await?;
        Ok(Self {
            pool,
            namespace: namespace.into(),
            guard: None,
        })
    }

    /// The same store with its batch writes and SKU loads behind `guard`
    /// (the MySQL breaker).
    pub fn guarded(&self, guard: Guard) -> Self {
        Self {
            guard: Some(guard),
            ..self.clone()
        }
    }

    /// Runs `call` through the breaker, if any; every error is a failure.
    async fn guard<T, F, Fut>(&self, call: F) -> Result<T, StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, sqlx::Error>>,
    {
        match &self.guard {
            Some(guard) => guard.call(any_error, call).await,
            None => call().await.map_err(GuardError::Failed),
        }
    }

    /// Whether MySQL answers.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// The pool (tests read tables directly).
    #[cfg(test)]
    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }
}

/// `n` comma-separated placeholders.
fn placeholders(n: usize) -> String {
    let mut out = "?,".repeat(n);
    out.pop();
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders() {
        assert_eq!(super::placeholders(3), "?,?,?");
        assert_eq!(super::placeholders(1), "?");
    }
}
