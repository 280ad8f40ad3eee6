//! Errors of the HTTP layer: each maps to a status and a JSON `{"error": …}`
//! that says what to do, without leaking internals.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// What went wrong with a request.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The request is malformed: 400.
    #[error("{0}")]
    BadRequest(String),
    /// The body is larger than the limit: 413.
    #[error("request body too large (limit {0} bytes)")]
    TooLarge(usize),
    /// This instance already works on `--max-in-flight` purchases: 503 with
    /// `"status": "overloaded"`; nothing was decided, retry with the same
    /// request id.
    #[error("the service is overloaded ({0} purchases in flight); retry with the same request_id")]
    Overloaded(usize),
    /// The adaptive limit in front of the stock deduction is reached (Redis
    /// answers slower than it can take more): 503 with `"status":
    /// "overloaded"`; nothing was decided, retry with the same request id.
    #[error(
        "the stock service is at its concurrency limit; nothing was decided, retry with the same request_id"
    )]
    Shed,
    /// The request id was used before for another purchase: 409.
    #[error("{0}")]
    Conflict(String),
    /// No such resource: 404.
    #[error("{0}")]
    NotFound(String),
    /// Missing or wrong bearer token: 401.
    #[error("missing or wrong bearer token")]
    Unauthorized,
    /// The buyer's token is missing, expired, forged or contradicted: 401
    /// with `"status": "unauthorized"`; nothing was decided.
    #[error("{0}")]
    Unauthenticated(#[from] crate::identity::token::AuthError),
    /// The buyer may not do this: 403 with `status` (`blocked`,
    /// `forbidden`, `challenge_failed`); nothing was decided.
    #[error("{message}")]
    Forbidden {
        /// The `status` field.
        status: &'static str,
        /// What happened and what to do.
        message: String,
    },
    /// A backing service failed; the client may retry: 503.
    #[error("{0}")]
    Unavailable(String),
    /// The SKU's sale is paused while its stock is rebuilt: 503 with
    /// `"status": "paused"`; retry with the same request id.
    #[error(
        "the sale of SKU {0} is paused while its stock is rebuilt; retry with the same request_id"
    )]
    Paused(u64),
}

impl AppError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::Unauthorized | AppError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden { .. } => StatusCode::FORBIDDEN,
            AppError::Unavailable(_)
            | AppError::Paused(_)
            | AppError::Overloaded(_)
            | AppError::Shed => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.to_string() });
        if matches!(self, AppError::Paused(_)) {
            body["status"] = json!("paused");
        }
        if matches!(self, AppError::Overloaded(_) | AppError::Shed) {
            body["status"] = json!("overloaded");
        }
        if matches!(self, AppError::Unauthenticated(_)) {
            body["status"] = json!("unauthorized");
        }
        if let AppError::Forbidden { status, .. } = &self {
            body["status"] = json!(status);
        }
        let mut response = (self.status(), Json(body)).into_response();
        match self {
            AppError::Unauthorized
            | AppError::Unauthenticated(crate::identity::token::AuthError::Missing) => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            AppError::Unauthenticated(_) => {
                // RFC 6750: the token was presented and refused.
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
            }
            AppError::Unavailable(_)
            | AppError::Paused(_)
            | AppError::Overloaded(_)
            | AppError::Shed => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            AppError::TooLarge(_) => {
                // The rest of the body may be unread: the connection cannot
                // carry another request.
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}

impl From<crate::domain::ports::Unavailable> for AppError {
    /// Logged with its detail; the client hears which service to retry.
    fn from(error: crate::domain::ports::Unavailable) -> Self {
        use crate::domain::ports::Cause;
        match error.cause {
            Cause::Failed => tracing::error!(%error, "a service failed"),
            // Not called at all: the breaker logs when it starts throttling.
            Cause::Throttled | Cause::Shed => {
                tracing::debug!(%error, "a service call was not made")
            }
        }
        AppError::Unavailable(format!("{} is unavailable; retry", error.service))
    }
}
