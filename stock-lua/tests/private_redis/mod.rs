//! Private Redis topologies, one per test: a Redis Cluster (3 primaries, 3
//! replicas) and a Sentinel group (primary, replica, 3 Sentinels), started
//! on free loopback ports chosen here, in a temporary directory, with no
//! persistence.
//!
//! Failover tests run on these, never on the shared topologies of
//! `scripts/redis-topologies.sh` (ports 17001-17006, 17101/17102,
//! 17111-17113), which other tests use at the same moment.
//!
//! Every process is a child of the test process, started without
//! `--daemonize`, and is killed (SIGKILL, then reaped) when its topology is
//! dropped, also when the test panics; on a panic the tail of each log is
//! printed first. The children share the test's process group, so a runner
//! that kills the group on a timeout (nextest) takes them along.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    dead_code,
    unreachable_pub
)]

use std::collections::{HashMap, HashSet};
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis::AsyncConnectionConfig;

/// `cluster-node-timeout` of the private cluster, as in the shared one.
pub const NODE_TIMEOUT_MS: u64 = 2_000;
/// The name the Sentinels monitor the private primary under.
pub const MASTER_NAME: &str = "failover";
/// How long one admin call may take (connecting, then the reply).
const ADMIN_TIMEOUT: Duration = Duration::from_secs(2);
/// Attempts to start one server, each on fresh ports (another process may
/// take a port between the probe and the server's bind).
const START_ATTEMPTS: usize = 5;

/// A temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(kind: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("seckill-{kind}-{}", uuid::Uuid::new_v4().simple()));
        fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// One `redis-server` (data node or Sentinel) this helper started.
pub struct Node {
    /// Its client port on 127.0.0.1.
    pub port: u16,
    label: String,
    log: PathBuf,
    child: Child,
}

impl Drop for Node {
    fn drop(&mut self) {
        // Our own child, by its handle: SIGKILL, then reap it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

fn dump_logs(nodes: &[&Node]) {
    for node in nodes {
        eprintln!(
            "---- {} (127.0.0.1:{}) log tail ----\n{}",
            node.label,
            node.port,
            node.log_tail(25)
        );
    }
}

/// Ports handed out to one topology, so two of its servers never get the same.
#[derive(Default)]
struct Ports(HashSet<u16>);

impl Ports {
    /// A loopback port nothing listens on right now (the kernel's choice).
    fn take(&mut self) -> u16 {
        loop {
            let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
            let port = listener.local_addr().unwrap().port();
            if self.0.insert(port) {
                return port;
            }
        }
    }
}

/// Starts `redis-server` with the arguments `args(dir, port, bus_port)`
/// returns (a Sentinel writes its config file there), in `root/label`, and
/// waits until it answers on its port as itself (its `process_id`). On a
/// port taken meanwhile it starts again on fresh ports.
async fn start_server(
    root: &Path,
    label: &str,
    ports: &mut Ports,
    with_bus: bool,
    args: impl Fn(&Path, u16, Option<u16>) -> Vec<String>,
) -> Node {
    for attempt in 1..=START_ATTEMPTS {
        let port = ports.take();
        let bus = with_bus.then(|| ports.take());
        let dir = root.join(label);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let log = dir.join("redis.log");
        let child = Command::new("redis-server")
            .args(args(&dir, port, bus))
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run redis-server ({e}): is Redis installed?"));
        let mut node = Node {
            port,
            label: label.to_owned(),
            log,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(info) = text(port, &["INFO", "server"]).await
                && field(&info, "process_id") == Some(node.child.id().to_string().as_str())
            {
                return node;
            }
            if let Ok(Some(status)) = node.child.try_wait() {
                eprintln!(
                    "{label} on 127.0.0.1:{port} exited ({status}) at attempt {attempt}, \
                     retrying on other ports:\n{}",
                    node.log_tail(5)
                );
                break;
            }
            if Instant::now() > deadline {
                dump_logs(&[&node]);
                panic!("{label} did not answer on 127.0.0.1:{port} within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    panic!("{label}: could not start redis-server in {START_ATTEMPTS} attempts");
}

fn data_node_args(dir: &Path, port: u16) -> Vec<String> {
    let port = port.to_string();
    let dir_arg = dir.display().to_string();
    let log = dir.join("redis.log").display().to_string();
    [
        "--port",
        &port,
        "--bind",
        "127.0.0.1",
        "--dir",
        &dir_arg,
        "--logfile",
        &log,
        "--save",
        "",
        "--appendonly",
        "no",
        "--repl-diskless-sync",
        "yes",
        "--repl-diskless-sync-delay",
        "0",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// A fresh connection to 127.0.0.1:`port` (a Sentinel's `CLIENT KILL`
/// during a failover closes old ones, so admin calls never share one).
pub async fn connect(port: u16) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(ADMIN_TIMEOUT))
        .set_response_timeout(Some(ADMIN_TIMEOUT));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// Sends `args` to 127.0.0.1:`port` on a fresh connection.
pub async fn call<T: redis::FromRedisValue>(port: u16, args: &[&str]) -> redis::RedisResult<T> {
    let mut conn = connect(port).await?;
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.query_async(&mut conn).await
}

/// A text reply (`INFO`, `CLUSTER NODES`).
pub async fn text(port: u16, args: &[&str]) -> redis::RedisResult<String> {
    call(port, args).await
}

/// The value of `key` in `key:value` lines (`INFO`, `CLUSTER INFO`).
pub fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        line.trim_end()
            .strip_prefix(key)
            .and_then(|rest| rest.strip_prefix(':'))
    })
}

/// What `INFO replication` of one data node says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replication {
    /// `master` or `slave`.
    pub role: String,
    /// A replica's primary port.
    pub master_port: Option<u16>,
    /// A replica's link to its primary is up and not syncing.
    pub link_up: bool,
    /// A primary's connected replicas.
    pub connected_replicas: usize,
    /// `master_repl_offset`.
    pub offset: u64,
}

/// `INFO replication` of 127.0.0.1:`port`, or why not.
pub async fn replication(port: u16) -> Result<Replication, String> {
    let info = text(port, &["INFO", "replication"])
        .await
        .map_err(|e| format!("127.0.0.1:{port}: {e}"))?;
    Ok(Replication {
        role: field(&info, "role").unwrap_or("?").to_owned(),
        master_port: field(&info, "master_port").and_then(|p| p.parse().ok()),
        link_up: field(&info, "master_link_status") == Some("up")
            && field(&info, "master_sync_in_progress") == Some("0"),
        connected_replicas: field(&info, "connected_slaves")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
        offset: field(&info, "master_repl_offset")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
    })
}

/// Polls `check` every 50 ms until it returns `Ok`, for at most `within`;
/// the error names the last reason.
pub async fn wait_until<T, F, Fut>(what: &str, within: Duration, mut check: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + within;
    loop {
        match check().await {
            Ok(value) => return Ok(value),
            Err(why) if Instant::now() > deadline => {
                return Err(format!("{what}: not within {within:?}: {why}"));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// One line of `CLUSTER NODES`.
#[derive(Debug, Clone)]
pub struct ClusterNode {
    pub id: String,
    pub port: u16,
    pub flags: String,
    /// The primary's id, for a replica.
    pub master_id: Option<String>,
    pub connected: bool,
    /// Inclusive slot ranges served (primaries).
    pub slots: Vec<(u16, u16)>,
}

impl ClusterNode {
    pub fn is_master(&self) -> bool {
        self.flags.split(',').any(|f| f == "master")
    }

    pub fn is_replica(&self) -> bool {
        self.flags.split(',').any(|f| f == "slave")
    }

    pub fn failing(&self) -> bool {
        self.flags
            .split(',')
            .any(|f| matches!(f, "fail" | "fail?" | "handshake" | "noaddr"))
    }

    pub fn serves(&self, slot: u16) -> bool {
        self.slots.iter().any(|&(a, b)| (a..=b).contains(&slot))
    }
}

/// `CLUSTER NODES` as 127.0.0.1:`port` sees the cluster.
pub async fn cluster_nodes(port: u16) -> Result<Vec<ClusterNode>, String> {
    let reply = text(port, &["CLUSTER", "NODES"])
        .await
        .map_err(|e| format!("127.0.0.1:{port}: {e}"))?;
    reply
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 {
                return Err(format!("bad CLUSTER NODES line {line:?}"));
            }
            let port = f[1]
                .split(['@', ','])
                .next()
                .and_then(|a| a.rsplit_once(':'))
                .and_then(|(_, p)| p.parse().ok())
                .ok_or_else(|| format!("bad address in {line:?}"))?;
            let slots = f[8..]
                .iter()
                .filter(|s| !s.starts_with('['))
                .filter_map(|s| match s.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => s.parse().ok().map(|a| (a, a)),
                })
                .collect();
            Ok(ClusterNode {
                id: f[0].to_owned(),
                port,
                flags: f[2].to_owned(),
                master_id: (f[3] != "-").then(|| f[3].to_owned()),
                connected: f[7] == "connected",
                slots,
            })
        })
        .collect()
}

/// A private Redis Cluster: 6 nodes, `--cluster-replicas 1`.
pub struct PrivateCluster {
    // Declared before `dir`: the processes die before their directory goes.
    nodes: Vec<Node>,
    dir: TempDir,
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            dump_logs(&self.nodes.iter().collect::<Vec<_>>());
        }
    }
}

impl PrivateCluster {
    /// Starts 6 nodes (`--cluster-enabled yes --cluster-node-timeout 2000
    /// --save "" --appendonly no`), joins them with `redis-cli --cluster
    /// create ... --cluster-replicas 1 --cluster-yes`, and waits until every
    /// node reports `cluster_state:ok` with 3 primaries of one replica each
    /// and every replica's link is up and in sync.
    pub async fn start() -> Self {
        let dir = TempDir::new("cluster");
        let mut ports = Ports::default();
        let mut nodes = Vec::with_capacity(6);
        for i in 1..=6 {
            let node = start_server(&dir.0, &format!("node-{i}"), &mut ports, true, |d, p, b| {
                let mut args = data_node_args(d, p);
                let bus = b.unwrap_or(0).to_string();
                let timeout = NODE_TIMEOUT_MS.to_string();
                for a in [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    &timeout,
                    "--cluster-port",
                    &bus,
                ] {
                    args.push(a.to_owned());
                }
                args
            })
            .await;
            nodes.push(node);
        }
        let cluster = Self { nodes, dir };
        let addrs: Vec<String> = cluster
            .ports()
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let out = tokio::task::spawn_blocking(move || {
            Command::new("redis-cli")
                .args(["--cluster", "create"])
                .args(&addrs)
                .args(["--cluster-replicas", "1", "--cluster-yes"])
                .stdin(Stdio::null())
                .output()
        })
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("cannot run redis-cli ({e})"));
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster
            .wait_healthy(Duration::from_secs(30))
            .await
            .unwrap_or_else(|why| panic!("private cluster: {why}"));
        cluster
    }

    /// The client ports of the 6 nodes.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// `redis+cluster://127.0.0.1:p1,...,127.0.0.1:p6`.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .ports()
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+cluster://{}", nodes.join(","))
    }

    /// `Ok` when every node reports `cluster_state:ok`, all 16384 slots, 6
    /// known nodes, 3 primaries holding slots with one connected replica
    /// each, none failing, and every replica's link is up and not syncing.
    pub async fn healthy(&self) -> Result<(), String> {
        for port in self.ports() {
            let info = text(port, &["CLUSTER", "INFO"])
                .await
                .map_err(|e| format!("127.0.0.1:{port}: {e}"))?;
            for (key, want) in [
                ("cluster_state", "ok"),
                ("cluster_slots_ok", "16384"),
                ("cluster_known_nodes", "6"),
                ("cluster_size", "3"),
            ] {
                if field(&info, key) != Some(want) {
                    return Err(format!(
                        "127.0.0.1:{port}: {key} is {:?}",
                        field(&info, key)
                    ));
                }
            }
            let nodes = cluster_nodes(port).await?;
            let masters: Vec<&ClusterNode> = nodes
                .iter()
                .filter(|n| n.is_master() && !n.slots.is_empty())
                .collect();
            if nodes.iter().any(|n| n.failing() || !n.connected) || masters.len() != 3 {
                return Err(format!("127.0.0.1:{port} sees {nodes:?}"));
            }
            for m in &masters {
                let replicas = nodes
                    .iter()
                    .filter(|n| n.is_replica() && n.master_id.as_deref() == Some(&m.id))
                    .count();
                if replicas != 1 {
                    return Err(format!(
                        "127.0.0.1:{port}: primary {} has {replicas} replicas",
                        m.port
                    ));
                }
            }
        }
        for port in self.ports() {
            let r = replication(port).await?;
            if r.role == "slave" && !r.link_up {
                return Err(format!("replica 127.0.0.1:{port}: link not up or syncing"));
            }
        }
        Ok(())
    }

    /// Waits until [`healthy`](Self::healthy).
    pub async fn wait_healthy(&self, within: Duration) -> Result<(), String> {
        wait_until("healthy cluster", within, || self.healthy()).await
    }

    /// The hash slot of `key`.
    pub async fn slot(&self, key: &str) -> u16 {
        let slot: i64 = call(self.nodes[0].port, &["CLUSTER", "KEYSLOT", key])
            .await
            .unwrap();
        u16::try_from(slot).unwrap()
    }

    /// `(primary, replica)` ports serving `slot`, as every node agrees, or why not.
    pub async fn shard_of(&self, slot: u16) -> Result<(u16, u16), String> {
        let mut seen = None;
        for port in self.ports() {
            let nodes = cluster_nodes(port).await?;
            let primary = nodes
                .iter()
                .find(|n| n.is_master() && n.serves(slot))
                .ok_or_else(|| format!("127.0.0.1:{port}: nobody serves slot {slot}"))?;
            let replica = nodes
                .iter()
                .find(|n| n.is_replica() && n.master_id.as_deref() == Some(&primary.id))
                .ok_or_else(|| format!("127.0.0.1:{port}: no replica of {}", primary.port))?;
            let pair = (primary.port, replica.port);
            match seen {
                None => seen = Some(pair),
                Some(s) if s == pair => {}
                Some(s) => return Err(format!("nodes disagree on slot {slot}: {s:?} vs {pair:?}")),
            }
        }
        seen.ok_or_else(|| "no nodes".to_owned())
    }
}

/// A private Sentinel group: a primary, its replica, and 3 Sentinels
/// (quorum 2, `down-after-milliseconds` 1000, `failover-timeout` 5000).
pub struct PrivateSentinel {
    // Declared before `dir`: the processes die before their directory goes.
    data: Vec<Node>,
    sentinels: Vec<Node>,
    dir: TempDir,
}

impl Drop for PrivateSentinel {
    fn drop(&mut self) {
        if std::thread::panicking() {
            dump_logs(&self.data.iter().chain(&self.sentinels).collect::<Vec<_>>());
        }
    }
}

impl PrivateSentinel {
    /// Starts the primary and the replica, waits for the replica's link,
    /// then starts the Sentinels (so they find the replica at once) and
    /// waits until each knows the primary, its replica and the 2 other
    /// Sentinels.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// [`start`](Self::start) with `extra` arguments for both data nodes
    /// (e.g. `--min-replicas-to-write 1`).
    pub async fn start_with(extra: &[String]) -> Self {
        let dir = TempDir::new("sentinel");
        let mut ports = Ports::default();
        let primary = start_server(&dir.0, "primary", &mut ports, false, |d, p, _| {
            let mut args = data_node_args(d, p);
            args.extend(extra.iter().cloned());
            args
        })
        .await;
        let primary_port = primary.port.to_string();
        let replica = start_server(&dir.0, "replica", &mut ports, false, |d, p, _| {
            let mut args = data_node_args(d, p);
            args.extend(extra.iter().cloned());
            args.extend([
                "--replicaof".into(),
                "127.0.0.1".into(),
                primary_port.clone(),
            ]);
            args
        })
        .await;
        let replica_port = replica.port;
        wait_until("replica link", Duration::from_secs(10), || async move {
            match replication(replica_port).await? {
                r if r.link_up => Ok(()),
                r => Err(format!("{r:?}")),
            }
        })
        .await
        .unwrap();
        let mut sentinels = Vec::with_capacity(3);
        for i in 1..=3 {
            let node = start_server(
                &dir.0,
                &format!("sentinel-{i}"),
                &mut ports,
                false,
                |d, p, _| {
                    // Sentinel rewrites its config file: one per Sentinel.
                    let conf = d.join("sentinel.conf");
                    fs::write(
                        &conf,
                        format!(
                            "port {p}\nbind 127.0.0.1\ndir {dir}\nlogfile {dir}/redis.log\n\
                             sentinel monitor {MASTER_NAME} 127.0.0.1 {primary_port} 2\n\
                             sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                             sentinel failover-timeout {MASTER_NAME} 5000\n\
                             sentinel parallel-syncs {MASTER_NAME} 1\n",
                            dir = d.display()
                        ),
                    )
                    .unwrap();
                    vec![conf.display().to_string(), "--sentinel".into()]
                },
            )
            .await;
            sentinels.push(node);
        }
        let group = Self {
            data: vec![primary, replica],
            sentinels,
            dir,
        };
        group
            .wait_healthy(Duration::from_secs(30))
            .await
            .unwrap_or_else(|why| panic!("private sentinel group: {why}"));
        group
    }

    /// The ports of the two data nodes (primary and replica at the start).
    pub fn data_ports(&self) -> [u16; 2] {
        [self.data[0].port, self.data[1].port]
    }

    /// The Sentinels' ports.
    pub fn sentinel_ports(&self) -> Vec<u16> {
        self.sentinels.iter().map(|n| n.port).collect()
    }

    /// `redis+sentinel://127.0.0.1:s1,127.0.0.1:s2,127.0.0.1:s3/failover`.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .sentinel_ports()
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+sentinel://{}/{MASTER_NAME}", nodes.join(","))
    }

    /// The primary's port as Sentinel `port` names it.
    pub async fn primary_per(&self, sentinel: u16) -> Result<u16, String> {
        let addr: Vec<String> = call(
            sentinel,
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME],
        )
        .await
        .map_err(|e| format!("sentinel 127.0.0.1:{sentinel}: {e}"))?;
        addr.get(1)
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("sentinel 127.0.0.1:{sentinel} answered {addr:?}"))
    }

    /// `Ok(primary port)` when every Sentinel names the same primary, knows
    /// its one replica (not down, link ok) and the 2 other Sentinels, the
    /// primary is a primary with one replica, and that replica's link is
    /// up and not syncing.
    pub async fn healthy(&self) -> Result<u16, String> {
        let mut primary = None;
        for s in self.sentinel_ports() {
            let p = self.primary_per(s).await?;
            if *primary.get_or_insert(p) != p {
                return Err(format!("sentinels disagree: {primary:?} vs {p}"));
            }
            let master: HashMap<String, String> = call(s, &["SENTINEL", "MASTER", MASTER_NAME])
                .await
                .map_err(|e| format!("sentinel 127.0.0.1:{s}: {e}"))?;
            for (key, want) in [
                ("flags", "master"),
                ("num-slaves", "1"),
                ("num-other-sentinels", "2"),
                ("quorum", "2"),
            ] {
                if master.get(key).map(String::as_str) != Some(want) {
                    return Err(format!(
                        "sentinel 127.0.0.1:{s}: {key} is {:?}",
                        master.get(key)
                    ));
                }
            }
            let replicas: Vec<HashMap<String, String>> =
                call(s, &["SENTINEL", "REPLICAS", MASTER_NAME])
                    .await
                    .map_err(|e| format!("sentinel 127.0.0.1:{s}: {e}"))?;
            let good = replicas.iter().any(|r| {
                r.get("flags").map(String::as_str) == Some("slave")
                    && r.get("master-link-status").map(String::as_str) == Some("ok")
            });
            if !good {
                return Err(format!("sentinel 127.0.0.1:{s}: replicas {replicas:?}"));
            }
        }
        let primary = primary.ok_or("no sentinels")?;
        let other = self
            .data_ports()
            .into_iter()
            .find(|&p| p != primary)
            .ok_or_else(|| format!("sentinels name an unknown primary {primary}"))?;
        let p = replication(primary).await?;
        let r = replication(other).await?;
        if p.role != "master" || p.connected_replicas != 1 {
            return Err(format!("primary 127.0.0.1:{primary}: {p:?}"));
        }
        if r.role != "slave" || r.master_port != Some(primary) || !r.link_up {
            return Err(format!("replica 127.0.0.1:{other}: {r:?}"));
        }
        Ok(primary)
    }

    /// Waits until [`healthy`](Self::healthy); returns the primary's port.
    pub async fn wait_healthy(&self, within: Duration) -> Result<u16, String> {
        wait_until("healthy sentinel group", within, || self.healthy()).await
    }
}
