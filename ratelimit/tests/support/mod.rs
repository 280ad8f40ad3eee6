//! Test support: the three shared Redis topologies (`scripts/redis-topologies.sh`),
//! both clients through seckill-redis, direct access to every data node
//! (script flushes, key scans), private topologies a test may stop, and the
//! macros that run one case on every (client, topology) pair.
#![allow(
    dead_code,
    unreachable_pub,
    unused_macros,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

pub mod prop;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use seckill_redis::redis_rs::AnyConnection;
use seckill_redis::{Arg, Connection, Value};

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

/// The URL of a shared topology: `REDIS_URL`, `REDIS_CLUSTER_URL`,
/// `REDIS_SENTINEL_URL`, defaulting to the local Redis and to what
/// `scripts/redis-topologies.sh` starts.
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

/// The limiter timeout of tests whose outcome must come from Redis: long
/// enough that a loaded CI machine never turns an answer into a timeout
/// (the default, 250 ms, is not), far below nextest's 60 s slow timeout.
pub const GENEROUS: Duration = Duration::from_secs(10);

/// `RedisLimiter::builder` with the [`GENEROUS`] timeout.
pub fn builder<C: Connection>(
    conn: C,
    name: impl Into<String>,
    algorithm: seckill_ratelimit::Algorithm,
) -> seckill_ratelimit::RedisLimiterBuilder<C> {
    seckill_ratelimit::RedisLimiter::builder(conn, name, algorithm).timeout(GENEROUS)
}

/// A limiter with the default policy and the [`GENEROUS`] timeout.
pub fn limiter<C: Connection>(
    conn: C,
    name: impl Into<String>,
    algorithm: seckill_ratelimit::Algorithm,
) -> Result<seckill_ratelimit::RedisLimiter<C>, seckill_ratelimit::ConfigError> {
    builder(conn, name, algorithm).build()
}

/// A fresh namespace for one test's limiter names.
pub fn unique(name: &str) -> String {
    format!("test:{name}:{}", uuid::Uuid::new_v4().simple())
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

/// Connects to a shared topology, or fails the test saying how to start it.
pub async fn connect(client: Client, topo: Topo) -> Conn {
    connect_url(client, &url(topo)).await
}

/// Connects to `url` (any topology form) through `client`.
pub async fn connect_url(client: Client, url: &str) -> Conn {
    let how = "start the local Redis with `bash scripts/services.sh` and the Cluster and \
               Sentinel group with `bash scripts/redis-topologies.sh` (scripts/test.sh does both), \
               or point REDIS_URL / REDIS_CLUSTER_URL / REDIS_SENTINEL_URL at yours";
    match client {
        Client::RedisRs => Conn::RedisRs(
            seckill_redis::redis_rs::connect(url)
                .await
                .unwrap_or_else(|e| panic!("Redis at {url} is unreachable ({e}); {how}")),
        ),
        Client::Fred => Conn::Fred(
            seckill_redis::fred::connect(url)
                .await
                .unwrap_or_else(|e| panic!("Redis at {url} is unreachable ({e}); {how}")),
        ),
    }
}

/// `redis://host:port` of every data node behind `url` (primaries and
/// replicas), as it is now.
pub async fn data_nodes(url: &str) -> Vec<String> {
    match seckill_redis::Topology::parse(url).expect("topology URL") {
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

async fn node(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("node url")
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"))
}

/// `SCRIPT FLUSH` on every data node of a shared topology. Tests that flush
/// or count loads carry `script_cache` in their names: nextest runs those
/// one at a time.
pub async fn flush_scripts(topo: Topo) {
    for url in data_nodes(&url(topo)).await {
        let _: () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut node(&url).await)
            .await
            .unwrap_or_else(|e| panic!("SCRIPT FLUSH on {url}: {e}"));
    }
}

/// Every key matching `pattern` on any data node behind `url` (a `SCAN` of
/// each node: on a cluster the keys of one limiter live on several).
pub async fn scan(url: &str, pattern: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for node_url in data_nodes(url).await {
        let mut conn = node(&node_url).await;
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .unwrap();
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    keys
}

/// `name key args...` through the connection under test (routed by `key`).
pub async fn cmd<C: Connection>(
    conn: &C,
    name: &'static str,
    key: &str,
    args: &[Arg<'_>],
) -> Value {
    seckill_redis::command(conn, name, &[key], args)
        .await
        .unwrap_or_else(|e| panic!("{name} {key}: {e}"))
}

pub async fn pttl<C: Connection>(conn: &C, key: &str) -> i64 {
    cmd(conn, "PTTL", key, &[]).await.as_int().expect("PTTL")
}

pub async fn del<C: Connection>(conn: &C, key: &str) {
    cmd(conn, "DEL", key, &[]).await;
}

/// Redis's clock in microseconds (on whichever node answers: one machine's).
pub async fn redis_now<C: Connection>(conn: &C) -> u64 {
    let time = seckill_redis::command(conn, "TIME", &[], &[])
        .await
        .expect("TIME");
    let Value::Array(parts) = time else {
        panic!("TIME replied {time:?}");
    };
    let secs = parts[0].as_int().expect("seconds") as u64;
    let micros = parts[1].as_int().expect("microseconds") as u64;
    secs * 1_000_000 + micros
}

/// A number from a string, integer or double reply.
pub fn number(value: &Value) -> f64 {
    match value {
        Value::Int(n) => *n as f64,
        Value::Data(_) => value.as_str().expect("utf-8").parse().expect("a number"),
        Value::Other(s) => s
            .trim_start_matches(|c: char| !c.is_ascii_digit() && c != '-')
            .trim_end_matches(|c: char| !c.is_ascii_digit())
            .parse()
            .unwrap_or_else(|_| panic!("not a number: {s}")),
        other => panic!("not a number: {other:?}"),
    }
}

/// `(member, score)` pairs of a `ZRANGE key start stop WITHSCORES`, in
/// either protocol's shape.
pub async fn zrange_with_scores<C: Connection>(
    conn: &C,
    key: &str,
    start: i64,
    stop: i64,
) -> Vec<(String, f64)> {
    let reply = cmd(
        conn,
        "ZRANGE",
        key,
        &[Arg::Int(start), Arg::Int(stop), Arg::Str("WITHSCORES")],
    )
    .await;
    let Value::Array(items) = reply else {
        panic!("ZRANGE replied {reply:?}");
    };
    let flat: Vec<Value> = items
        .into_iter()
        .flat_map(|item| match item {
            Value::Array(pair) => pair,
            one => vec![one],
        })
        .collect();
    flat.chunks(2)
        .map(|pair| {
            let member = pair[0].as_str().expect("member").to_owned();
            (member, number(&pair[1]))
        })
        .collect()
}

/// A spare port on 127.0.0.1.
pub fn spare_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// One `redis-server` process of a test's own.
struct Server {
    port: u16,
    args: Vec<String>,
    child: Option<Child>,
}

impl Server {
    fn new(port: u16, args: Vec<String>) -> Self {
        let mut server = Self {
            port,
            args,
            child: None,
        };
        server.start();
        server
    }

    fn start(&mut self) {
        let child = Command::new("redis-server")
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): the failover tests need the redis-server \
                     binary on PATH (`bash scripts/services.sh` installs it)"
                )
            });
        self.child = Some(child);
        wait_until(&format!("redis-server on port {}", self.port), || {
            query::<String>(self.port, &redis::cmd("PING")).is_ok()
        });
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One blocking call to `127.0.0.1:port`.
fn query<T: redis::FromRedisValue>(port: u16, cmd: &redis::Cmd) -> redis::RedisResult<T> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
    let mut conn = client.get_connection_with_timeout(Duration::from_millis(500))?;
    cmd.query(&mut conn)
}

/// Polls `ready` every 25 ms for up to 30 s (a liveness bound, not a timing
/// assertion).
fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    for _ in 0..1_200 {
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{what} was not ready within 30 s");
}

const PRIVATE_MASTER: &str = "ratelimit";

/// A Redis deployment of one test's own, on spare ports, so stopping it
/// touches nobody else's Redis: a single server, a 3-primary Cluster, or a
/// primary watched by one Sentinel. Everything is killed on drop.
pub struct PrivateRedis {
    pub topo: Topo,
    dir: PathBuf,
    /// The data nodes: the one server, the cluster's primaries, or the
    /// Sentinel group's primary.
    data: Vec<Server>,
    sentinel: Option<Server>,
}

impl PrivateRedis {
    pub fn start(topo: Topo) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "seckill-ratelimit-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut redis = Self {
            topo,
            dir,
            data: Vec::new(),
            sentinel: None,
        };
        match topo {
            Topo::Single | Topo::Sentinel => {
                let server = redis.server(Vec::new());
                redis.data.push(server);
            }
            Topo::Cluster => {
                for _ in 0..3 {
                    let bus = spare_port();
                    let server = redis.server(vec![
                        "--cluster-enabled".into(),
                        "yes".into(),
                        "--cluster-port".into(),
                        bus.to_string(),
                        "--cluster-config-file".into(),
                        "nodes.conf".into(),
                        "--cluster-node-timeout".into(),
                        "2000".into(),
                    ]);
                    redis.data.push(server);
                }
                redis.form_cluster();
            }
        }
        if topo == Topo::Sentinel {
            redis.start_sentinel();
        }
        redis.wait_healthy();
        redis
    }

    fn server(&self, extra: Vec<String>) -> Server {
        let port = spare_port();
        let dir = self.dir.join(port.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let mut args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(dir.display().to_string());
        args.extend(extra);
        Server::new(port, args)
    }

    /// Slots split in three, then every node meets the first.
    fn form_cluster(&self) {
        let per = 16_384 / self.data.len();
        for (i, server) in self.data.iter().enumerate() {
            let lo = i * per;
            let hi = if i + 1 == self.data.len() {
                16_383
            } else {
                lo + per - 1
            };
            let mut add = redis::cmd("CLUSTER");
            add.arg("ADDSLOTS");
            for slot in lo..=hi {
                add.arg(slot);
            }
            let () = query(server.port, &add).unwrap();
        }
        let first = self.data[0].port;
        for server in &self.data[1..] {
            let bus: u16 = cluster_bus_port(server);
            let () = query(
                first,
                redis::cmd("CLUSTER")
                    .arg("MEET")
                    .arg("127.0.0.1")
                    .arg(server.port)
                    .arg(bus),
            )
            .unwrap();
        }
    }

    fn start_sentinel(&mut self) {
        let port = spare_port();
        let dir = self.dir.join(format!("sentinel-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("sentinel.conf");
        std::fs::write(
            &config,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor {PRIVATE_MASTER} 127.0.0.1 {} 1\n\
                 sentinel down-after-milliseconds {PRIVATE_MASTER} 1000\n\
                 sentinel failover-timeout {PRIVATE_MASTER} 5000\n",
                dir.display(),
                self.data[0].port
            ),
        )
        .unwrap();
        self.sentinel = Some(Server::new(
            port,
            vec![config.display().to_string(), "--sentinel".into()],
        ));
    }

    /// Waits until every data node answers and the deployment serves: the
    /// cluster's slots all covered on every node, the Sentinel's primary
    /// flagged up.
    fn wait_healthy(&self) {
        for server in &self.data {
            wait_until("a private redis-server", || {
                query::<String>(server.port, &redis::cmd("PING")).is_ok()
            });
        }
        match self.topo {
            Topo::Single => {}
            Topo::Cluster => {
                for server in &self.data {
                    wait_until("the private cluster", || {
                        query::<String>(server.port, redis::cmd("CLUSTER").arg("INFO")).is_ok_and(
                            |info| {
                                info.contains("cluster_state:ok")
                                    && info.contains("cluster_slots_ok:16384")
                                    && info.contains("cluster_known_nodes:3")
                            },
                        )
                    });
                }
            }
            Topo::Sentinel => {
                let sentinel = self.sentinel.as_ref().unwrap().port;
                wait_until("the private sentinel", || {
                    query::<Vec<String>>(
                        sentinel,
                        redis::cmd("SENTINEL").arg("MASTER").arg(PRIVATE_MASTER),
                    )
                    .is_ok_and(|fields| {
                        fields
                            .iter()
                            .position(|f| f == "flags")
                            .and_then(|i| fields.get(i + 1))
                            .is_some_and(|flags| flags == "master")
                    })
                });
            }
        }
    }

    /// The URL of the deployment, in seckill-redis's forms.
    pub fn url(&self) -> String {
        let ports = |servers: &[Server]| {
            servers
                .iter()
                .map(|s| format!("127.0.0.1:{}", s.port))
                .collect::<Vec<_>>()
                .join(",")
        };
        match self.topo {
            Topo::Single => format!("redis://127.0.0.1:{}", self.data[0].port),
            Topo::Cluster => format!("redis+cluster://{}", ports(&self.data)),
            Topo::Sentinel => format!(
                "redis+sentinel://127.0.0.1:{}/{PRIVATE_MASTER}",
                self.sentinel.as_ref().unwrap().port
            ),
        }
    }

    /// `redis://` URLs of the data nodes.
    pub fn node_urls(&self) -> Vec<String> {
        self.data
            .iter()
            .map(|s| format!("redis://127.0.0.1:{}", s.port))
            .collect()
    }

    /// Kills every data node (the Sentinel stays up).
    pub fn stop(&mut self) {
        for server in &mut self.data {
            server.stop();
        }
    }

    /// Starts the data nodes again on their ports (a cluster node reloads
    /// its `nodes.conf`), and waits until the deployment serves.
    pub fn restart(&mut self) {
        for server in &mut self.data {
            server.start();
        }
        self.wait_healthy();
    }

    /// `CLIENT PAUSE millis ALL` on every data node: calls stall, nothing dies.
    pub fn pause(&self, millis: u64) {
        for server in &self.data {
            let () = query(
                server.port,
                redis::cmd("CLIENT").arg("PAUSE").arg(millis).arg("ALL"),
            )
            .unwrap();
        }
    }
}

fn cluster_bus_port(server: &Server) -> u16 {
    let at = server
        .args
        .iter()
        .position(|a| a == "--cluster-port")
        .unwrap();
    server.args[at + 1].parse().unwrap()
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.sentinel.take();
        self.data.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One `#[tokio::test]` per (client, shared topology) for each case
/// `async fn case<C: Connection>(conn: C, topo: Topo)`, named
/// `case::{redis_rs,fred}_{single,cluster,sentinel}`.
macro_rules! on_every_topology {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            use super::support::{Client, Topo, connect};

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis_rs_single() {
                let conn = connect(Client::RedisRs, Topo::Single).await;
                super::$case(conn.redis_rs(), Topo::Single).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis_rs_cluster() {
                let conn = connect(Client::RedisRs, Topo::Cluster).await;
                super::$case(conn.redis_rs(), Topo::Cluster).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis_rs_sentinel() {
                let conn = connect(Client::RedisRs, Topo::Sentinel).await;
                super::$case(conn.redis_rs(), Topo::Sentinel).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn fred_single() {
                let conn = connect(Client::Fred, Topo::Single).await;
                super::$case(conn.fred(), Topo::Single).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn fred_cluster() {
                let conn = connect(Client::Fred, Topo::Cluster).await;
                super::$case(conn.fred(), Topo::Cluster).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn fred_sentinel() {
                let conn = connect(Client::Fred, Topo::Sentinel).await;
                super::$case(conn.fred(), Topo::Sentinel).await;
            }
        }
    )*};
}

/// As [`on_every_topology`], on a [`PrivateRedis`] of each topology the
/// case may stop: `async fn case<C: Connection>(redis: &mut PrivateRedis, conn: C)`.
macro_rules! on_every_private_topology {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            use super::support::{Client, PrivateRedis, Topo, connect_url};

            async fn run(client: Client, topo: Topo) {
                let mut redis = PrivateRedis::start(topo);
                match connect_url(client, &redis.url()).await {
                    conn @ super::support::Conn::RedisRs(_) => {
                        super::$case(&mut redis, conn.redis_rs()).await
                    }
                    conn @ super::support::Conn::Fred(_) => {
                        super::$case(&mut redis, conn.fred()).await
                    }
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis_rs_single() {
                run(Client::RedisRs, Topo::Single).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis_rs_cluster() {
                run(Client::RedisRs, Topo::Cluster).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis_rs_sentinel() {
                run(Client::RedisRs, Topo::Sentinel).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn fred_single() {
                run(Client::Fred, Topo::Single).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn fred_cluster() {
                run(Client::Fred, Topo::Cluster).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn fred_sentinel() {
                run(Client::Fred, Topo::Sentinel).await;
            }
        }
    )*};
}
