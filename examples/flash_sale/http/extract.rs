//! Extractors: a JSON body whose every rejection is a 400 or a 413 with a
//! JSON error, and the client's IP.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::{ConnectInfo, FromRef, FromRequest, FromRequestParts, Path, Request};
use axum::http::header;
use axum::http::request::Parts;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;

use super::error::AppError;
use super::state::TrustForwardedFor;

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 16 * 1024;

/// Largest oversized body that is read to its end (and thrown away) before
/// the 413 goes out. A server that answers while the client is still
/// sending closes a socket with unread data, the kernel resets the
/// connection, and the client sees "broken pipe" instead of the answer;
/// reading the rest first lets it hear the 413. A body declared larger than
/// this is refused at once, unread.
pub const DRAIN_LIMIT: usize = 2 * 1024 * 1024;

/// Longest time spent reading an oversized body before answering anyway.
pub const DRAIN_TIME: Duration = Duration::from_secs(5);

/// A JSON body. A content type other than JSON, a body over
/// [`BODY_LIMIT`], and JSON of the wrong shape are refused with 400/413.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, AppError> {
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
        let body = read_body(req).await?;
        serde_json::from_slice(&body)
            .map(JsonBody)
            .map_err(|e| AppError::BadRequest(format!("invalid JSON body: {e}")))
    }
}

/// The body, at most [`BODY_LIMIT`] bytes; a longer one is drained (see
/// [`DRAIN_LIMIT`]) and refused with 413.
async fn read_body(req: Request) -> Result<Vec<u8>, AppError> {
    let mut body = req.into_body();
    // The declared `Content-Length`: hyper reports it as the exact size.
    let declared = body
        .size_hint()
        .exact()
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    if let Some(declared) = declared.filter(|&n| n > BODY_LIMIT) {
        if declared <= DRAIN_LIMIT {
            drain(body, 0).await;
        }
        return Err(AppError::TooLarge(BODY_LIMIT));
    }
    let mut bytes = Vec::with_capacity(declared.unwrap_or(0));
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| AppError::BadRequest(format!("could not read the body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if bytes.len() + data.len() > BODY_LIMIT {
            drain(body, bytes.len() + data.len()).await;
            return Err(AppError::TooLarge(BODY_LIMIT));
        }
        bytes.extend_from_slice(&data);
    }
    Ok(bytes)
}

/// Reads and discards the rest of `body` until its end, [`DRAIN_LIMIT`]
/// bytes in all (`read` counts those already read) or [`DRAIN_TIME`].
async fn drain(mut body: Body, mut read: usize) {
    let rest = async {
        while read <= DRAIN_LIMIT {
            match body.frame().await {
                Some(Ok(frame)) => read += frame.data_ref().map_or(0, |d| d.len()),
                Some(Err(_)) | None => break,
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, rest).await;
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
