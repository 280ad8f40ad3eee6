//! `POST /api/v1/seckill`: parse, ask the sale, map the answer.

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::error::AppError;
use super::extract::{ClientIp, JsonBody};
use super::state::BuyState;
use crate::domain::ports::Catalog;
use crate::domain::purchase::{Answer, Purchase};
use crate::domain::request_id::RequestId;
use crate::domain::sale::PurchaseError;
use crate::metrics::Outcome;

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

/// Decides a purchase. Statuses: `queued` 202; `sold_out`, `insufficient`,
/// `limit_exceeded`, `cancelled` 200 (a normal answer of a sale, not a
/// client error); `rate_limited` 429 with `Retry-After`; bad input 400/413;
/// unknown SKU 404; the stock service down 503; a SKU that MySQL knows but
/// Redis lost (its sale paused until the stock is rebuilt) 503 `paused`.
pub async fn seckill(
    State(state): State<BuyState>,
    ClientIp(ip): ClientIp,
    body: Result<JsonBody<SeckillBody>, AppError>,
) -> Response {
    let started = Instant::now();
    // The bulkhead first: an overloaded instance answers before any work.
    let response = match state.bulkhead.try_acquire() {
        Ok(_permit) => decide(&state, ip, body).await,
        Err(full) => Err(AppError::Overloaded(full.max_concurrent)),
    };
    state
        .metrics
        .request_seconds
        .observe(started.elapsed().as_secs_f64());
    state.metrics.count_outcome(match &response {
        Ok((answer, _)) => outcome(answer),
        Err(AppError::BadRequest(_) | AppError::TooLarge(_)) => Outcome::BadRequest,
        Err(AppError::NotFound(_)) => Outcome::NotFound,
        Err(AppError::Paused(_)) => Outcome::Paused,
        Err(AppError::Conflict(_)) => Outcome::Conflict,
        Err(AppError::Overloaded(_)) => Outcome::Overloaded,
        Err(_) => Outcome::Error,
    });
    match response {
        Ok((answer, request_id)) => answer_response(answer, &request_id),
        Err(e) => e.into_response(),
    }
}

async fn decide(
    state: &BuyState,
    ip: std::net::IpAddr,
    body: Result<JsonBody<SeckillBody>, AppError>,
) -> Result<(Answer, RequestId), AppError> {
    let JsonBody(body) = body?;
    let purchase = Purchase::parse(
        body.request_id,
        body.user_id,
        body.sku_id,
        body.quantity,
        state.sale.rules().max_quantity,
    )
    .map_err(|e| AppError::BadRequest(e.to_string()))?;
    let request_id = purchase.request_id.clone();
    match state.sale.purchase(ip, purchase).await {
        Ok(answer) => Ok((answer, request_id)),
        Err(PurchaseError::UnknownSku(sku)) => {
            // Redis has no stock for it: never on sale, or Redis lost it.
            match state.catalog.sku(sku).await {
                Ok(Some(_)) => Err(AppError::Paused(sku)),
                Ok(None) => Err(AppError::NotFound(format!("SKU {sku} is not on sale"))),
                Err(e) => Err(e.into()),
            }
        }
        Err(PurchaseError::Conflict(id)) => Err(AppError::Conflict(format!(
            "request_id {id} was already used for another purchase (another SKU, quantity or user); use a new request_id"
        ))),
        Err(PurchaseError::Unavailable(e)) => {
            tracing::error!(error = %e, %request_id, "stock deduction failed");
            Err(AppError::Unavailable(
                "the stock service is unavailable; retry with the same request_id".into(),
            ))
        }
    }
}

/// The metrics label of an answer.
fn outcome(answer: &Answer) -> Outcome {
    match answer {
        Answer::Queued => Outcome::Queued,
        Answer::SoldOut => Outcome::SoldOut,
        Answer::Insufficient { .. } => Outcome::Insufficient,
        Answer::LimitExceeded => Outcome::LimitExceeded,
        Answer::Cancelled => Outcome::Cancelled,
        Answer::RateLimited { .. } => Outcome::RateLimited,
    }
}

fn answer_response(answer: Answer, request_id: &RequestId) -> Response {
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
