//! The HTTP API: handlers parse the request, call the domain, and map its
//! answer to a status and a JSON body. No rule, SQL, Redis or Kafka call
//! lives here.

pub mod admin;
pub mod error;
pub mod extract;
pub mod identity;
pub mod ops;
pub mod orders;
pub mod rate_headers;
pub mod seckill;
pub mod skus;
pub mod state;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};

use self::state::HttpState;

/// The routes, ready to serve or to test with `oneshot`.
pub fn app(state: HttpState) -> Router {
    let admin = state.admin.clone();
    let mut router = Router::new()
        .route("/api/v1/seckill", post(seckill::seckill))
        .route("/api/v1/orders/{request_id}", get(orders::order_status))
        .route("/api/v1/skus/{sku_id}", get(skus::get_sku))
        .route("/api/v1/challenge", get(identity::challenge))
        .route("/api/v1/demo/token", post(identity::demo_token))
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .with_state(state);
    if let Some(admin) = admin {
        // The admin routes exist only with a token; they carry their own state.
        router = router.merge(
            Router::new()
                .route("/api/v1/admin/skus/{sku_id}", put(admin::put_sku))
                .route("/api/v1/admin/calibration", get(admin::calibration))
                .route("/api/v1/admin/blacklist", get(admin::blacklist))
                .route(
                    "/api/v1/admin/blacklist/{list}/{value}",
                    put(admin::block).delete(admin::unblock),
                )
                .with_state(admin),
        );
    }
    router.layer(DefaultBodyLimit::max(extract::BODY_LIMIT))
}
