//! Test support: the three topologies the test script starts, both clients,
//! and direct access to every data node (to flush script caches).
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use seckill_redis::redis_rs::AnyConnection;

/// Which deployment a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topo {
    Single,
    Cluster,
    Sentinel,
}

/// Which client a test runs through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    RedisRs,
    Fred,
}

/// The URL of a topology: `REDIS_URL`, `REDIS_CLUSTER_URL`,
/// `REDIS_SENTINEL_URL`, defaulting to what `scripts/redis-topologies.sh`
/// starts.
pub fn url(topo: Topo) -> String {
    let (var, default) = match topo {
        Topo::Single => ("REDIS_URL", "redis://127.0.0.1:6379"),
        Topo::Cluster => (
            "REDIS_CLUSTER_URL",
            "redis+cluster://127.0.0.1:17001,127.0.0.1:17002,127.0.0.1:17003,127.0.0.1:17004,127.0.0.1:17005,127.0.0.1:17006",
        ),
        Topo::Sentinel => (
            "REDIS_SENTINEL_URL",
            "redis+sentinel://127.0.0.1:17111,127.0.0.1:17112,127.0.0.1:17113/seckill",
        ),
    };
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

/// A connection through either client.
pub enum Conn {
    RedisRs(AnyConnection),
    Fred(fred::clients::Client),
}

impl Conn {
    pub fn redis_rs(self) -> AnyConnection {
        match self {
            Conn::RedisRs(c) => c,
            Conn::Fred(_) => panic!("asked a fred connection for redis-rs"),
        }
    }

    pub fn fred(self) -> fred::clients::Client {
        match self {
            Conn::Fred(c) => c,
            Conn::RedisRs(_) => panic!("asked a redis-rs connection for fred"),
        }
    }
}

/// Connects, or fails the test saying how to start the topology.
pub async fn connect(client: Client, topo: Topo) -> Conn {
    let url = url(topo);
    let how = "start it with `bash scripts/redis-topologies.sh` (scripts/test.sh does)";
    match client {
        Client::RedisRs => Conn::RedisRs(
            seckill_redis::redis_rs::connect(&url)
                .await
                .unwrap_or_else(|e| panic!("{topo:?} Redis at {url}: {e}; {how}")),
        ),
        Client::Fred => Conn::Fred(
            seckill_redis::fred::connect(&url)
                .await
                .unwrap_or_else(|e| panic!("{topo:?} Redis at {url}: {e}; {how}")),
        ),
    }
}

/// `redis://host:port` of every data node of a topology (primaries and
/// replicas), as it is now.
pub async fn data_nodes(topo: Topo) -> Vec<String> {
    match seckill_redis::Topology::parse(&url(topo)).expect("topology URL") {
        seckill_redis::Topology::Sentinel {
            sentinels, master, ..
        } => {
            let client = redis::Client::open(format!("redis://{}", sentinels[0])).expect("url");
            let mut conn = client
                .get_multiplexed_async_connection()
                .await
                .expect("sentinel");
            let primary: (String, String) = redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(&master)
                .query_async(&mut conn)
                .await
                .expect("primary");
            let replicas: Vec<std::collections::HashMap<String, String>> = redis::cmd("SENTINEL")
                .arg("replicas")
                .arg(&master)
                .query_async(&mut conn)
                .await
                .expect("replicas");
            let mut nodes = vec![format!("redis://{}:{}", primary.0, primary.1)];
            nodes.extend(
                replicas
                    .iter()
                    .filter(|r| !r.get("flags").is_some_and(|f| f.contains("down")))
                    .map(|r| format!("redis://{}:{}", r["ip"], r["port"])),
            );
            nodes
        }
        topology => topology.node_urls(),
    }
}

async fn on_every_node(topo: Topo, cmd: redis::Cmd) {
    for node in data_nodes(topo).await {
        let client = redis::Client::open(node.as_str()).expect("node url");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .unwrap_or_else(|e| panic!("{node}: {e}"));
        // A replica refuses writes such as FUNCTION DELETE: its primary's replicate.
        let _: redis::RedisResult<redis::Value> = cmd.query_async(&mut conn).await;
    }
}

/// `SCRIPT FLUSH` on every data node. Tests that flush or count loads carry
/// `script_cache` in their names: nextest runs those one at a time.
pub async fn flush_scripts(topo: Topo) {
    let mut cmd = redis::cmd("SCRIPT");
    cmd.arg("FLUSH");
    on_every_node(topo, cmd).await;
}

/// `FUNCTION DELETE library` on every primary.
pub async fn flush_functions(topo: Topo, library: &str) {
    let mut cmd = redis::cmd("FUNCTION");
    cmd.arg("DELETE").arg(library);
    on_every_node(topo, cmd).await;
}
