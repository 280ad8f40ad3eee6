//! The buyer's identity at the edge: the [`Authenticated`] extractor (a
//! verified bearer token, before any limiter or Redis work), the challenge
//! puzzle `GET /api/v1/challenge`, and the demo's token minting
//! `POST /api/v1/demo/token`.

use axum::Json;
use axum::extract::{FromRef, FromRequestParts, Query, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::AppError;
use super::extract::JsonBody;
use super::state::IdentityState;
use crate::domain::buyer::{Buyer, DeviceId};
use crate::identity::token::unix;

/// The header that names the buyer's device.
pub const DEVICE_HEADER: &str = "x-device-id";

/// The buyer a request's bearer token proves, or why it proves none (a 401).
#[derive(Debug)]
pub struct Authenticated(pub Buyer);

impl<S> FromRequestParts<S> for Authenticated
where
    IdentityState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        let identity = IdentityState::from_ref(state);
        let authorization = parts.headers.get(AUTHORIZATION).map(|v| v.as_bytes());
        let device = parts.headers.get(DEVICE_HEADER).map(|v| v.as_bytes());
        Ok(Authenticated(identity.keys.verify(authorization, device)?))
    }
}

/// The query of `GET /api/v1/challenge`.
#[derive(Debug, Deserialize)]
pub struct ChallengeQuery {
    sku_id: u64,
}

/// A challenge puzzle for the authenticated buyer and `sku_id`; 404 when
/// this sale asks for none.
pub async fn challenge(
    State(identity): State<IdentityState>,
    buyer: Result<Authenticated, AppError>,
    query: Result<Query<ChallengeQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, AppError> {
    let Authenticated(buyer) = buyer?;
    let Query(query) =
        query.map_err(|_| AppError::BadRequest("expected ?sku_id=<SKU id>".into()))?;
    let challenge = identity
        .challenge
        .as_ref()
        .ok_or_else(|| AppError::NotFound("this sale asks for no challenge".into()))?;
    Ok(Json(challenge.issue(buyer.user_id, query.sku_id)))
}

/// The body of `POST /api/v1/demo/token`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    user_id: u64,
    #[serde(default)]
    device_id: Option<String>,
}

/// Mints a token for any user (the demo's stand-in for a login service;
/// only with `--demo-tokens`, otherwise 404).
pub async fn demo_token(
    State(identity): State<IdentityState>,
    body: Result<JsonBody<TokenRequest>, AppError>,
) -> Result<Json<Value>, AppError> {
    let ttl = identity
        .demo_token_ttl
        .ok_or_else(|| AppError::NotFound("token minting is off (--demo-tokens)".into()))?;
    let JsonBody(body) = body?;
    let device = body
        .device_id
        .as_deref()
        .map(DeviceId::parse)
        .transpose()
        .map_err(|e| AppError::BadRequest(format!("device_id: {e}")))?;
    let expires = std::time::SystemTime::now() + ttl;
    let token = identity
        .keys
        .mint(body.user_id, device.as_ref(), expires)
        .map_err(|e| AppError::Unavailable(e.to_string()))?;
    Ok(Json(json!({
        "token": token,
        "user_id": body.user_id,
        "device_id": device.as_ref().map(DeviceId::as_str),
        "expires_at": unix(expires),
    })))
}
