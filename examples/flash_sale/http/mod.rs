//! The HTTP API.

pub mod error;
pub mod extract;
pub mod ops;
pub mod orders;
pub mod seckill;
pub mod skus;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};

use crate::state::AppState;

/// The routes, ready to serve or to test with `oneshot`.
pub fn app(state: AppState) -> Router {
    let mut router = Router::new()
        .route("/api/v1/seckill", post(seckill::seckill))
        .route("/api/v1/orders/{request_id}", get(orders::order_status))
        .route("/api/v1/skus/{sku_id}", get(skus::get_sku))
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics));
    if state.admin_token.is_some() {
        router = router.route("/api/v1/admin/skus/{sku_id}", put(skus::put_sku));
    }
    router
        .layer(DefaultBodyLimit::max(extract::BODY_LIMIT))
        .with_state(state)
}
