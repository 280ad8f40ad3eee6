//! The behaviour suite through the redis-rs adapter (feature `redis`).
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod suite;
mod support;

use redis::aio::{ConnectionManager, MultiplexedConnection};

impl suite::Client for MultiplexedConnection {
    async fn connect() -> Self {
        suite::admin().await
    }
}

suite_tests!(MultiplexedConnection);

mod connection_manager {
    use super::*;

    impl suite::Client for ConnectionManager {
        async fn connect() -> Self {
            let client =
                redis::Client::open(suite::redis_url()).unwrap_or_else(|e| suite::unreachable(e));
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_response_timeout(Some(suite::RESPONSE_TIMEOUT));
            ConnectionManager::new_with_config(client, config)
                .await
                .unwrap_or_else(|e| suite::unreachable(e))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn survives_script_flush() {
        suite::survives_script_flush::<ConnectionManager>().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn same_request_id_deducts_once() {
        suite::same_request_id_deducts_once::<ConnectionManager>().await;
    }
}
