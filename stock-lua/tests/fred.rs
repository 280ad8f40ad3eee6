//! The behaviour suite through fred (feature `fred`) on a single node, the
//! Cluster and the Sentinel group, with clients built by the layer's
//! `seckill_redis::fred::connect`.
#![cfg(feature = "fred")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod suite;
mod support;

use fred::clients::Client;
use suite::Topo;

impl suite::Client for Client {
    async fn connect(topo: Topo) -> Self {
        seckill_redis::fred::connect(&topo.url())
            .await
            .unwrap_or_else(|e| suite::unreachable(topo, e))
    }
}

mod single {
    use super::*;
    suite_tests!(Client, Topo::Single);
}

mod cluster {
    use super::*;
    suite_tests!(Client, Topo::Cluster);
}

mod sentinel {
    use super::*;
    suite_tests!(Client, Topo::Sentinel);
}
