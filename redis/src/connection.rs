//! [`Connection`]: the one trait an adapter implements, and the per-call
//! timeout every call through this layer gets.

use std::future::Future;
use std::time::Duration;

use crate::call::{Arg, Call};
use crate::error::Error;
use crate::value::Value;

/// How long a call may take when the connection sets nothing else: 5 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The shortest per-call timeout [`WithTimeout`] accepts: 1 ms.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(1);
/// The longest per-call timeout [`WithTimeout`] accepts: 10 minutes.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);

/// A Redis connection the seckill crates can use.
///
/// Implemented here for redis-rs (`MultiplexedConnection`,
/// `ConnectionManager`, `cluster_async::ClusterConnection`,
/// [`SentinelConnection`](crate::redis_rs::SentinelConnection),
/// [`AnyConnection`](crate::redis_rs::AnyConnection); feature `redis`) and
/// fred (`Client`, `Pool`; feature `fred`). The trait is open: implement
/// [`send`](Self::send) for any other client, classifying its errors with
/// [`Error::from_server`] and [`Error::connection`].
///
/// Every implementation must pipeline concurrent calls (many tasks share one
/// clone-able handle) and route a call by its first key on a cluster.
pub trait Connection: Clone + Send + Sync + 'static {
    /// Sends one call and returns its reply. Callers go through
    /// [`send`](crate::send) (or a [`Script`](crate::Script) or
    /// [`Library`](crate::Library)), which adds the timeout.
    fn send(&self, call: Call<'_>) -> impl Future<Output = Result<Value, Error>> + Send;

    /// How long one call may take before it fails with [`Error::Timeout`]:
    /// [`DEFAULT_TIMEOUT`] unless wrapped in [`WithTimeout`].
    fn timeout(&self) -> Duration {
        DEFAULT_TIMEOUT
    }
}

/// Sends `call` on `conn`, failing with [`Error::Timeout`] when no reply
/// arrives within [`Connection::timeout`]. A call never waits forever, even
/// on a client that would (fred's default builder after Redis is killed).
///
/// # Errors
///
/// Whatever the adapter returns, or [`Error::Timeout`].
pub async fn send<C: Connection>(conn: &C, call: Call<'_>) -> Result<Value, Error> {
    let after = conn.timeout();
    match tokio::time::timeout(after, conn.send(call)).await {
        Ok(reply) => reply,
        Err(_) => Err(Error::Timeout { after }),
    }
}

/// Sends the command `name keys... args...`, routed by its first key, with
/// the connection's timeout.
///
/// # Errors
///
/// As [`send`].
pub async fn command<C: Connection>(
    conn: &C,
    name: &'static str,
    keys: &[&str],
    args: &[Arg<'_>],
) -> Result<Value, Error> {
    send(conn, Call::Command { name, keys, args }).await
}

/// A connection with its own per-call timeout.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use seckill_redis::{Connection, WithTimeout};
///
/// # fn demo<C: Connection>(conn: C) -> Result<(), seckill_redis::Error> {
/// let conn = WithTimeout::new(conn, Duration::from_millis(250))?;
/// assert_eq!(conn.timeout(), Duration::from_millis(250));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct WithTimeout<C> {
    inner: C,
    timeout: Duration,
}

impl<C> WithTimeout<C> {
    /// Wraps `conn` so each call fails after `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] unless `timeout` is within [`MIN_TIMEOUT`] (1 ms)
    /// and [`MAX_TIMEOUT`] (10 min).
    pub fn new(inner: C, timeout: Duration) -> Result<Self, Error> {
        if !(MIN_TIMEOUT..=MAX_TIMEOUT).contains(&timeout) {
            return Err(Error::Config(format!(
                "the per-call timeout must be 1 ms to 10 min, got {timeout:?}"
            )));
        }
        Ok(Self { inner, timeout })
    }

    /// The wrapped connection.
    pub fn inner(&self) -> &C {
        &self.inner
    }
}

impl<C: Connection> Connection for WithTimeout<C> {
    fn send(&self, call: Call<'_>) -> impl Future<Output = Result<Value, Error>> + Send {
        self.inner.send(call)
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }
}
