//! Shared helpers for the tests against real Redis deployments: the three
//! topologies `scripts/redis-topologies.sh` starts (a single server, a
//! 3-primary Cluster, a Sentinel group), connections through both clients,
//! an admin connection for the tests' own checks, unique key namespaces,
//! ACL users on every node, and Redis servers of the test's own behind a
//! TCP proxy that can cut or stall them (a real network fault in front of a
//! real server; the shared topologies' nodes are never stopped).
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use seckill_redis::redis_rs::AnyConnection;
use seckill_redis::{Arg, Value, command};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Which deployment a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topo {
    Single,
    Cluster,
    Sentinel,
}

const HOW: &str = "start the cluster and the sentinel group with `bash scripts/redis-topologies.sh`, \
     the single server with `bash scripts/services.sh` (scripts/test.sh does both), or point \
     REDIS_URL / REDIS_CLUSTER_URL / REDIS_SENTINEL_URL at running ones";

/// The URL of a topology: `REDIS_URL`, `REDIS_CLUSTER_URL`,
/// `REDIS_SENTINEL_URL`, defaulting to the local services and to what
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

/// `url` with `user:password@` inserted after the scheme.
pub fn with_credentials(url: &str, user: &str, password: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{user}:{password}@{rest}"),
        None => url.to_owned(),
    }
}

/// How many cases a heavy test runs: all of them on the single server,
/// a quarter (at least 2) on the Cluster and the Sentinel group, which
/// exercise the same code through other routing.
pub fn scaled(topo: Topo, full: u32) -> u32 {
    match topo {
        Topo::Single => full,
        Topo::Cluster | Topo::Sentinel => (full / 4).max(2),
    }
}

/// A key prefix no other test uses.
pub fn namespace() -> String {
    format!("test:cache-aside:{}", uuid::Uuid::new_v4().simple())
}

/// A Redis client and topology a test runs through.
pub trait Connect: Copy + Send + Sync + 'static {
    /// The connection the cache under test gets.
    type Conn: seckill_cache_aside::Connection;
    /// The topology.
    fn topo(self) -> Topo;
    /// A connection to `url`, a URL of this topology's kind.
    fn at(self, url: &str) -> impl Future<Output = Self::Conn> + Send;
    /// A connection to the topology.
    fn connect(self) -> impl Future<Output = Self::Conn> + Send {
        let url = url(self.topo());
        async move { self.at(&url).await }
    }
}

/// redis-rs, through `seckill_redis::redis_rs::connect`.
#[derive(Debug, Clone, Copy)]
pub struct RedisRs(pub Topo);

#[cfg(feature = "redis")]
impl Connect for RedisRs {
    type Conn = AnyConnection;
    fn topo(self) -> Topo {
        self.0
    }
    async fn at(self, url: &str) -> AnyConnection {
        seckill_redis::redis_rs::connect(url)
            .await
            .unwrap_or_else(|e| panic!("{:?} Redis at {url}: {e}; {HOW}", self.0))
    }
}

/// fred, through `seckill_redis::fred::connect`.
#[derive(Debug, Clone, Copy)]
pub struct Fred(pub Topo);

#[cfg(feature = "fred")]
impl Connect for Fred {
    type Conn = fred::clients::Client;
    fn topo(self) -> Topo {
        self.0
    }
    async fn at(self, url: &str) -> fred::clients::Client {
        seckill_redis::fred::connect(url)
            .await
            .unwrap_or_else(|e| panic!("{:?} Redis at {url}: {e}; {HOW}", self.0))
    }
}

/// Instantiates test bodies for every client and topology: `async: name,
/// ...` for `async fn name(client: impl Connect)`, `sync: name, ...` for
/// `fn name(client: impl Connect)` (property tests, which run their own
/// runtime). Each `name` becomes a module of six tests, `name::redis_rs_single`
/// to `name::fred_sentinel`, the redis-rs ones with feature `redis` and the
/// fred ones with feature `fred`.
#[macro_export]
macro_rules! on_every_topology {
    (async: $($case:ident),* $(,)?) => {$(
        mod $case {
            #[allow(unused_imports)]
            use $crate::support::{Fred, RedisRs, Topo};

            #[cfg(feature = "redis")]
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis_rs_single() { super::$case(RedisRs(Topo::Single)).await; }
            #[cfg(feature = "redis")]
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis_rs_cluster() { super::$case(RedisRs(Topo::Cluster)).await; }
            #[cfg(feature = "redis")]
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis_rs_sentinel() { super::$case(RedisRs(Topo::Sentinel)).await; }
            #[cfg(feature = "fred")]
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn fred_single() { super::$case(Fred(Topo::Single)).await; }
            #[cfg(feature = "fred")]
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn fred_cluster() { super::$case(Fred(Topo::Cluster)).await; }
            #[cfg(feature = "fred")]
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn fred_sentinel() { super::$case(Fred(Topo::Sentinel)).await; }
        }
    )*};
    (sync: $($case:ident),* $(,)?) => {$(
        mod $case {
            #[allow(unused_imports)]
            use $crate::support::{Fred, RedisRs, Topo};

            #[cfg(feature = "redis")]
            #[test]
            fn redis_rs_single() { super::$case(RedisRs(Topo::Single)); }
            #[cfg(feature = "redis")]
            #[test]
            fn redis_rs_cluster() { super::$case(RedisRs(Topo::Cluster)); }
            #[cfg(feature = "redis")]
            #[test]
            fn redis_rs_sentinel() { super::$case(RedisRs(Topo::Sentinel)); }
            #[cfg(feature = "fred")]
            #[test]
            fn fred_single() { super::$case(Fred(Topo::Single)); }
            #[cfg(feature = "fred")]
            #[test]
            fn fred_cluster() { super::$case(Fred(Topo::Cluster)); }
            #[cfg(feature = "fred")]
            #[test]
            fn fred_sentinel() { super::$case(Fred(Topo::Sentinel)); }
        }
    )*};
}

/// The tests' own connection to a topology, for raw reads and writes that
/// bypass the cache (routed by key on a cluster, to the primary on Sentinel).
#[derive(Clone)]
pub struct Admin {
    pub topo: Topo,
    conn: AnyConnection,
}

/// An [`Admin`] connection to `topo`.
pub async fn admin(topo: Topo) -> Admin {
    let url = url(topo);
    let conn = seckill_redis::redis_rs::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{topo:?} Redis at {url}: {e}; {HOW}"));
    Admin { topo, conn }
}

impl Admin {
    /// Any one-key command.
    pub async fn cmd(&self, name: &'static str, key: &str, args: &[Arg<'_>]) -> Value {
        command(&self.conn, name, &[key], args)
            .await
            .unwrap_or_else(|e| panic!("{name} {key}: {e}"))
    }

    pub async fn get(&self, key: &str) -> Option<Vec<u8>> {
        match self.cmd("GET", key, &[]).await {
            Value::Nil => None,
            Value::Data(bytes) => Some(bytes),
            other => panic!("GET {key}: {other:?}"),
        }
    }

    /// `SET key bytes`, without a TTL.
    pub async fn set(&self, key: &str, bytes: &[u8]) {
        self.cmd("SET", key, &[Arg::Bytes(bytes)]).await;
    }

    pub async fn exists(&self, key: &str) -> bool {
        self.cmd("EXISTS", key, &[]).await.as_int() == Some(1)
    }

    pub async fn del(&self, key: &str) {
        self.cmd("DEL", key, &[]).await;
    }

    pub async fn persist(&self, key: &str) {
        self.cmd("PERSIST", key, &[]).await;
    }

    /// `PTTL key`: -1 for a key without TTL, -2 for a missing key.
    pub async fn pttl(&self, key: &str) -> i64 {
        self.cmd("PTTL", key, &[])
            .await
            .as_int()
            .unwrap_or_else(|| panic!("PTTL {key}"))
    }

    /// Every key starting with `prefix`, on every primary (SCAN, so it is
    /// safe on a shared server), sorted.
    pub async fn keys_under(&self, prefix: &str) -> Vec<String> {
        let mut keys = BTreeSet::new();
        for node in primaries(self.topo).await {
            keys.extend(scan(&node, prefix).await);
        }
        keys.into_iter().collect()
    }

    /// Deletes every key under `prefix` (this test's own namespace only).
    pub async fn delete_under(&self, prefix: &str) {
        for key in self.keys_under(prefix).await {
            self.del(&key).await;
        }
    }

    /// `CLUSTER KEYSLOT key` (a cluster only).
    pub async fn slot(&self, key: &str) -> i64 {
        let node = node(&primaries(Topo::Cluster).await[0]).await;
        let mut conn = node;
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap()
    }
}

/// A plain connection to one node (`redis://host:port`).
pub async fn node(url: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(url).unwrap_or_else(|e| panic!("{url}: {e}"));
    client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("Redis node {url}: {e}; {HOW}"))
}

/// Escapes glob characters for `SCAN MATCH`.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The keys starting with `prefix` on one node.
pub async fn scan(node_url: &str, prefix: &str) -> Vec<String> {
    let mut conn = node(node_url).await;
    let mut keys = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{}*", glob_escape(prefix)))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .unwrap();
        keys.extend(batch);
        if next == 0 {
            return keys;
        }
        cursor = next;
    }
}

/// The `host:port` of every sentinel of the Sentinel topology, and the
/// master name.
fn sentinels() -> (Vec<String>, String) {
    match seckill_redis::Topology::parse(&url(Topo::Sentinel)).expect("sentinel URL") {
        seckill_redis::Topology::Sentinel {
            sentinels, master, ..
        } => (sentinels, master),
        other => panic!("REDIS_SENTINEL_URL names {other:?}"),
    }
}

/// `redis://host:port` of the cluster's nodes, primaries first, as some
/// node sees them now (failed nodes left out).
async fn cluster_nodes() -> (Vec<String>, Vec<String>) {
    let seeds = seckill_redis::Topology::parse(&url(Topo::Cluster))
        .expect("cluster URL")
        .node_urls();
    for seed in &seeds {
        let Ok(client) = redis::Client::open(seed.as_str()) else {
            continue;
        };
        let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
            continue;
        };
        let Ok(text) = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async::<String>(&mut conn)
            .await
        else {
            continue;
        };
        let (mut primaries, mut replicas) = (Vec::new(), Vec::new());
        for line in text.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(addr), Some(flags)) = (fields.get(1), fields.get(2)) else {
                continue;
            };
            if flags.contains("fail") || flags.contains("noaddr") {
                continue;
            }
            let host_port = addr.split('@').next().unwrap_or(addr);
            let url = format!("redis://{host_port}");
            if flags.contains("master") {
                primaries.push(url);
            } else {
                replicas.push(url);
            }
        }
        primaries.sort();
        return (primaries, replicas);
    }
    panic!("no node of the Redis Cluster answers; {HOW}");
}

/// The primary and the replicas of the Sentinel group, as the first
/// sentinel that answers sees them.
async fn sentinel_nodes() -> (String, Vec<String>) {
    let (sentinels, master) = sentinels();
    for sentinel in &sentinels {
        let Ok(client) = redis::Client::open(format!("redis://{sentinel}")) else {
            continue;
        };
        let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
            continue;
        };
        let Ok(primary) = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(&master)
            .query_async::<(String, String)>(&mut conn)
            .await
        else {
            continue;
        };
        let replicas: Vec<HashMap<String, String>> = redis::cmd("SENTINEL")
            .arg("replicas")
            .arg(&master)
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        let replicas = replicas
            .iter()
            .filter(|r| !r.get("flags").is_some_and(|f| f.contains("down")))
            .filter_map(|r| Some(format!("redis://{}:{}", r.get("ip")?, r.get("port")?)))
            .collect();
        return (format!("redis://{}:{}", primary.0, primary.1), replicas);
    }
    panic!("no sentinel of {sentinels:?} answers; {HOW}");
}

/// `redis://host:port` of every primary of a topology.
pub async fn primaries(topo: Topo) -> Vec<String> {
    match topo {
        Topo::Single => vec![url(Topo::Single)],
        Topo::Cluster => cluster_nodes().await.0,
        Topo::Sentinel => vec![sentinel_nodes().await.0],
    }
}

/// `redis://host:port` of every data node of a topology (primaries and
/// replicas).
pub async fn data_nodes(topo: Topo) -> Vec<String> {
    match topo {
        Topo::Single => vec![url(Topo::Single)],
        Topo::Cluster => {
            let (mut nodes, replicas) = cluster_nodes().await;
            nodes.extend(replicas);
            nodes
        }
        Topo::Sentinel => {
            let (primary, mut nodes) = sentinel_nodes().await;
            nodes.insert(0, primary);
            nodes
        }
    }
}

/// Runs `cmd` on each of `nodes`; panics on an error reply.
async fn on_each(nodes: &[String], cmd: &redis::Cmd) {
    for url in nodes {
        let mut conn = node(url).await;
        cmd.query_async::<redis::Value>(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
    }
}

/// `SCRIPT FLUSH` on every data node. Tests that flush carry `script_cache`
/// in their names: nextest runs those one at a time (other crates' tests
/// count script loads).
pub async fn flush_scripts(topo: Topo) {
    let mut cmd = redis::cmd("SCRIPT");
    cmd.arg("FLUSH");
    on_each(&data_nodes(topo).await, &cmd).await;
}

/// Waits (up to 20 s, then fails) until `check` holds; for conditions that
/// a background task makes true. Never a timing assertion: only a bound on
/// how long a broken build may hang.
pub async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..4000 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("gave up waiting for: {what}");
}

/// An ACL user limited to keys starting with a prefix, on every data node
/// of a topology (ACLs are per server: a cluster or a replica does not
/// propagate them). Deleted by [`AclUser::delete`].
pub struct AclUser {
    pub topo: Topo,
    pub name: String,
    pub password: String,
    nodes: Vec<String>,
    sentinels: Vec<String>,
}

impl AclUser {
    pub async fn create(topo: Topo, keys: &str, rules: &[&str]) -> AclUser {
        let name = format!("cache-aside-{}", uuid::Uuid::new_v4().simple());
        let password = uuid::Uuid::new_v4().simple().to_string();
        let nodes = data_nodes(topo).await;
        let mut cmd = redis::cmd("ACL");
        cmd.arg("SETUSER")
            .arg(&name)
            .arg("on")
            .arg(format!(">{password}"))
            .arg(format!("~{keys}*"))
            .arg("+@all");
        let mut sentinels = Vec::new();
        if topo == Topo::Sentinel {
            // fred (without its `sentinel-auth` feature) logs in to the
            // Sentinels with the data nodes' credentials: they need the
            // user too (without the rules, which name data commands).
            sentinels = self::sentinels()
                .0
                .iter()
                .map(|s| format!("redis://{s}"))
                .collect();
            on_each(&sentinels, &cmd).await;
        }
        for rule in rules {
            cmd.arg(*rule);
        }
        on_each(&nodes, &cmd).await;
        AclUser {
            topo,
            name,
            password,
            nodes,
            sentinels,
        }
    }

    pub async fn rule(&self, rule: &str) {
        let mut cmd = redis::cmd("ACL");
        cmd.arg("SETUSER").arg(&self.name).arg(rule);
        on_each(&self.nodes, &cmd).await;
    }

    /// The topology's URL, logging in as this user.
    pub fn url(&self) -> String {
        with_credentials(&url(self.topo), &self.name, &self.password)
    }

    pub async fn delete(self) {
        let mut cmd = redis::cmd("ACL");
        cmd.arg("DELUSER").arg(&self.name);
        on_each(&self.nodes, &cmd).await;
        on_each(&self.sentinels, &cmd).await;
    }
}

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Forward,
    /// Holds every byte: Redis looks hung.
    Stall,
    /// Closes every connection and refuses new ones: Redis looks down.
    Down,
}

/// A TCP proxy in front of a Redis server.
pub struct Proxy {
    pub addr: String,
    mode: watch::Sender<Mode>,
}

impl Proxy {
    /// Forwards connections accepted on `listener` to `target` (`host:port`).
    pub fn serve(listener: TcpListener, target: String) -> Proxy {
        let addr = listener.local_addr().unwrap().to_string();
        let (mode, _) = watch::channel(Mode::Forward);
        let modes = mode.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *modes.borrow() == Mode::Down {
                    continue;
                }
                let Ok(server) = TcpStream::connect(&target).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pipe(client_read, server_write, modes.subscribe()));
                tokio::spawn(pipe(server_read, client_write, modes.subscribe()));
            }
        });
        Proxy { addr, mode }
    }

    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

async fn until_down(mode: &mut watch::Receiver<Mode>) {
    loop {
        if *mode.borrow_and_update() == Mode::Down {
            return;
        }
        if mode.changed().await.is_err() {
            return;
        }
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            () = until_down(&mut mode) => return,
        };
        loop {
            match *mode.borrow_and_update() {
                Mode::Forward => break,
                Mode::Down => return,
                Mode::Stall => {}
            }
            if mode.changed().await.is_err() {
                return;
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// A `redis-server` process of the test's own (a data node or a sentinel),
/// stopped by its process id when dropped.
struct Server {
    child: Child,
    dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A free loopback port (bound, then released, for a server to take).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Starts `redis-server` with `args` (a sentinel when `config` is given)
/// in a fresh directory, and waits until `port` answers PING.
async fn start_server(port: u16, args: &[String], config: Option<String>) -> Server {
    let dir = std::env::temp_dir().join(format!(
        "seckill-cache-aside-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let mut cmd = Command::new("redis-server");
    if let Some(config) = config {
        let path = dir.join("sentinel.conf");
        std::fs::write(&path, config).unwrap();
        cmd.arg(&path).arg("--sentinel");
    }
    cmd.arg("--port")
        .arg(port.to_string())
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(&dir)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = cmd.spawn().unwrap_or_else(|e| {
        panic!("cannot start redis-server ({e}): install it (scripts/redis-topologies.sh does)")
    });
    let server = Server { child, dir };
    let url = format!("redis://127.0.0.1:{port}");
    eventually(&format!("redis-server on port {port}"), async || {
        let Ok(client) = redis::Client::open(url.as_str()) else {
            return false;
        };
        let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
            return false;
        };
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .is_ok()
    })
    .await;
    server
}

/// A deployment of the test's own topology kind, reached through a
/// [`Proxy`] that can cut or stall it: the shared topologies' nodes are
/// never stopped.
///
/// - Single: a proxy in front of the shared single server.
/// - Cluster: a one-node cluster of its own (all 16,384 slots) that
///   announces the proxy's port, so clients reach it only through the proxy.
/// - Sentinel: a server and a sentinel of its own; the sentinel monitors
///   the server at the proxy's address, so clients reach it only through
///   the proxy.
pub struct Faulty {
    pub url: String,
    proxy: Proxy,
    _servers: Vec<Server>,
}

impl Faulty {
    pub async fn start(topo: Topo) -> Faulty {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy_port = listener.local_addr().unwrap().port();
        match topo {
            Topo::Single => {
                let upstream = url(Topo::Single);
                let target = upstream
                    .split_once("://")
                    .map(|(_, rest)| {
                        let rest = rest.rsplit('@').next().unwrap_or(rest);
                        rest.split('/').next().unwrap_or(rest).to_owned()
                    })
                    .unwrap();
                Faulty {
                    url: format!("redis://127.0.0.1:{proxy_port}"),
                    proxy: Proxy::serve(listener, target),
                    _servers: Vec::new(),
                }
            }
            Topo::Cluster => {
                let (port, bus) = (free_port(), free_port());
                let args: Vec<String> = [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-port",
                    &bus.to_string(),
                    "--cluster-announce-ip",
                    "127.0.0.1",
                    "--cluster-announce-port",
                    &proxy_port.to_string(),
                    "--cluster-announce-bus-port",
                    &bus.to_string(),
                ]
                .map(str::to_owned)
                .to_vec();
                let server = start_server(port, &args, None).await;
                let mut conn = node(&format!("redis://127.0.0.1:{port}")).await;
                let _: () = redis::cmd("CLUSTER")
                    .arg("ADDSLOTSRANGE")
                    .arg(0)
                    .arg(16_383)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                eventually("the one-node cluster is up", async || {
                    redis::cmd("CLUSTER")
                        .arg("INFO")
                        .query_async::<String>(&mut conn)
                        .await
                        .is_ok_and(|info| info.contains("cluster_state:ok"))
                })
                .await;
                Faulty {
                    url: format!("redis+cluster://127.0.0.1:{proxy_port}"),
                    proxy: Proxy::serve(listener, format!("127.0.0.1:{port}")),
                    _servers: vec![server],
                }
            }
            Topo::Sentinel => {
                let port = free_port();
                let data = start_server(port, &[], None).await;
                let proxy = Proxy::serve(listener, format!("127.0.0.1:{port}"));
                let sentinel_port = free_port();
                let config = format!(
                    "sentinel monitor faulty 127.0.0.1 {proxy_port} 1\n\
                     sentinel down-after-milliseconds faulty 60000\n"
                );
                let sentinel = start_server(sentinel_port, &[], Some(config)).await;
                let mut conn = node(&format!("redis://127.0.0.1:{sentinel_port}")).await;
                eventually("the sentinel names the primary", async || {
                    redis::cmd("SENTINEL")
                        .arg("get-master-addr-by-name")
                        .arg("faulty")
                        .query_async::<(String, u16)>(&mut conn)
                        .await
                        .is_ok_and(|(_, port)| port == proxy_port)
                })
                .await;
                Faulty {
                    url: format!("redis+sentinel://127.0.0.1:{sentinel_port}/faulty"),
                    proxy,
                    _servers: vec![data, sentinel],
                }
            }
        }
    }

    pub fn set(&self, mode: Mode) {
        self.proxy.set(mode);
    }
}

/// The seed property tests use unless `PROPTEST_RNG_SEED` says otherwise.
pub const PROPTEST_SEED: u64 = 0x5ec0_ca5e_a51d_e001;

/// The configuration of every property test of this crate: `cases` cases
/// (unless `PROPTEST_CASES` is set: proptest's default config reads it) and
/// a fixed seed, `PROPTEST_RNG_SEED` when set, else [`PROPTEST_SEED`], so a
/// run is reproducible.
pub fn proptest_config(cases: u32) -> proptest::test_runner::Config {
    let mut config = proptest::test_runner::Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    let seed = std::env::var("PROPTEST_RNG_SEED")
        .ok()
        .map(|s| {
            s.trim()
                .parse()
                .unwrap_or_else(|e| panic!("PROPTEST_RNG_SEED={s:?} is not a u64: {e}"))
        })
        .unwrap_or(PROPTEST_SEED);
    config.rng_seed = proptest::test_runner::RngSeed::Fixed(seed);
    // The seed reproduces a failure; no regression files in the source tree.
    config.failure_persistence = None;
    config
}

/// A codec that stores a `Vec<u8>` value as its bytes, verbatim (what
/// follows the cache's tag in Redis is exactly the value).
#[derive(Debug, Clone, Copy, Default)]
pub struct RawBytes;

impl seckill_cache_aside::Codec for RawBytes {
    fn encode<V: serde::Serialize>(
        &self,
        value: &V,
        out: &mut Vec<u8>,
    ) -> Result<(), seckill_cache_aside::CodecError> {
        let value = serde_json::to_value(value)
            .map_err(|e| seckill_cache_aside::CodecError::encode("raw", e))?;
        let serde_json::Value::Array(items) = value else {
            return Err(seckill_cache_aside::CodecError::encode(
                "raw",
                std::io::Error::other("RawBytes stores Vec<u8> only"),
            ));
        };
        for item in items {
            let byte = item
                .as_u64()
                .and_then(|n| u8::try_from(n).ok())
                .ok_or_else(|| {
                    seckill_cache_aside::CodecError::encode(
                        "raw",
                        std::io::Error::other("RawBytes stores Vec<u8> only"),
                    )
                })?;
            out.push(byte);
        }
        Ok(())
    }

    fn decode<V: serde::de::DeserializeOwned>(
        &self,
        bytes: &[u8],
    ) -> Result<V, seckill_cache_aside::CodecError> {
        let value = serde_json::Value::Array(bytes.iter().map(|&b| b.into()).collect());
        serde_json::from_value(value).map_err(|e| seckill_cache_aside::CodecError::decode("raw", e))
    }
}

/// A multi-threaded runtime for a property test (proptest's closures are
/// synchronous; each case blocks on its async body).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
