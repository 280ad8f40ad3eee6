//! [`BackendError`]: why Redis gave a limiter no decision.

/// Why a [`RedisLimiter`](crate::RedisLimiter) call got no decision from
/// Redis, so its [`FailurePolicy`](crate::FailurePolicy) decided instead.
///
/// Its source is the [`seckill_redis::Error`]: a lost connection, no reply
/// within the limiter's timeout ([`seckill_redis::Error::Timeout`]), an error
/// reply (e.g. [`seckill_redis::Error::WrongType`] when another program
/// wrote the limiter's key), or a reply of the wrong shape
/// ([`seckill_redis::Error::UnexpectedReply`]). The limiter logs it
/// (`tracing`, with the source chain), counts it in
/// [`FailureStats::errors`](crate::FailureStats::errors) and keeps the latest
/// one ([`RedisLimiter::last_error`](crate::RedisLimiter::last_error)).
///
/// # Examples
///
/// ```no_run
/// use seckill_ratelimit::{Algorithm, RedisLimiter};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let conn = seckill_redis::redis_rs::connect("redis://127.0.0.1:6379").await?;
/// let limiter = RedisLimiter::new(conn, "buy", Algorithm::TokenBucket { rate_per_sec: 5, burst: 10 })?;
/// let _ = limiter.try_acquire("user:42", 1).await;
/// if let Some(error) = limiter.last_error() {
///     let retry = error.redis_error().is_retryable();
///     println!("Redis failed ({error}); retryable: {retry}");
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, thiserror::Error)]
#[error("the Redis rate-limit script failed: {source}")]
pub struct BackendError {
    #[source]
    source: seckill_redis::Error,
}

impl BackendError {
    pub(crate) fn new(source: seckill_redis::Error) -> Self {
        Self { source }
    }

    /// The Redis layer's error: ask it [`is_retryable`](seckill_redis::Error::is_retryable)
    /// or match its variant.
    pub fn redis_error(&self) -> &seckill_redis::Error {
        &self.source
    }

    /// The Redis layer's error, by value.
    pub fn into_redis_error(self) -> seckill_redis::Error {
        self.source
    }
}
