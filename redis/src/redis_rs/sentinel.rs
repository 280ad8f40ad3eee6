//! [`SentinelConnection`]: the primary a Sentinel group names, followed
//! across failovers.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{IntoConnectionInfo, RedisConnectionInfo};

use super::convert;
use crate::call::Call;
use crate::connection::Connection;
use crate::error::Error;
use crate::value::Value;

/// How long connecting to the primary may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the Sentinels are asked who the primary is.
const WATCH_EVERY: Duration = Duration::from_millis(250);

/// A multiplexed connection to the primary a Sentinel group monitors under
/// one name, re-resolved through the Sentinels when it fails.
///
/// redis-rs's own `SentinelClient` hands out a connection to the primary of
/// the moment and leaves it there. This one follows the primary two ways:
///
/// - **Watching**: a background task asks the Sentinels every 250 ms which
///   server is the primary and moves to a new one as soon as they name it.
///   After `SENTINEL FAILOVER` the old primary keeps accepting writes until
///   the Sentinels demote it (about 11 s in our tests), and every write it
///   acknowledges then is lost when it resyncs: watching cuts that window to
///   the Sentinels' own agreement time plus one poll.
/// - **On failure**: a call that fails with a lost connection, a timeout,
///   `READONLY` (the old primary was demoted), `MASTERDOWN` or `NOREPLICAS`
///   asks the Sentinels again. The failing call still returns its error (its
///   outcome is unknown; retry it), and one caller re-resolves for everyone
///   who failed at the same moment.
///
/// The watch task ends when the last clone of the connection is dropped.
#[derive(Clone)]
pub struct SentinelConnection {
    inner: Arc<Inner>,
}

struct Inner {
    master: String,
    /// The data nodes' credentials and database, for a primary the watch names.
    data_node: Option<RedisConnectionInfo>,
    client: tokio::sync::Mutex<SentinelClient>,
    current: ArcSwap<MultiplexedConnection>,
    generation: AtomicU64,
    config: AsyncConnectionConfig,
}

impl fmt::Debug for SentinelConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SentinelConnection")
            .field("master", &self.inner.master)
            .field("reconnects", &self.reconnects())
            .finish_non_exhaustive()
    }
}

impl SentinelConnection {
    /// Asks the Sentinels at `sentinels` (`redis://host:port` URLs) for the
    /// primary named `master`, connects to it, and starts watching for a
    /// new one; `data_node` carries the data nodes' credentials and
    /// database, if any. Must be called within a Tokio runtime.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a bad Sentinel URL; [`Error::Connection`] when
    /// no Sentinel answers or the primary cannot be reached.
    pub async fn connect(
        sentinels: &[String],
        master: &str,
        data_node: Option<RedisConnectionInfo>,
    ) -> Result<Self, Error> {
        let node_info = data_node
            .clone()
            .map(|info| SentinelNodeConnectionInfo::default().set_redis_connection_info(info));
        let mut client = SentinelClient::build(
            sentinels.to_vec(),
            master.to_owned(),
            node_info,
            SentinelServerType::Master,
        )
        .map_err(|e| Error::Config(format!("Sentinel client for {master:?}: {e}")))?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(crate::DEFAULT_TIMEOUT));
        let conn = client
            .get_async_connection_with_config(&config)
            .await
            .map_err(convert::error)?;
        let inner = Arc::new(Inner {
            master: master.to_owned(),
            data_node,
            client: tokio::sync::Mutex::new(client),
            current: ArcSwap::from_pointee(conn),
            generation: AtomicU64::new(0),
            config,
        });
        tokio::spawn(watch(Arc::downgrade(&inner), sentinels.to_vec()));
        Ok(Self { inner })
    }

    /// Moves to the primary at `host:port` (named by the Sentinels).
    async fn switch_to(&self, host: &str, port: u16) -> bool {
        let Ok(info) = format!("redis://{host}:{port}").into_connection_info() else {
            return false;
        };
        let info = match &self.inner.data_node {
            Some(node) => info.set_redis_settings(node.clone()),
            None => info,
        };
        let Ok(client) = redis::Client::open(info) else {
            return false;
        };
        let _one_at_a_time = self.inner.client.lock().await;
        match client
            .get_multiplexed_async_connection_with_config(&self.inner.config)
            .await
        {
            Ok(conn) => {
                self.inner.current.store(Arc::new(conn));
                self.inner.generation.fetch_add(1, Ordering::AcqRel);
                true
            }
            Err(_) => false,
        }
    }

    /// How many times the primary was re-resolved (or tried to be) since connecting.
    pub fn reconnects(&self) -> u64 {
        self.inner.generation.load(Ordering::Relaxed)
    }

    /// The primary's connection of the moment, and the generation to pass
    /// to [`reconnect`](Self::reconnect) if a call on it fails.
    fn current(&self) -> (u64, MultiplexedConnection) {
        let seen = self.inner.generation.load(Ordering::Acquire);
        (
            seen,
            MultiplexedConnection::clone(&self.inner.current.load()),
        )
    }

    /// Re-resolves the primary unless another caller did since `seen`.
    async fn reconnect(&self, seen: u64) {
        let mut client = self.inner.client.lock().await;
        if self.inner.generation.load(Ordering::Acquire) != seen {
            return;
        }
        // On failure the old connection stays: the next failing call tries
        // again (the Sentinels may not have promoted a replica yet).
        if let Ok(conn) = client
            .get_async_connection_with_config(&self.inner.config)
            .await
        {
            self.inner.current.store(Arc::new(conn));
        }
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
    }
}

/// Asks one Sentinel after the other which server is the primary, every
/// [`WATCH_EVERY`], and switches when the answer changes. Ends when the
/// connection is dropped.
async fn watch(inner: Weak<Inner>, sentinels: Vec<String>) {
    let mut known: Option<(String, u16)> = None;
    let mut asking: Option<MultiplexedConnection> = None;
    let mut next = 0usize;
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let conn = SentinelConnection { inner: strong };
        if asking.is_none() && !sentinels.is_empty() {
            let url = &sentinels[next % sentinels.len()];
            next = next.wrapping_add(1);
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(Some(CONNECT_TIMEOUT));
            if let Ok(client) = redis::Client::open(url.as_str()) {
                asking = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .ok();
            }
        }
        if let Some(sentinel) = asking.as_mut() {
            let named: redis::RedisResult<Option<(String, u16)>> = redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(&conn.inner.master)
                .query_async(sentinel)
                .await;
            match named {
                Ok(Some(primary)) => {
                    let moved = known.as_ref().is_some_and(|k| *k != primary);
                    if !moved || conn.switch_to(&primary.0, primary.1).await {
                        known = Some(primary);
                    }
                }
                // This Sentinel does not answer: ask the next one.
                _ => asking = None,
            }
        }
        drop(conn);
        tokio::time::sleep(WATCH_EVERY).await;
    }
}

impl Connection for SentinelConnection {
    async fn send(&self, call: Call<'_>) -> Result<Value, Error> {
        let (seen, conn) = self.current();
        let result = convert::send(conn, convert::command(call)).await;
        if let Err(e) = &result
            && e.needs_new_connection()
        {
            self.reconnect(seen).await;
        }
        result
    }
}

/// Plain redis-rs commands (`redis::cmd(..).query_async(&mut conn)`) go to
/// the primary of the moment; a failure re-resolves it as for [`send`](Connection::send).
impl redis::aio::ConnectionLike for SentinelConnection {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        Box::pin(async move {
            let (seen, mut conn) = self.current();
            let result = conn.req_packed_command(cmd).await;
            if let Err(e) = &result
                && convert::error(e.clone()).needs_new_connection()
            {
                self.reconnect(seen).await;
            }
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        Box::pin(async move {
            let (seen, mut conn) = self.current();
            let result = conn.req_packed_commands(pipeline, offset, count).await;
            if let Err(e) = &result
                && convert::error(e.clone()).needs_new_connection()
            {
                self.reconnect(seen).await;
            }
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.current.load().get_db()
    }
}
