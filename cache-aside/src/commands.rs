//! The cache's few Redis operations, each one round trip through
//! `seckill-redis` (whichever client and topology the connection is): plain
//! commands with [`seckill_redis::command`], the Lua scripts of `lua/*.lua`
//! with [`seckill_redis::Script`] (`EVALSHA`, reloaded once for all callers
//! on `NOSCRIPT`, `EVAL` when the script vanished again meanwhile, so no
//! caller ever sees `NOSCRIPT`).
//!
//! Every operation touches exactly one key, so on a Redis Cluster each call
//! goes to the primary of that key's slot and no key needs a hash tag.

use std::sync::LazyLock;

use seckill_redis::{Arg, Connection, Script, Value, command};

use crate::entry;
use crate::error::RedisError;

/// Reads the key, or takes the lease when it holds nothing usable.
static TAKE_LEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/take_lease.lua")));
/// Stores a loaded entry only while the caller's lease is in place.
static FILL_LEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/fill_lease.lua")));
/// Deletes a key only if it still holds the given bytes.
static DEL_IF_EQUAL: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/del_if_equal.lua")));

/// `GET key`.
pub(crate) async fn get<B: Connection>(conn: &B, key: &str) -> Result<Option<Vec<u8>>, RedisError> {
    optional_bytes(command(conn, "GET", &[key], &[]).await?)
}

/// `SET key value PX ttl_ms`.
pub(crate) async fn set<B: Connection>(
    conn: &B,
    key: &str,
    value: &[u8],
    ttl_ms: u64,
) -> Result<(), RedisError> {
    let args = [Arg::Bytes(value), Arg::Str("PX"), Arg::UInt(ttl_ms)];
    command(conn, "SET", &[key], &args).await?;
    Ok(())
}

/// `SET key value NX PX ttl_ms`; whether it was stored.
pub(crate) async fn set_nx<B: Connection>(
    conn: &B,
    key: &str,
    value: &[u8],
    ttl_ms: u64,
) -> Result<bool, RedisError> {
    let args = [
        Arg::Bytes(value),
        Arg::Str("NX"),
        Arg::Str("PX"),
        Arg::UInt(ttl_ms),
    ];
    Ok(!command(conn, "SET", &[key], &args).await?.is_nil())
}

/// `DEL key`.
pub(crate) async fn del<B: Connection>(conn: &B, key: &str) -> Result<(), RedisError> {
    command(conn, "DEL", &[key], &[]).await?;
    Ok(())
}

/// The key's bytes, or `None` after storing `marker` for `ttl_ms` because
/// the key held nothing usable (the lease is the caller's).
pub(crate) async fn take_lease<B: Connection>(
    conn: &B,
    key: &str,
    marker: &[u8],
    ttl_ms: u64,
) -> Result<Option<Vec<u8>>, RedisError> {
    let args = [
        Arg::Bytes(marker),
        Arg::UInt(ttl_ms),
        Arg::Bytes(&[entry::VALUE]),
        Arg::Bytes(entry::NOT_FOUND),
    ];
    optional_bytes(TAKE_LEASE.run(conn, &[key], &args).await?)
}

/// Stores `value` for `ttl_ms` only if the key still holds `marker`;
/// whether it was stored.
pub(crate) async fn fill_lease<B: Connection>(
    conn: &B,
    key: &str,
    marker: &[u8],
    value: &[u8],
    ttl_ms: u64,
) -> Result<bool, RedisError> {
    let args = [Arg::Bytes(marker), Arg::Bytes(value), Arg::UInt(ttl_ms)];
    one(FILL_LEASE.run(conn, &[key], &args).await?)
}

/// Deletes the key only if it still holds `expected`; whether it did.
pub(crate) async fn del_if_equal<B: Connection>(
    conn: &B,
    key: &str,
    expected: &[u8],
) -> Result<bool, RedisError> {
    let args = [Arg::Bytes(expected), Arg::Str("0")];
    one(DEL_IF_EQUAL.run(conn, &[key], &args).await?)
}

/// Deletes the key only if it still holds `expected` and has no TTL (a
/// lease-shaped entry this crate did not write); whether it did.
pub(crate) async fn del_if_persistent<B: Connection>(
    conn: &B,
    key: &str,
    expected: &[u8],
) -> Result<bool, RedisError> {
    let args = [Arg::Bytes(expected), Arg::Str("1")];
    one(DEL_IF_EQUAL.run(conn, &[key], &args).await?)
}

/// A string reply as bytes; nil (or a script's `false`) as `None`.
fn optional_bytes(reply: Value) -> Result<Option<Vec<u8>>, RedisError> {
    match reply {
        Value::Nil => Ok(None),
        Value::Data(bytes) => Ok(Some(bytes)),
        other => Err(RedisError::Reply(format!(
            "expected a string or nil, got {other:?}"
        ))),
    }
}

/// An integer reply: whether it is 1.
fn one(reply: Value) -> Result<bool, RedisError> {
    match reply.as_int() {
        Some(n) => Ok(n == 1),
        None => Err(RedisError::Reply(format!(
            "expected an integer, got {reply:?}"
        ))),
    }
}
