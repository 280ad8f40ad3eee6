//! The products: the public view of a SKU, and the admin's update of one.

use super::ports::{Catalog, OrderQueue, StockLedger, Unavailable};
use super::sale::Sale;
use super::sku::Sku;

/// A SKU as buyers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkuView {
    /// The SKU, from the cache.
    pub sku: Sku,
    /// Units left: live from the stock ledger, or MySQL's count (from the
    /// cache) when the ledger is unreachable.
    pub units_left: u64,
}

/// The SKU `id` with its live stock; `None` when there is no such SKU.
///
/// # Errors
///
/// The cache and MySQL both failed.
pub async fn view<C: Catalog, S: StockLedger, Q: OrderQueue>(
    catalog: &C,
    sale: &Sale<S, Q>,
    id: u64,
) -> Result<Option<SkuView>, Unavailable> {
    let Some(sku) = catalog.sku(id).await? else {
        return Ok(None);
    };
    let units_left = match sale.stock().units_left(id).await {
        Ok(units) => units,
        Err(error) => {
            tracing::warn!(%error, sku = id, "live stock unavailable; answering MySQL's");
            sku.stock
        }
    };
    Ok(Some(SkuView { sku, units_left }))
}

/// Where an admin update stopped.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// Nothing changed.
    #[error("nothing changed: {0}")]
    Record(#[source] Unavailable),
    /// MySQL has the update, but the cache still holds the old SKU.
    #[error("MySQL was updated but the cache was not invalidated: {0}")]
    Cache(#[source] Unavailable),
    /// MySQL has the update and the cache was invalidated, but the stock
    /// ledger was not set: the SKU sells with its old stock until retried.
    #[error("MySQL was updated but the sellable stock was not: {0}")]
    Stock(#[source] Unavailable),
}

/// Creates or updates a SKU: MySQL first, then its cache entry is
/// invalidated, then its sellable units are set in the stock ledger and this
/// instance's sold-out flag is cleared. Repeating a failed update is safe.
///
/// Setting the stock while orders of the SKU are still on their way to
/// MySQL makes MySQL and the ledger disagree by those orders: restock
/// between sales.
///
/// # Errors
///
/// Which step failed, and so what changed.
pub async fn update<C: Catalog, S: StockLedger, Q: OrderQueue>(
    catalog: &C,
    sale: &Sale<S, Q>,
    sku: &Sku,
) -> Result<(), UpdateError> {
    catalog.save(sku).await.map_err(UpdateError::Record)?;
    catalog.forget(sku.id).await.map_err(UpdateError::Cache)?;
    sale.restock(sku.id, sku.stock)
        .await
        .map_err(UpdateError::Stock)
}
