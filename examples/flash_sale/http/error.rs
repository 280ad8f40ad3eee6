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
    /// The request id was used before for another purchase: 409.
    #[error("{0}")]
    Conflict(String),
    /// No such resource: 404.
    #[error("{0}")]
    NotFound(String),
    /// Missing or wrong bearer token: 401.
    #[error("missing or wrong bearer token")]
    Unauthorized,
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
            AppError::Unauthorized => StatusCode::UNAUTHORIZED,
            AppError::Unavailable(_) | AppError::Paused(_) | AppError::Overloaded(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.to_string() });
        if matches!(self, AppError::Paused(_)) {
            body["status"] = json!("paused");
        }
        if matches!(self, AppError::Overloaded(_)) {
            body["status"] = json!("overloaded");
        }
        let mut response = (self.status(), Json(body)).into_response();
        match self {
            AppError::Unauthorized => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            AppError::Unavailable(_) | AppError::Paused(_) | AppError::Overloaded(_) => {
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
        tracing::error!(%error, "a service failed");
        AppError::Unavailable(format!("{} is unavailable; retry", error.service))
    }
}
