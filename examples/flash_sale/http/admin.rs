//! The admin routes, behind a bearer token: `PUT /api/v1/admin/skus/{sku_id}`,
//! `GET /api/v1/admin/calibration`, and the blacklist:
//! `GET /api/v1/admin/blacklist`, `PUT` and `DELETE
//! /api/v1/admin/blacklist/{users|ips|devices}/{value}`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::AppError;
use super::extract::{JsonBody, SkuId};
use super::state::AdminState;
use crate::domain::blacklist::ListKind;
use crate::domain::catalog::{self, UpdateError};
use crate::domain::sku::Sku;
use crate::redis::blacklist::{Added, BlacklistError};

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

/// `GET /api/v1/admin/blacklist`: the lists as this instance holds them.
pub async fn blacklist(
    State(state): State<AdminState>,
    headers: HeaderMap,
) -> Result<Json<Value>, AppError> {
    authorize(&state.token, &headers)?;
    let entries = state.blacklist_copy.entries();
    let mut users: Vec<u64> = entries.users.iter().copied().collect();
    let mut ips: Vec<String> = entries.ips.iter().map(ToString::to_string).collect();
    let mut devices: Vec<&String> = entries.devices.iter().collect();
    users.sort_unstable();
    ips.sort_unstable();
    devices.sort_unstable();
    Ok(Json(
        json!({ "users": users, "ips": ips, "devices": devices }),
    ))
}

/// `PUT /api/v1/admin/blacklist/{list}/{value}`: blocks a user, an address
/// or a device on every instance (this one at once, the others within
/// `--blacklist-refresh-ms`). `added` is false when it was already there.
pub async fn block(
    State(state): State<AdminState>,
    Path((list, value)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, AppError> {
    change(&state, &list, &value, &headers, true).await
}

/// `DELETE /api/v1/admin/blacklist/{list}/{value}`: unblocks it.
/// `removed` is false when it was not there.
pub async fn unblock(
    State(state): State<AdminState>,
    Path((list, value)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, AppError> {
    change(&state, &list, &value, &headers, false).await
}

/// Adds (`block`) or removes a blacklist entry, then reloads this
/// instance's copy (the refresher would, a little later; a failed reload
/// is left to it).
async fn change(
    state: &AdminState,
    list: &str,
    value: &str,
    headers: &HeaderMap,
    block: bool,
) -> Result<Json<Value>, AppError> {
    authorize(&state.token, headers)?;
    let (kind, value) = entry(list, value)?;
    let mut answer = json!({ "list": kind.name(), "value": value });
    if block {
        let added = state.blacklist.add(kind, &value).await;
        answer["added"] = json!(added.map_err(blacklist_error)? == Added::New);
    } else {
        let removed = state.blacklist.remove(kind, &value).await;
        answer["removed"] = json!(removed.map_err(blacklist_error)?);
    }
    if let Err(error) = state.blacklist.load_into(&state.blacklist_copy).await {
        tracing::warn!(%error, "could not reload the blacklist after a change; the refresher will");
    }
    Ok(Json(answer))
}

/// The list and the canonical value of a blacklist route.
fn entry(list: &str, value: &str) -> Result<(ListKind, String), AppError> {
    let kind: ListKind = list
        .parse()
        .map_err(|e: crate::domain::blacklist::UnknownList| AppError::NotFound(e.to_string()))?;
    let value = kind
        .canonical(value)
        .map_err(|e| AppError::BadRequest(e.to_string()))?;
    Ok((kind, value))
}

fn blacklist_error(error: BlacklistError) -> AppError {
    match error {
        BlacklistError::Full(_) => AppError::Conflict(error.to_string()),
        BlacklistError::Redis(e) => {
            tracing::error!(error = %e, "blacklist change failed");
            AppError::Unavailable(
                "Redis is unavailable; the change may not have happened, retry".into(),
            )
        }
    }
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
