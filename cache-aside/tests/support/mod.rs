//! Shared helpers for the tests against the real Redis: connections for both
//! clients, unique key namespaces, ACL users and a TCP proxy that can cut or
//! stall the connection (a real network fault in front of a real server).
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::time::Duration;

use fred::prelude::{Builder, ClientLike, Config};
use redis::AsyncCommands;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

fn unreachable(url: &str, error: impl std::fmt::Display) -> ! {
    panic!(
        "Redis is unreachable at {url} ({error}). These tests need a real Redis server: \
         start one with `bash scripts/services.sh`, or point REDIS_URL at one."
    )
}

/// A key prefix no other test uses.
pub fn namespace() -> String {
    format!("test:cache-aside:{}", uuid::Uuid::new_v4().simple())
}

pub async fn redis_rs_at(url: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(url).unwrap_or_else(|e| unreachable(url, e));
    // The cache bounds its own calls (Options::redis_timeout); the client's
    // 500 ms default would fail tests on a loaded machine.
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap_or_else(|e| unreachable(url, e))
}

pub async fn fred_at(url: &str) -> fred::clients::Client {
    let config = Config::from_url(url).unwrap_or_else(|e| unreachable(url, e));
    let client = Builder::from_config(config)
        .build()
        .unwrap_or_else(|e| unreachable(url, e));
    client.init().await.unwrap_or_else(|e| unreachable(url, e));
    client
}

pub async fn redis_rs() -> redis::aio::MultiplexedConnection {
    redis_rs_at(&redis_url()).await
}

pub async fn fred() -> fred::clients::Client {
    fred_at(&redis_url()).await
}

/// A plain connection for the test's own checks (raw GET, PTTL, ACL).
pub async fn admin() -> redis::aio::MultiplexedConnection {
    redis_rs().await
}

pub async fn raw_get(admin: &mut redis::aio::MultiplexedConnection, key: &str) -> Option<Vec<u8>> {
    admin.get(key).await.unwrap()
}

pub async fn exists(admin: &mut redis::aio::MultiplexedConnection, key: &str) -> bool {
    admin.exists(key).await.unwrap()
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

/// `REDIS_URL` with `user:password@` inserted.
pub fn url_as(user: &str, password: &str) -> String {
    let url = redis_url();
    match url.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{user}:{password}@{rest}"),
        None => url,
    }
}

/// An ACL user limited to `keys*`, removed on drop.
pub struct AclUser {
    pub name: String,
    pub password: String,
}

impl AclUser {
    pub async fn create(keys: &str, rules: &[&str]) -> AclUser {
        let name = format!("cache-aside-{}", uuid::Uuid::new_v4().simple());
        let password = uuid::Uuid::new_v4().simple().to_string();
        let mut cmd = redis::cmd("ACL");
        cmd.arg("SETUSER")
            .arg(&name)
            .arg("on")
            .arg(format!(">{password}"))
            .arg(format!("~{keys}*"))
            .arg("+@all");
        for rule in rules {
            cmd.arg(*rule);
        }
        let _: () = cmd.query_async(&mut admin().await).await.unwrap();
        AclUser { name, password }
    }

    pub async fn rule(&self, rule: &str) {
        let _: () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg(&self.name)
            .arg(rule)
            .query_async(&mut admin().await)
            .await
            .unwrap();
    }

    pub fn url(&self) -> String {
        url_as(&self.name, &self.password)
    }

    pub async fn delete(self) {
        let _: i64 = redis::cmd("ACL")
            .arg("DELUSER")
            .arg(&self.name)
            .query_async(&mut admin().await)
            .await
            .unwrap();
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

/// A TCP proxy in front of the real Redis.
pub struct Proxy {
    pub url: String,
    mode: watch::Sender<Mode>,
}

impl Proxy {
    pub async fn start() -> Proxy {
        let upstream = redis_url();
        let target = upstream
            .split_once("://")
            .map(|(_, rest)| {
                rest.rsplit('@')
                    .next()
                    .unwrap_or(rest)
                    .split('/')
                    .next()
                    .unwrap_or(rest)
                    .to_string()
            })
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
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
        Proxy {
            url: format!("redis://{addr}"),
            mode,
        }
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

/// A Redis client this crate has an adapter for.
pub trait Connect: Copy {
    type Conn: seckill_cache_aside::Backend;
    /// A connection to `url`.
    fn at(self, url: &str) -> impl std::future::Future<Output = Self::Conn>;
    /// A connection to `REDIS_URL`.
    fn connect(self) -> impl std::future::Future<Output = Self::Conn> {
        async move { self.at(&redis_url()).await }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct RedisRs;

#[cfg(feature = "redis")]
impl Connect for RedisRs {
    type Conn = redis::aio::MultiplexedConnection;
    async fn at(self, url: &str) -> Self::Conn {
        redis_rs_at(url).await
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Fred;

#[cfg(feature = "fred")]
impl Connect for Fred {
    type Conn = fred::clients::Client;
    async fn at(self, url: &str) -> Self::Conn {
        fred_at(url).await
    }
}

/// Instantiates `async fn name(client: impl Connect)` tests for both clients.
#[macro_export]
macro_rules! both_clients {
    ($($name:ident),* $(,)?) => {
        #[cfg(feature = "redis")]
        mod redis_rs {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::support::RedisRs).await;
                }
            )*
        }
        #[cfg(feature = "fred")]
        mod fred {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::support::Fred).await;
                }
            )*
        }
    };
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

/// Every key under `prefix` (SCAN, so it is safe on a shared server).
pub async fn keys_under(
    admin: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
) -> Vec<String> {
    let mut keys = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(admin)
            .await
            .unwrap();
        keys.extend(batch);
        if next == 0 {
            return keys;
        }
        cursor = next;
    }
}

/// Deletes every key under `prefix` (this test's own namespace only).
pub async fn delete_under(admin: &mut redis::aio::MultiplexedConnection, prefix: &str) {
    for key in keys_under(admin, prefix).await {
        let _: i64 = admin.del(&key).await.unwrap();
    }
}

/// `PTTL key`: -1 for a key without TTL, -2 for a missing key.
pub async fn pttl(admin: &mut redis::aio::MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("PTTL")
        .arg(key)
        .query_async(admin)
        .await
        .unwrap()
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
