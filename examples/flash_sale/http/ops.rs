//! `GET /healthz` and `GET /metrics`.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use crate::state::AppState;

/// 200 when MySQL answers; 503 otherwise.
pub async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    match sqlx::query("SELECT 1").execute(&state.db).await {
        Ok(_) => (StatusCode::OK, "ok"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "mysql unavailable"),
    }
}

/// Prometheus text.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let cache = state.cache.stats();
    let extra = [
        (
            "seckill_cache_hits_total",
            "SKU cache hits.",
            cache.hits + cache.front_hits + cache.not_found_hits,
        ),
        (
            "seckill_cache_misses_total",
            "SKU cache misses.",
            cache.misses,
        ),
        (
            "seckill_cache_loads_total",
            "SKU loads from MySQL.",
            cache.loads,
        ),
    ];
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(&extra),
    )
}
