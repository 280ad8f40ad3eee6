//! `GET /api/v1/orders/{request_id}`: where an order is.

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use super::error::AppError;
use super::state::QueryState;
use crate::domain::order::{self, OrderStatus};
use crate::domain::request_id::RequestId;

/// `created` (the MySQL order), `failed` (+ `reason`), `pending` (granted
/// by Redis, not yet in MySQL) or `not_found`.
pub async fn order_status(
    State(state): State<QueryState>,
    Path(raw): Path<String>,
) -> Result<Json<Value>, AppError> {
    let request_id = RequestId::parse(raw).map_err(|e| AppError::BadRequest(e.to_string()))?;
    let status = order::lookup(&state.book, state.sale.stock(), &request_id).await?;
    let mut body = json!({ "status": status.name(), "request_id": request_id });
    match status {
        OrderStatus::Created(stored) => {
            body["order_id"] = json!(stored.order_id);
            body["user_id"] = json!(stored.order.user_id);
            body["sku_id"] = json!(stored.order.sku_id);
            body["quantity"] = json!(stored.order.quantity);
        }
        OrderStatus::Failed(reason) => body["reason"] = json!(reason.as_str()),
        OrderStatus::Pending | OrderStatus::NotFound => {}
    }
    Ok(Json(body))
}
