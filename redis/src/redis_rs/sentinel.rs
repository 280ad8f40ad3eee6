//! [`SentinelConnection`]: the primary a Sentinel group names, followed
//! across failovers.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};

use super::convert;
use crate::call::Call;
use crate::connection::Connection;
use crate::error::Error;
use crate::value::Value;

/// How long connecting to the primary may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A multiplexed connection to the primary a Sentinel group monitors under
/// one name, re-resolved through the Sentinels when it fails.
///
/// redis-rs's own `SentinelClient` hands out a connection to the primary of
/// the moment and leaves it there; this one asks the Sentinels again when a
/// call fails with a lost connection, a timeout, `READONLY` (the old primary
/// was demoted) or `MASTERDOWN`. The failing call still returns its error
/// (its outcome is unknown; retry it), and one caller re-resolves for
/// everyone who failed at the same moment.
#[derive(Clone)]
pub struct SentinelConnection {
    inner: Arc<Inner>,
}

struct Inner {
    master: String,
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
    /// primary named `master` and connects to it; `data_node` carries the
    /// primary's credentials and database, if any.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a bad Sentinel URL; [`Error::Connection`] when
    /// no Sentinel answers or the primary cannot be reached.
    pub async fn connect(
        sentinels: &[String],
        master: &str,
        data_node: Option<SentinelNodeConnectionInfo>,
    ) -> Result<Self, Error> {
        let mut client = SentinelClient::build(
            sentinels.to_vec(),
            master.to_owned(),
            data_node,
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
        Ok(Self {
            inner: Arc::new(Inner {
                master: master.to_owned(),
                client: tokio::sync::Mutex::new(client),
                current: ArcSwap::from_pointee(conn),
                generation: AtomicU64::new(0),
                config,
            }),
        })
    }

    /// How many times the primary was re-resolved (or tried to be) since connecting.
    pub fn reconnects(&self) -> u64 {
        self.inner.generation.load(Ordering::Relaxed)
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

impl Connection for SentinelConnection {
    async fn send(&self, call: Call<'_>) -> Result<Value, Error> {
        let seen = self.inner.generation.load(Ordering::Acquire);
        let conn = MultiplexedConnection::clone(&self.inner.current.load());
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
            let seen = self.inner.generation.load(Ordering::Acquire);
            let mut conn = MultiplexedConnection::clone(&self.inner.current.load());
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
            let seen = self.inner.generation.load(Ordering::Acquire);
            let mut conn = MultiplexedConnection::clone(&self.inner.current.load());
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
