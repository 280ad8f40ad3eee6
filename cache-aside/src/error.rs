//! Errors: [`Error`] for the cache's operations, [`RedisError`] for a failed
//! Redis call, [`CodecError`] for a value that could not be (de)serialized,
//! [`ConfigError`] for an [`Options`](crate::Options) value out of its range.

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A boxed error shared between the callers of one load.
pub(crate) type SharedError = Arc<dyn std::error::Error + Send + Sync>;

/// Why a [`Cache`](crate::Cache) operation failed.
///
/// `E` is the error type of the caller's own closure (the loader of
/// [`get_or_load`](crate::Cache::get_or_load), the database write of
/// [`write_through`](crate::Cache::write_through)); operations without a
/// closure use the default, [`Infallible`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error<E = Infallible> {
    /// The loader failed. Every caller that shared the load gets the same
    /// error (hence the `Arc`); nothing was cached, so a retry loads again.
    #[error("loading the value failed (nothing was cached; a retry loads again): {0}")]
    Load(#[source] Arc<E>),
    /// The loader panicked while this caller was waiting for it. The caller
    /// whose loader panicked sees the panic itself.
    #[error("the shared load panicked in another caller; nothing was cached, a retry loads again")]
    LoadPanicked,
    /// The shared load failed with an error of another type than this
    /// caller's loader returns (two call sites use different error types
    /// for one key). Nothing was cached; a retry loads again.
    #[error(
        "the shared load for this key failed with another call site's error type; retry, or use one error type per key"
    )]
    LoadFailedElsewhere,
    /// The database write of [`write_through`](crate::Cache::write_through)
    /// failed; the cache was left untouched.
    #[error("the database write failed, the cache was left untouched: {0}")]
    Write(#[source] E),
    /// Redis failed or did not answer in time, and the operation needs it
    /// (or [`OnRedisError::Fail`](crate::OnRedisError::Fail) is chosen).
    #[error(transparent)]
    Redis(#[from] RedisError),
    /// The value could not be encoded with the cache's codec.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// In [`Backfill::Lease`](crate::Backfill::Lease) mode, another process
    /// holds the lease for this key and did not fill it within
    /// [`Options::lease_wait`](crate::Options::lease_wait).
    #[error(
        "another process is loading this key and has not filled it yet; retry in about {retry_after:?}"
    )]
    LeaseBusy {
        /// A reasonable delay before retrying.
        retry_after: Duration,
    },
}

/// A Redis call that failed.
///
/// The client's error is kept as a [`seckill_redis::Error`] (the
/// [`source`](std::error::Error::source) of [`RedisError::Command`]), so
/// whether to retry is one question whichever client and topology run
/// underneath: [`is_retryable`](RedisError::is_retryable).
///
/// # Examples
///
/// ```no_run
/// # async fn demo(cache: seckill_cache_aside::Cache<impl seckill_cache_aside::Connection>) {
/// use seckill_cache_aside::Error;
///
/// match cache.invalidate("sku:7").await {
///     Err(Error::Redis(e)) if e.is_retryable() => { /* try again shortly */ }
///     Err(e) => eprintln!("giving up: {e}"),
///     Ok(()) => {}
/// }
/// # }
/// ```
#[derive(Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RedisError {
    /// Redis did not answer within [`Options::redis_timeout`](crate::Options::redis_timeout).
    #[error(
        "Redis did not answer within {0:?}; check that the server is up and reachable, or raise Options::redis_timeout"
    )]
    Timeout(Duration),
    /// The call failed in `seckill-redis` (connection lost, command
    /// refused, a cluster between states, ...); shared between the callers
    /// of one load, hence the `Arc`.
    #[error("the Redis call failed: {0}")]
    Command(#[source] Arc<seckill_redis::Error>),
    /// Redis answered with a reply this crate does not expect.
    #[error("unexpected reply from Redis: {0}; is the server Redis 6.2 or newer?")]
    Reply(String),
}

impl fmt::Debug for RedisError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl From<seckill_redis::Error> for RedisError {
    fn from(error: seckill_redis::Error) -> Self {
        RedisError::Command(Arc::new(error))
    }
}

impl RedisError {
    /// The `seckill-redis` error underneath, if the call failed there.
    pub fn redis(&self) -> Option<&seckill_redis::Error> {
        match self {
            RedisError::Command(error) => Some(error),
            _ => None,
        }
    }

    /// Whether the same call may succeed if made again later: a timeout
    /// here, or what [`seckill_redis::Error::is_retryable`] says (a lost
    /// connection, a failover or cluster resharding in progress).
    pub fn is_retryable(&self) -> bool {
        match self {
            RedisError::Timeout(_) => true,
            RedisError::Command(error) => error.is_retryable(),
            RedisError::Reply(_) => false,
        }
    }
}

/// A value that the codec could not encode or decode.
#[derive(Clone, thiserror::Error)]
#[error("the {codec} codec could not {action} the value: {source}")]
pub struct CodecError {
    codec: &'static str,
    action: &'static str,
    #[source]
    source: SharedError,
}

impl fmt::Debug for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl CodecError {
    /// An encoding failure reported by the codec named `codec`.
    pub fn encode(
        codec: &'static str,
        error: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        CodecError {
            codec,
            action: "encode",
            source: Arc::new(error),
        }
    }

    /// A decoding failure reported by the codec named `codec`.
    pub fn decode(
        codec: &'static str,
        error: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        CodecError {
            codec,
            action: "decode",
            source: Arc::new(error),
        }
    }
}

/// An [`Options`](crate::Options) value outside its documented range,
/// returned by [`Cache::new`](crate::Cache::new) and
/// [`Options::validate`](crate::Options::validate).
///
/// Its message names the field, the valid range and the value given, for
/// example `ttl must be 1 ms to 365 days, got 0ns`: fix that setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} must be {range}, got {got}")]
#[non_exhaustive]
pub struct ConfigError {
    /// The setting, as its [`Options`](crate::Options) method is named
    /// (`front_cache.ttl` for an argument of a method with two).
    pub field: &'static str,
    /// The valid range, in words.
    pub range: &'static str,
    /// The value given.
    pub got: String,
}
