//! [`AnyConnection`] and [`connect`]: whichever redis-rs connection a URL names.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{IntoConnectionInfo, RedisConnectionInfo};

use super::SentinelConnection;
use super::convert;
use crate::call::Call;
use crate::connection::{Connection, DEFAULT_TIMEOUT};
use crate::error::Error;
use crate::topology::Topology;
use crate::value::Value;

/// How long opening one connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A redis-rs connection to a single server, a Cluster or a Sentinel-watched
/// primary, as [`connect`] opens it from a URL. Cheap to clone; clones
/// share the connection.
#[derive(Clone)]
#[non_exhaustive]
pub enum AnyConnection {
    /// One server, reconnecting by itself.
    Single(ConnectionManager),
    /// A Redis Cluster: calls are routed by their first key's slot, and
    /// `MOVED`/`ASK` are followed.
    Cluster(ClusterConnection),
    /// The primary of a Sentinel group.
    Sentinel(SentinelConnection),
}

impl std::fmt::Debug for AnyConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AnyConnection::Single(_) => "AnyConnection::Single",
            AnyConnection::Cluster(_) => "AnyConnection::Cluster",
            AnyConnection::Sentinel(_) => "AnyConnection::Sentinel",
        })
    }
}

/// Opens the deployment `url` names (see [`Topology`] for the forms).
///
/// # Errors
///
/// [`Error::Config`] for a bad URL; [`Error::Connection`] when no node answers.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> Result<(), seckill_redis::Error> {
/// let conn = seckill_redis::redis_rs::connect(
///     "redis+cluster://127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002",
/// )
/// .await?;
/// let pong = seckill_redis::command(&conn, "PING", &[], &[]).await?;
/// assert_eq!(pong.as_str(), Some("PONG"));
/// # Ok(()) }
/// ```
pub async fn connect(url: &str) -> Result<AnyConnection, Error> {
    match Topology::parse(url)? {
        Topology::Single { url } => {
            let client = redis::Client::open(url.as_str())
                .map_err(|e| Error::Config(format!("Redis URL {url:?}: {e}")))?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(Some(DEFAULT_TIMEOUT));
            let manager = ConnectionManager::new_with_config(client, config)
                .await
                .map_err(convert::error)?;
            Ok(AnyConnection::Single(manager))
        }
        topology @ Topology::Cluster { .. } => {
            let client = ClusterClientBuilder::new(topology.node_urls())
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(DEFAULT_TIMEOUT)
                .build()
                .map_err(|e| Error::Config(format!("Redis Cluster URL {url:?}: {e}")))?;
            let conn = client
                .get_async_connection()
                .await
                .map_err(convert::error)?;
            Ok(AnyConnection::Cluster(conn))
        }
        Topology::Sentinel {
            ref sentinels,
            ref master,
            ref credentials,
        } => {
            let urls: Vec<String> = sentinels.iter().map(|s| format!("redis://{s}")).collect();
            let data_node = match credentials {
                Some(c) => {
                    let info = format!("redis://{c}@localhost")
                        .into_connection_info()
                        .map_err(|e| Error::Config(format!("Redis URL {url:?}: {e}")))?;
                    let redis: RedisConnectionInfo = info.redis_settings().clone();
                    Some(redis)
                }
                None => None,
            };
            Ok(AnyConnection::Sentinel(
                SentinelConnection::connect(&urls, master, data_node).await?,
            ))
        }
    }
}

impl Connection for AnyConnection {
    async fn send(&self, call: Call<'_>) -> Result<Value, Error> {
        match self {
            AnyConnection::Single(c) => c.send(call).await,
            AnyConnection::Cluster(c) => c.send(call).await,
            AnyConnection::Sentinel(c) => c.send(call).await,
        }
    }
}

/// Plain redis-rs commands and pipelines work on any topology too
/// (`redis::cmd(..).query_async(&mut conn)`), routed as the underlying
/// connection routes them.
impl redis::aio::ConnectionLike for AnyConnection {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            AnyConnection::Single(c) => c.req_packed_command(cmd),
            AnyConnection::Cluster(c) => c.req_packed_command(cmd),
            AnyConnection::Sentinel(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            AnyConnection::Single(c) => c.req_packed_commands(pipeline, offset, count),
            AnyConnection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            AnyConnection::Sentinel(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            AnyConnection::Single(c) => c.get_db(),
            AnyConnection::Cluster(c) => c.get_db(),
            AnyConnection::Sentinel(c) => c.get_db(),
        }
    }
}
