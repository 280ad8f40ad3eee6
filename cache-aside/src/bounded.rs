//! Every Redis call goes through [`bounded`]: a timeout and an error count.

use std::future::Future;
use std::time::Duration;

use crate::error::RedisError;
use crate::stats::{Counters, bump};

/// Runs one Redis call with a time limit, counting failures.
pub(crate) async fn bounded<T>(
    limit: Duration,
    counters: &Counters,
    call: impl Future<Output = Result<T, RedisError>>,
) -> Result<T, RedisError> {
    let result = match tokio::time::timeout(limit, call).await {
        Ok(result) => result,
        Err(_) => Err(RedisError::Timeout(limit)),
    };
    if result.is_err() {
        bump(&counters.redis_errors);
    }
    result
}
