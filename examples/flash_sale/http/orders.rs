//! `GET /api/v1/orders/{request_id}`: where an order is.

use axum::Json;
use axum::extract::{Path, State};
use seckill::stock_lua::Outcome;
use serde_json::{Value, json};

use super::error::AppError;
use crate::orders::db::{self, Stored};
use crate::orders::message::MAX_REQUEST_ID;
use crate::state::AppState;

/// `created` (the MySQL order), `failed` (refused by MySQL and refunded, or
/// refused by the sale), `pending` (granted by Redis, not yet in MySQL) or
/// `not_found`.
pub async fn order_status(
    State(state): State<AppState>,
    Path(request_id): Path<String>,
) -> Result<Json<Value>, AppError> {
    if request_id.is_empty() || request_id.len() > MAX_REQUEST_ID {
        return Err(AppError::BadRequest(format!(
            "request_id must be 1 to {MAX_REQUEST_ID} characters"
        )));
    }
    let stored = db::find_order(&state.db, &request_id).await.map_err(|e| {
        tracing::error!(error = %e, "order lookup failed");
        AppError::Unavailable("the order database is unavailable; retry".into())
    })?;
    match stored {
        Stored::Created(order) => {
            return Ok(Json(json!({
                "status": "created",
                "request_id": order.request_id,
                "order_id": order.id,
                "user_id": order.user_id,
                "sku_id": order.sku_id,
                "quantity": order.quantity,
            })));
        }
        Stored::Failed { reason } => {
            return Ok(Json(json!({
                "status": "failed", "request_id": request_id, "reason": reason,
            })));
        }
        Stored::Nothing => {}
    }
    let record = match state.stock.request(&request_id).await {
        Ok(record) => record,
        // Not a valid id for Redis: nothing can be stored under it.
        Err(seckill::stock_lua::Error::Invalid(_)) => None,
        Err(e) => {
            tracing::error!(error = %e, "request lookup failed");
            return Err(AppError::Unavailable(
                "the stock service is unavailable; retry".into(),
            ));
        }
    };
    let body = match record {
        None => json!({ "status": "not_found", "request_id": request_id }),
        Some(record) if record.refunded => {
            json!({ "status": "failed", "request_id": request_id, "reason": "refunded" })
        }
        Some(record) => match record.outcome {
            Outcome::Deducted => json!({ "status": "pending", "request_id": request_id }),
            Outcome::SoldOut { .. } | Outcome::Insufficient { .. } => {
                json!({ "status": "failed", "request_id": request_id, "reason": "sold_out" })
            }
            Outcome::LimitExceeded { .. } => {
                json!({ "status": "failed", "request_id": request_id, "reason": "limit_exceeded" })
            }
            _ => json!({ "status": "failed", "request_id": request_id, "reason": "cancelled" }),
        },
    };
    Ok(Json(body))
}
