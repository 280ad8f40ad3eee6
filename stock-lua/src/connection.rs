//! The small trait each Redis client adapter implements.
//!
//! The adapters (`connection/redis_rs.rs`, `connection/fred.rs`) only send a
//! [`Call`] and convert the reply and the error; scripts, keys, the
//! `NOSCRIPT` fallback and reply parsing live in the shared code.

use std::future::Future;

use crate::reply::Reply;

#[cfg(feature = "fred")]
mod fred;
#[cfg(feature = "redis")]
mod redis_rs;

/// A Redis connection a [`StockStore`](crate::StockStore) can use.
///
/// Implemented for `redis::aio::MultiplexedConnection` and
/// `redis::aio::ConnectionManager` (feature `redis`, default) and for
/// `fred::clients::Client` (feature `fred`). All of them pipeline concurrent
/// requests over one connection, so cloning the store and calling it from
/// many tasks keeps many requests in flight. Sealed: the adapters are part of
/// this crate.
pub trait Connection: Clone + Send + Sync + 'static + sealed::Sealed {
    /// Sends one call and returns its reply.
    #[doc(hidden)]
    fn call(&self, call: Call<'_>) -> impl Future<Output = Result<Reply, ClientError>> + Send;
}

mod sealed {
    pub trait Sealed {}
}

/// One request to Redis, as the shared code asks an adapter to send it.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub enum Call<'a> {
    /// `EVALSHA`, `EVAL` or `FCALL` with `numkeys keys... args...`.
    Script {
        /// Which command, and its first argument.
        by: ScriptBy<'a>,
        /// KEYS.
        keys: &'a [String],
        /// ARGV.
        args: &'a [String],
    },
    /// `FUNCTION LOAD REPLACE code` (on every primary of a cluster).
    FunctionLoad {
        /// The library source.
        code: &'a str,
    },
    /// `cmd key args...`: a command on one key, routed by that key.
    Keyed {
        /// The command name.
        cmd: &'static str,
        /// The key.
        key: &'a str,
        /// The other arguments.
        args: &'a [String],
    },
}

/// How a [`Call::Script`] names its script.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub enum ScriptBy<'a> {
    /// `EVALSHA sha`: the script must be in the server's cache.
    Sha(&'a str),
    /// `EVAL code`: always works, and caches the script.
    Code(&'a str),
    /// `FCALL function`: the library must be loaded.
    Function(&'a str),
}

/// A failed [`Call`], classified so the shared code can reload scripts.
#[doc(hidden)]
#[derive(Debug)]
pub struct ClientError {
    pub(crate) missing: Missing,
    pub(crate) source: Box<dyn std::error::Error + Send + Sync>,
}

/// Whether an error says the server lacks our script or function.
// Without a client feature nothing constructs these.
#[cfg_attr(not(any(feature = "redis", feature = "fred")), allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Missing {
    Nothing,
    Script,
    Function,
}

#[cfg_attr(not(any(feature = "redis", feature = "fred")), allow(dead_code))]
impl ClientError {
    /// Wraps a client error; `message` is the server's error text, if any.
    pub(crate) fn new(
        source: impl std::error::Error + Send + Sync + 'static,
        message: &str,
    ) -> Self {
        let missing = if message.starts_with("NOSCRIPT") {
            Missing::Script
        } else if message.contains("Function not found") {
            Missing::Function
        } else {
            Missing::Nothing
        };
        Self {
            missing,
            source: Box::new(source),
        }
    }
}

impl From<ClientError> for crate::Error {
    fn from(e: ClientError) -> Self {
        crate::Error::Redis { source: e.source }
    }
}
