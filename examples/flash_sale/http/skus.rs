//! `GET /api/v1/skus/{sku_id}` through the cache, and the admin
//! `PUT /api/v1/admin/skus/{sku_id}`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use seckill::stock_lua::MAX_STOCK;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::AppError;
use super::extract::{JsonBody, SkuId};
use crate::orders::db::{self, Sku};
use crate::state::AppState;

/// The cache key of a SKU.
pub fn cache_key(state: &AppState, sku_id: u64) -> String {
    format!("{}{sku_id}", state.cache_prefix)
}

/// Name and price from the cache (loaded from MySQL on a miss, one load per
/// key however many callers), units left from Redis (live).
pub async fn get_sku(
    State(state): State<AppState>,
    SkuId(sku_id): SkuId,
) -> Result<Json<Value>, AppError> {
    let db = state.db.clone();
    let sku: Option<Sku> = state
        .cache
        .get_or_load(&cache_key(&state, sku_id), || async move {
            db::load_sku(&db, sku_id).await.map_err(Arc::new)
        })
        .await
        .map_err(|e| {
            tracing::error!(error = %e, sku_id, "SKU lookup failed");
            AppError::Unavailable("the product service is unavailable; retry".into())
        })?;
    let sku = sku.ok_or_else(|| AppError::NotFound(format!("no SKU {sku_id}")))?;
    let stock = match state.stock.stock(&sku_id.to_string()).await {
        Ok(units) => u64::try_from(units).unwrap_or(0),
        Err(e) => {
            tracing::warn!(error = %e, sku_id, "live stock unavailable; answering the cached stock");
            sku.stock
        }
    };
    Ok(Json(json!({
        "sku_id": sku.id,
        "name": sku.name,
        "price_cents": sku.price_cents,
        "stock": stock,
    })))
}

/// The admin body.
#[derive(Debug, Deserialize)]
pub struct SkuBody {
    name: String,
    price_cents: u64,
    stock: u64,
}

/// Creates or updates a SKU: MySQL first, then the cache is invalidated
/// (delete now, second delete after a delay), then the sellable stock is set
/// in Redis and this instance's sold-out flag cleared. Setting the stock
/// while orders of the SKU are still in flight makes MySQL and Redis
/// disagree by those orders: restock between sales.
pub async fn put_sku(
    State(state): State<AppState>,
    SkuId(sku_id): SkuId,
    headers: HeaderMap,
    body: Result<JsonBody<SkuBody>, AppError>,
) -> Result<Json<Value>, AppError> {
    authorize(&state, &headers)?;
    let JsonBody(body) = body?;
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(AppError::BadRequest(
            "name must be 1 to 200 characters".into(),
        ));
    }
    if body.stock > MAX_STOCK || body.price_cents > i64::MAX as u64 {
        return Err(AppError::BadRequest(format!(
            "stock must be at most {MAX_STOCK} and price_cents at most {}",
            i64::MAX
        )));
    }
    let sku = Sku {
        id: sku_id,
        name: name.to_owned(),
        price_cents: body.price_cents,
        stock: body.stock,
    };
    db::upsert_sku(&state.db, &sku).await.map_err(|e| {
        tracing::error!(error = %e, sku_id, "SKU update failed");
        AppError::Unavailable("the database is unavailable; nothing changed, retry".into())
    })?;
    state
        .cache
        .invalidate(&cache_key(&state, sku_id))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, sku_id, "cache invalidation failed");
            AppError::Unavailable(
                "MySQL was updated but the cache was not invalidated; retry".into(),
            )
        })?;
    state
        .stock
        .set_stock(&sku_id.to_string(), sku.stock)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, sku_id, "setting the stock failed");
            AppError::Unavailable("MySQL was updated but the Redis stock was not; retry".into())
        })?;
    state.sold_out.clear(sku_id);
    Ok(Json(json!({
        "sku_id": sku.id,
        "name": sku.name,
        "price_cents": sku.price_cents,
        "stock": sku.stock,
    })))
}

/// Checks `Authorization: Bearer <token>` in constant time.
fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), AppError> {
    let Some(expected) = state.admin_token.as_deref() else {
        return Err(AppError::NotFound("admin routes are off".into()));
    };
    let given = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let same_length = given.len() == expected.len();
    let diff = given
        .bytes()
        .zip(expected.bytes())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if same_length && diff == 0 {
        Ok(())
    } else {
        Err(AppError::Unauthorized)
    }
}
