//! MySQL: the schema (embedded migrations) and the queries the HTTP side needs.
//! The consumer's writes live in [`consumer`](super::consumer).

use serde::{Deserialize, Serialize};
use sqlx::MySqlPool;
use sqlx::mysql::MySqlPoolOptions;

/// Connects to MySQL and brings the schema up to date.
///
/// # Errors
///
/// MySQL is unreachable, or a migration fails.
pub async fn connect(url: &str, max_connections: u32) -> Result<MySqlPool, sqlx::Error> {
    let pool = MySqlPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect(url)
        .await?;
    sqlx::migrate!("examples/flash_sale/migrations")
        .run(&pool)
        .await?;
    Ok(pool)
}

/// A product on sale, as stored in MySQL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Sku {
    /// The SKU id.
    pub id: u64,
    /// Display name.
    pub name: String,
    /// Price in cents.
    pub price_cents: u64,
    /// Units not yet sold according to MySQL.
    pub stock: u64,
}

/// Reads one SKU.
///
/// # Errors
///
/// MySQL fails.
pub async fn load_sku(pool: &MySqlPool, id: u64) -> Result<Option<Sku>, sqlx::Error> {
    sqlx::query_as::<_, Sku>("SELECT id, name, price_cents, stock FROM skus WHERE id = ?")
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// Creates or replaces a SKU (name, price and the units on sale).
///
/// # Errors
///
/// MySQL fails.
pub async fn upsert_sku(pool: &MySqlPool, sku: &Sku) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO skus (id, name, price_cents, stock) VALUES (?, ?, ?, ?) \
         ON DUPLICATE KEY UPDATE name = VALUES(name), price_cents = VALUES(price_cents), \
         stock = VALUES(stock)",
    )
    .bind(sku.id)
    .bind(&sku.name)
    .bind(sku.price_cents)
    .bind(sku.stock)
    .execute(pool)
    .await?;
    Ok(())
}

/// Ids of every SKU (the reconciler walks their deduction logs).
///
/// # Errors
///
/// MySQL fails.
pub async fn sku_ids(pool: &MySqlPool) -> Result<Vec<u64>, sqlx::Error> {
    sqlx::query_scalar::<_, u64>("SELECT id FROM skus ORDER BY id")
        .fetch_all(pool)
        .await
}

/// An order row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct OrderRow {
    /// Order id in MySQL.
    pub id: u64,
    /// The request that created it.
    pub request_id: String,
    /// The buyer.
    pub user_id: u64,
    /// The SKU bought.
    pub sku_id: u64,
    /// Units bought.
    pub quantity: u32,
}

/// What MySQL knows about a request id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// The order exists.
    Created(OrderRow),
    /// MySQL refused the order (it was refunded in Redis).
    Failed {
        /// Why (`out_of_stock`, `per_user_limit`).
        reason: String,
    },
    /// Neither.
    Nothing,
}

/// Looks a request id up in `orders`, then in `failed_orders`.
///
/// # Errors
///
/// MySQL fails.
pub async fn find_order(pool: &MySqlPool, request_id: &str) -> Result<Stored, sqlx::Error> {
    let order = sqlx::query_as::<_, OrderRow>(
        "SELECT id, CAST(request_id AS CHAR) AS request_id, user_id, sku_id, quantity \
         FROM orders WHERE request_id = ?",
    )
    .bind(request_id)
    .fetch_optional(pool)
    .await?;
    if let Some(order) = order {
        return Ok(Stored::Created(order));
    }
    let reason =
        sqlx::query_scalar::<_, String>("SELECT reason FROM failed_orders WHERE request_id = ?")
            .bind(request_id)
            .fetch_optional(pool)
            .await?;
    Ok(reason.map_or(Stored::Nothing, |reason| Stored::Failed { reason }))
}

/// The request ids among `ids` that MySQL has decided: in `orders` or in
/// `failed_orders` (one query; the reconciler asks once per log page).
///
/// # Errors
///
/// MySQL fails.
pub async fn decided_requests(
    pool: &MySqlPool,
    ids: &[&str],
) -> Result<std::collections::HashSet<String>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(std::collections::HashSet::new());
    }
    let mut marks = "?,".repeat(ids.len());
    marks.pop();
    let sql = format!(
        "SELECT CAST(request_id AS CHAR) FROM orders WHERE request_id IN ({marks}) \
         UNION SELECT CAST(request_id AS CHAR) FROM failed_orders WHERE request_id IN ({marks})"
    );
    let mut query = sqlx::query_scalar::<_, String>(&sql);
    for _ in 0..2 {
        for id in ids {
            query = query.bind(*id);
        }
    }
    Ok(query.fetch_all(pool).await?.into_iter().collect())
}
