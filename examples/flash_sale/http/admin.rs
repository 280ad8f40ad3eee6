//! The admin routes, behind a bearer token: `PUT /api/v1/admin/skus/{sku_id}`
//! and `GET /api/v1/admin/calibration`.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::AppError;
use super::extract::{JsonBody, SkuId};
use super::state::AdminState;
use crate::domain::catalog::{self, UpdateError};
use crate::domain::sku::Sku;

/// The admin body.
#[derive(Debug, Deserialize)]
pub struct SkuBody {
    name: String,
    price_cents: u64,
    stock: u64,
}

/// Creates or updates a SKU (MySQL, then the cache, then the Redis stock;
/// see [`catalog::update`]); its per-user limit is this instance's
/// `--per-user-limit`.
pub async fn put_sku(
    State(state): State<AdminState>,
    SkuId(sku_id): SkuId,
    headers: HeaderMap,
    body: Result<JsonBody<SkuBody>, AppError>,
) -> Result<Json<Value>, AppError> {
    authorize(&state.token, &headers)?;
    let JsonBody(body) = body?;
    let limit = state.sale.rules().per_user_limit;
    let sku = Sku::parse(sku_id, &body.name, body.price_cents, body.stock, limit)
        .map_err(|e| AppError::BadRequest(e.to_string()))?;
    catalog::update(&state.catalog, &state.sale, &sku)
        .await
        .map_err(|error| {
            tracing::error!(%error, sku_id, "SKU update failed");
            AppError::Unavailable(
                match error {
                    UpdateError::Record(_) => "the database is unavailable; nothing changed, retry",
                    UpdateError::Cache(_) => {
                        "MySQL was updated but the cache was not invalidated; retry"
                    }
                    UpdateError::Stock(_) => "MySQL was updated but the Redis stock was not; retry",
                }
                .into(),
            )
        })?;
    Ok(Json(json!({
        "sku_id": sku.id,
        "name": sku.name,
        "price_cents": sku.price_cents,
        "stock": sku.stock,
        "per_user_limit": sku.per_user_limit,
    })))
}

/// `GET /api/v1/admin/calibration`: Redis's stock against MySQL's for
/// every SKU of the sale (see [`crate::calibrate`]); `agrees` is false when
/// any SKU drifts or lost its stock key.
pub async fn calibration(
    State(state): State<AdminState>,
    headers: HeaderMap,
) -> Result<Json<Value>, AppError> {
    authorize(&state.token, &headers)?;
    let skus = crate::calibrate::calibrate(&state.store, &state.stock)
        .await
        .map_err(|error| {
            tracing::error!(%error, "calibration failed");
            AppError::Unavailable("MySQL or Redis is unavailable; retry".into())
        })?;
    let agrees = skus.iter().all(crate::calibrate::SkuCalibration::agrees);
    Ok(Json(json!({ "agrees": agrees, "skus": skus })))
}

/// Checks `Authorization: Bearer <token>` in constant time.
fn authorize(expected: &str, headers: &HeaderMap) -> Result<(), AppError> {
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
