//! `POST /api/v1/seckill`: one purchase request.

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::error::AppError;
use super::extract::{ClientIp, JsonBody};
use crate::orders::message::{self, MAX_REQUEST_ID};
use crate::sale::purchase::{self, Answer, Purchase, PurchaseError};
use crate::state::AppState;

/// The request body.
#[derive(Debug, Deserialize)]
pub struct SeckillBody {
    request_id: String,
    user_id: u64,
    sku_id: u64,
    #[serde(default = "one")]
    quantity: u32,
}

fn one() -> u32 {
    1
}

impl SeckillBody {
    fn validate(self, max_quantity: u32) -> Result<Purchase, AppError> {
        let id = &self.request_id;
        if !message::is_valid_request_id(id) {
            let problem = if id.is_empty() || id.len() > MAX_REQUEST_ID {
                format!("request_id must be 1 to {MAX_REQUEST_ID} characters")
            } else {
                "request_id must be visible ASCII characters (no spaces)".to_owned()
            };
            return Err(AppError::BadRequest(problem));
        }
        if self.quantity == 0 || self.quantity > max_quantity {
            return Err(AppError::BadRequest(format!(
                "quantity must be 1 to {max_quantity}"
            )));
        }
        Ok(Purchase {
            request_id: self.request_id,
            user_id: self.user_id,
            sku_id: self.sku_id,
            quantity: self.quantity,
        })
    }
}

/// Decides a purchase. Statuses: `queued` 202; `sold_out`, `insufficient`,
/// `limit_exceeded`, `cancelled` 200 (a normal answer of a sale, not a
/// client error); `rate_limited` 429 with `Retry-After`; bad input 400/413.
pub async fn seckill(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    body: Result<JsonBody<SeckillBody>, AppError>,
) -> Response {
    let started = Instant::now();
    let response = decide(&state, ip, body).await;
    state
        .metrics
        .request_seconds
        .observe_duration(started.elapsed());
    let label = match &response {
        Ok((answer, _)) => answer.status(),
        Err(AppError::BadRequest(_) | AppError::TooLarge(_)) => "bad_request",
        Err(AppError::NotFound(_)) => "not_found",
        Err(_) => "error",
    };
    state.metrics.count_outcome(label);
    match response {
        Ok((answer, request_id)) => answer_response(answer, &request_id),
        Err(e) => e.into_response(),
    }
}

async fn decide(
    state: &AppState,
    ip: std::net::IpAddr,
    body: Result<JsonBody<SeckillBody>, AppError>,
) -> Result<(Answer, String), AppError> {
    let JsonBody(body) = body?;
    let purchase = body.validate(state.settings.max_quantity)?;
    let request_id = purchase.request_id.clone();
    match purchase::purchase(state, ip, purchase).await {
        Ok(answer) => Ok((answer, request_id)),
        Err(PurchaseError::UnknownSku(sku)) => {
            Err(AppError::NotFound(format!("SKU {sku} is not on sale")))
        }
        Err(PurchaseError::Stock(e)) => {
            tracing::error!(error = %e, %request_id, "stock deduction failed");
            Err(AppError::Unavailable(
                "the stock service is unavailable; retry with the same request_id".into(),
            ))
        }
    }
}

fn answer_response(answer: Answer, request_id: &str) -> Response {
    let mut body = json!({ "status": answer.status(), "request_id": request_id });
    let status = match answer {
        Answer::Queued => StatusCode::ACCEPTED,
        Answer::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::OK,
    };
    if let Answer::Insufficient { available } = answer {
        body["available"] = json!(available);
    }
    let mut response = (status, Json(body)).into_response();
    if let Answer::RateLimited { retry_after } = answer {
        // Whole seconds, rounded up, at least 1.
        let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        if let Ok(value) = HeaderValue::from_str(&secs.clamp(1, 3600).to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
    }
    response
}
