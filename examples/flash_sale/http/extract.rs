//! Extractors: a JSON body whose every rejection is a 400 or a 413 with a
//! JSON error, and the client's IP.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRef, FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::error::AppError;
use super::state::TrustForwardedFor;

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 16 * 1024;

/// A JSON body. A content type other than JSON, a body over
/// [`BODY_LIMIT`], and JSON of the wrong shape are refused with 400/413.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        if let Some(content_type) = req.headers().get(header::CONTENT_TYPE) {
            let json = content_type
                .to_str()
                .is_ok_and(|v| v.trim_start().starts_with("application/json"));
            if !json {
                return Err(AppError::BadRequest(
                    "Content-Type must be application/json".into(),
                ));
            }
        }
        let body = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                AppError::TooLarge(BODY_LIMIT)
            } else {
                AppError::BadRequest(format!("could not read the body: {e}"))
            }
        })?;
        serde_json::from_slice(&body)
            .map(JsonBody)
            .map_err(|e| AppError::BadRequest(format!("invalid JSON body: {e}")))
    }
}

/// The client's IP: the peer address, or the first `X-Forwarded-For`
/// address when the settings trust that header.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl<S> FromRequestParts<S> for ClientIp
where
    TrustForwardedFor: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if TrustForwardedFor::from_ref(state).0
            && let Some(ip) = parts
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .and_then(|v| v.trim().parse().ok())
        {
            return Ok(ClientIp(ip));
        }
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
        Ok(ClientIp(peer))
    }
}

/// A SKU id from the path; anything but a `u64` is a 400 with a JSON error
/// (axum's own `Path` rejection is plain text).
#[derive(Debug, Clone, Copy)]
pub struct SkuId(pub u64);

impl<S: Send + Sync> FromRequestParts<S> for SkuId {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| AppError::BadRequest(format!("bad path: {e}")))?;
        raw.parse().map(SkuId).map_err(|_| {
            AppError::BadRequest(format!(
                "sku_id must be an unsigned 64-bit integer, got {raw:?}"
            ))
        })
    }
}
