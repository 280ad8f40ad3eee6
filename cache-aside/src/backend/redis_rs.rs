//! [`Backend`] for redis-rs: `ConnectionManager` and `MultiplexedConnection`.

use std::sync::LazyLock;

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::{Script, Value};

use super::lua;
use crate::entry;
use crate::error::RedisError;

static TAKE_LEASE: LazyLock<Script> = LazyLock::new(|| Script::new(lua::TAKE_LEASE));
static FILL_LEASE: LazyLock<Script> = LazyLock::new(|| Script::new(lua::FILL_LEASE));
static DEL_IF_EQUAL: LazyLock<Script> = LazyLock::new(|| Script::new(lua::DEL_IF_EQUAL));

fn stored(reply: Value) -> bool {
    !matches!(reply, Value::Nil)
}

async fn get<C: ConnectionLike + Clone>(
    conn: &C,
    key: &str,
) -> Result<Option<Vec<u8>>, RedisError> {
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut conn.clone())
        .await
        .map_err(RedisError::command)
}

async fn set<C: ConnectionLike + Clone>(
    conn: &C,
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
    cmd.query_async(&mut conn.clone())
        .await
        .map(stored)
        .map_err(RedisError::command)
}

async fn del<C: ConnectionLike + Clone>(conn: &C, key: &str) -> Result<(), RedisError> {
    redis::cmd("DEL")
        .arg(key)
        .query_async::<i64>(&mut conn.clone())
        .await
        .map(drop)
        .map_err(RedisError::command)
}

async fn take_lease<C: ConnectionLike + Clone>(
    conn: &C,
    key: &str,
    marker: &[u8],
    ttl_ms: u64,
) -> Result<Option<Vec<u8>>, RedisError> {
    TAKE_LEASE
        .key(key)
        .arg(marker)
        .arg(ttl_ms)
        .arg(&[entry::VALUE][..])
        .arg(entry::NOT_FOUND)
        .invoke_async(&mut conn.clone())
        .await
        .map_err(RedisError::command)
}

async fn fill_lease<C: ConnectionLike + Clone>(
    conn: &C,
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
        .invoke_async::<i64>(&mut conn.clone())
        .await
        .map(|n| n == 1)
        .map_err(RedisError::command)
}

async fn del_if_equal<C: ConnectionLike + Clone>(
    conn: &C,
    key: &str,
    expected: &[u8],
    only_without_ttl: bool,
) -> Result<bool, RedisError> {
    DEL_IF_EQUAL
        .key(key)
        .arg(expected)
        .arg(if only_without_ttl { "1" } else { "0" })
        .invoke_async::<i64>(&mut conn.clone())
        .await
        .map(|n| n == 1)
        .map_err(RedisError::command)
}

delegate_backend!(ConnectionManager);
delegate_backend!(MultiplexedConnection);
