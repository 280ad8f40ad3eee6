//! The behaviour suite through redis-rs: `MultiplexedConnection` on a
//! single node, the layer's `AnyConnection` on the Cluster and the Sentinel
//! group (feature `redis`), and `ConnectionManager` for reconnection.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod suite;
mod support;

use redis::aio::{ConnectionManager, MultiplexedConnection};
use seckill_redis::redis_rs::AnyConnection;
use suite::Topo;

impl suite::Client for MultiplexedConnection {
    async fn connect(topo: Topo) -> Self {
        assert_eq!(topo, Topo::Single, "a MultiplexedConnection is one node");
        match suite::admin(topo).await {
            suite::Admin::Node(conn) => conn,
            suite::Admin::Cluster(_) => unreachable!("a single node"),
        }
    }
}

impl suite::Client for AnyConnection {
    async fn connect(topo: Topo) -> Self {
        seckill_redis::redis_rs::connect(&topo.url())
            .await
            .unwrap_or_else(|e| suite::unreachable(topo, e))
    }
}

mod single {
    use super::*;
    suite_tests!(MultiplexedConnection, Topo::Single);
}

mod cluster {
    use super::*;
    suite_tests!(AnyConnection, Topo::Cluster);
}

mod sentinel {
    use super::*;
    suite_tests!(AnyConnection, Topo::Sentinel);
}

mod connection_manager {
    use super::*;

    impl suite::Client for ConnectionManager {
        async fn connect(topo: Topo) -> Self {
            let client =
                redis::Client::open(topo.url()).unwrap_or_else(|e| suite::unreachable(topo, e));
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_response_timeout(Some(suite::RESPONSE_TIMEOUT));
            ConnectionManager::new_with_config(client, config)
                .await
                .unwrap_or_else(|e| suite::unreachable(topo, e))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn script_cache_survives_flush() {
        suite::script_cache_survives_flush::<ConnectionManager>(Topo::Single).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn same_request_id_deducts_once() {
        suite::same_request_id_deducts_once::<ConnectionManager>(Topo::Single).await;
    }
}
