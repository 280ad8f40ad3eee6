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
use super::identity::Authenticated;
use super::state::BuyState;
use crate::domain::buyer::{Buyer, Client};
use crate::domain::ports::{Catalog, Cause};
use crate::domain::purchase::{Answer, Purchase};
use crate::domain::request_id::RequestId;
use crate::domain::sale::PurchaseError;
use crate::metrics::Outcome;

/// The request body. The buyer is the bearer token's subject: `user_id`
/// may be left out, and when given must be that user. `challenge` carries
/// the answer to the sale's challenge, when it asks for one.
#[derive(Debug, Deserialize)]
pub struct SeckillBody {
    request_id: String,
    #[serde(default)]
    user_id: Option<u64>,
    sku_id: u64,
    #[serde(default = "one")]
    quantity: u32,
    #[serde(default)]
    challenge: Option<serde_json::Value>,
}

fn one() -> u32 {
    1
}

/// Decides a purchase. Statuses: `queued` 202; `sold_out`, `insufficient`,
/// `limit_exceeded`, `cancelled` 200 (a normal answer of a sale, not a
/// client error); `rate_limited` 429 with `Retry-After`; no valid bearer
/// token 401 `unauthorized`; a blocked buyer 403 `blocked`, another
/// user's `user_id` 403 `forbidden`, a missing or failed challenge 403
/// `challenge_failed`; bad input 400/413; unknown SKU 404; the stock
/// service down 503; a SKU that MySQL knows but Redis lost (its sale
/// paused until the stock is rebuilt) 503 `paused`.
pub async fn seckill(
    State(state): State<BuyState>,
    ClientIp(ip): ClientIp,
    buyer: Result<Authenticated, AppError>,
    body: Result<JsonBody<SeckillBody>, AppError>,
) -> Response {
    let started = Instant::now();
    // Who is buying, first: no limiter, bulkhead or Redis work for a
    // request without a valid token or from a blocked buyer.
    let response = match admit(&state, ip, buyer) {
        // The bulkhead next: an overloaded instance answers before any work.
        Ok(buyer) => match state.bulkhead.try_acquire() {
            Ok(_permit) => decide(&state, ip, buyer, body).await,
            Err(full) => Err(AppError::Overloaded(full.max_concurrent)),
        },
        Err(e) => Err(e),
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
        Err(AppError::Overloaded(_) | AppError::Shed) => Outcome::Overloaded,
        Err(AppError::Unauthenticated(_)) => Outcome::Unauthorized,
        Err(AppError::Forbidden { .. }) => Outcome::Forbidden,
        Err(_) => Outcome::Error,
    });
    match response {
        Ok((answer, request_id)) => answer_response(answer, &request_id, &state),
        Err(e) => e.into_response(),
    }
}

/// The authenticated buyer, unless they are blacklisted.
fn admit(
    state: &BuyState,
    ip: std::net::IpAddr,
    buyer: Result<Authenticated, AppError>,
) -> Result<Buyer, AppError> {
    let Authenticated(buyer) = buyer?;
    state
        .identity
        .blacklist
        .check(&buyer, ip)
        .map_err(|blocked| AppError::Forbidden {
            status: "blocked",
            message: blocked.to_string(),
        })?;
    Ok(buyer)
}

async fn decide(
    state: &BuyState,
    ip: std::net::IpAddr,
    buyer: Buyer,
    body: Result<JsonBody<SeckillBody>, AppError>,
) -> Result<(Answer, RequestId), AppError> {
    let JsonBody(body) = body?;
    if body.user_id.is_some_and(|user| user != buyer.user_id) {
        return Err(AppError::Forbidden {
            status: "forbidden",
            message: "user_id differs from the bearer token's user: a buyer buys for themselves (leave user_id out)".into(),
        });
    }
    if let Some(challenge) = &state.identity.challenge {
        challenge
            .verify(buyer.user_id, body.sku_id, body.challenge.as_ref())
            .map_err(|e| AppError::Forbidden {
                status: "challenge_failed",
                message: e.to_string(),
            })?;
    }
    let purchase = Purchase::parse(
        body.request_id,
        buyer.user_id,
        body.sku_id,
        body.quantity,
        state.sale.rules().max_quantity,
    )
    .map_err(|e| AppError::BadRequest(e.to_string()))?;
    let request_id = purchase.request_id.clone();
    let client = Client {
        ip,
        device: buyer.device.as_ref().map(|d| d.key()),
    };
    match state.sale.purchase(client, purchase).await {
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
        // Shed by the adaptive limit, or rejected by the Redis breaker:
        // Redis was not asked, nothing was decided (counted, not logged).
        Err(PurchaseError::Unavailable(e)) if e.cause == Cause::Shed => Err(AppError::Shed),
        Err(PurchaseError::Unavailable(e)) if e.cause == Cause::Throttled => {
            Err(AppError::Unavailable(
                "the stock service is failing; this purchase was not tried, retry with the same request_id".into(),
            ))
        }
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

fn answer_response(answer: Answer, request_id: &RequestId, state: &BuyState) -> Response {
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
    if let Answer::RateLimited { retry_after, limit } = answer {
        // Whole seconds, rounded up, at least 1.
        let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        let secs = secs.clamp(1, 3600);
        if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        state
            .rate_policies
            .insert(limit, secs, response.headers_mut());
    }
    response
}
