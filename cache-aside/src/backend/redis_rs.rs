//! [`Backend`] for redis-rs: `ConnectionManager` and `MultiplexedConnection`.

use std::sync::LazyLock;

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::{Script, Value};

use super::{Backend, lua, sealed};
use crate::error::RedisError;

static TAKE_LEASE: LazyLock<Script> = LazyLock::new(|| Script::new(lua::TAKE_LEASE));
static FILL_LEASE: LazyLock<Script> = LazyLock::new(|| Script::new(lua::FILL_LEASE));
static DEL_IF_EQUAL: LazyLock<Script> = LazyLock::new(|| Script::new(lua::DEL_IF_EQUAL));

fn stored(reply: Value) -> bool {
    !matches!(reply, Value::Nil)
}

async fn get<C: ConnectionLike>(mut conn: C, key: &str) -> Result<Option<Vec<u8>>, RedisError> {
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut conn)
        .await
        .map_err(RedisError::command)
}

async fn set<C: ConnectionLike>(
    mut conn: C,
    key: &str,
    value: &[u8],
    ttl_ms: u64,
    nx: bool,
) -> Result<bool, RedisError> {
    let mut cmd = redis::cmd("SET");
    cmd.arg(key).arg(value);
    if nx {
        cmd.arg("NX");
    }
    cmd.arg("PX").arg(ttl_ms);
    cmd.query_async(&mut conn)
        .await
        .map(stored)
        .map_err(RedisError::command)
}

async fn del<C: ConnectionLike>(mut conn: C, key: &str) -> Result<(), RedisError> {
    redis::cmd("DEL")
        .arg(key)
        .query_async::<i64>(&mut conn)
        .await
        .map(drop)
        .map_err(RedisError::command)
}

async fn take_lease<C: ConnectionLike>(
    mut conn: C,
    key: &str,
    marker: &[u8],
    ttl_ms: u64,
) -> Result<Option<Vec<u8>>, RedisError> {
    TAKE_LEASE
        .key(key)
        .arg(marker)
        .arg(ttl_ms)
        .invoke_async(&mut conn)
        .await
        .map_err(RedisError::command)
}

async fn fill_lease<C: ConnectionLike>(
    mut conn: C,
    key: &str,
    marker: &[u8],
    value: &[u8],
    ttl_ms: u64,
) -> Result<bool, RedisError> {
    FILL_LEASE
        .key(key)
        .arg(marker)
        .arg(value)
        .arg(ttl_ms)
        .invoke_async::<i64>(&mut conn)
        .await
        .map(|n| n == 1)
        .map_err(RedisError::command)
}

async fn del_if_equal<C: ConnectionLike>(
    mut conn: C,
    key: &str,
    expected: &[u8],
) -> Result<bool, RedisError> {
    DEL_IF_EQUAL
        .key(key)
        .arg(expected)
        .invoke_async::<i64>(&mut conn)
        .await
        .map(|n| n == 1)
        .map_err(RedisError::command)
}

/// Both connection types are cheap clones of one multiplexed connection;
/// each call works on its own clone.
macro_rules! redis_rs_backend {
    ($conn:ty) => {
        impl sealed::Sealed for $conn {}

        impl Backend for $conn {
            async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, RedisError> {
                get(self.clone(), key).await
            }

            async fn set(&self, key: &str, value: &[u8], ttl_ms: u64) -> Result<(), RedisError> {
                set(self.clone(), key, value, ttl_ms, false).await.map(drop)
            }

            async fn set_nx(
                &self,
                key: &str,
                value: &[u8],
                ttl_ms: u64,
            ) -> Result<bool, RedisError> {
                set(self.clone(), key, value, ttl_ms, true).await
            }

            async fn del(&self, key: &str) -> Result<(), RedisError> {
                del(self.clone(), key).await
            }

            async fn take_lease(
                &self,
                key: &str,
                marker: &[u8],
                ttl_ms: u64,
            ) -> Result<Option<Vec<u8>>, RedisError> {
                take_lease(self.clone(), key, marker, ttl_ms).await
            }

            async fn fill_lease(
                &self,
                key: &str,
                marker: &[u8],
                value: &[u8],
                ttl_ms: u64,
            ) -> Result<bool, RedisError> {
                fill_lease(self.clone(), key, marker, value, ttl_ms).await
            }

            async fn del_if_equal(&self, key: &str, expected: &[u8]) -> Result<bool, RedisError> {
                del_if_equal(self.clone(), key, expected).await
            }
        }
    };
}

redis_rs_backend!(ConnectionManager);
redis_rs_backend!(MultiplexedConnection);
