//! The small trait each Redis client adapter implements.

use std::future::Future;

use super::scripts::ScriptCall;

/// Runs a limiter script on Redis: implemented by [`RedisRs`](crate::RedisRs)
/// (feature `redis`) and [`Fred`](crate::Fred) (feature `fred`).
///
/// An implementation sends `EVALSHA` and, when Redis answers `NOSCRIPT`
/// (after a restart, a failover or a `SCRIPT FLUSH`), loads the script and
/// retries, and returns the integer array the script replies.
pub trait Backend: Send + Sync + 'static {
    /// Runs `call` and returns the script's reply.
    ///
    /// # Errors
    ///
    /// [`BackendError`] when Redis cannot be reached or answers with an error.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future may leave the script run or not run.
    fn eval(
        &self,
        call: &ScriptCall,
    ) -> impl Future<Output = Result<Vec<i64>, BackendError>> + Send;
}

/// A Redis call that failed: the client's error, kept as its source.
#[derive(Debug, thiserror::Error)]
#[error("the Redis rate-limit script failed: {source}; check that Redis is reachable")]
pub struct BackendError {
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl BackendError {
    /// Wraps a client error.
    pub fn new(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self {
            source: Box::new(source),
        }
    }

    /// A reply of the wrong shape (a script from another version under the same name?).
    pub(crate) fn malformed(reply: &[i64]) -> Self {
        Self::new(Malformed(format!("{reply:?}")))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unexpected script reply {0}, expected [0 or 1, microseconds]")]
struct Malformed(String);
