//! `GET /api/v1/skus/{sku_id}`: a SKU with its live stock.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::error::AppError;
use super::extract::SkuId;
use super::state::QueryState;
use crate::domain::catalog;

/// Name and price from the cache (loaded from MySQL on a miss, one load per
/// key however many callers), units left from Redis (live).
pub async fn get_sku(
    State(state): State<QueryState>,
    SkuId(sku_id): SkuId,
) -> Result<Json<Value>, AppError> {
    let view = catalog::view(&state.catalog, &state.sale, sku_id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no SKU {sku_id}")))?;
    Ok(Json(json!({
        "sku_id": view.sku.id,
        "name": view.sku.name,
        "price_cents": view.sku.price_cents,
        "stock": view.units_left,
    })))
}
