//! `GET /healthz` and `GET /metrics`.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use super::state::OpsState;
use crate::metrics::CONTENT_TYPE;

/// 200 when MySQL answers; 503 otherwise.
pub async fn healthz(State(state): State<OpsState>) -> impl IntoResponse {
    if state.store.ping().await {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "mysql unavailable")
    }
}

/// OpenMetrics text.
pub async fn metrics(State(state): State<OpsState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        state.metrics.render(),
    )
}
