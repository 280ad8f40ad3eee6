//! [`Backend`] for fred: `Client` and `Pool`.

use std::sync::LazyLock;

use fred::bytes::Bytes;
use fred::clients::{Client, Pool};
use fred::interfaces::{KeysInterface, LuaInterface};
use fred::types::scripts::Script;
use fred::types::{Expiration, SetOptions, Value};

use super::lua;
use crate::entry;
use crate::error::RedisError;

static TAKE_LEASE: LazyLock<Script> = LazyLock::new(|| Script::from_lua(lua::TAKE_LEASE));
static FILL_LEASE: LazyLock<Script> = LazyLock::new(|| Script::from_lua(lua::FILL_LEASE));
static DEL_IF_EQUAL: LazyLock<Script> = LazyLock::new(|| Script::from_lua(lua::DEL_IF_EQUAL));

fn bytes(value: &[u8]) -> Value {
    Value::Bytes(Bytes::copy_from_slice(value))
}

fn millis(ttl_ms: u64) -> i64 {
    i64::try_from(ttl_ms).unwrap_or(i64::MAX)
}

/// A bulk reply as bytes; nil as `None`.
fn optional_bytes(reply: Value) -> Result<Option<Vec<u8>>, RedisError> {
    match reply {
        Value::Null => Ok(None),
        other => other
            .as_bytes()
            .map(|b| Some(b.to_vec()))
            .ok_or_else(|| RedisError::Reply(format!("expected a string, got {other:?}"))),
    }
}

fn one(reply: Value) -> Result<bool, RedisError> {
    match reply {
        Value::Integer(n) => Ok(n == 1),
        other => Err(RedisError::Reply(format!(
            "expected an integer, got {other:?}"
        ))),
    }
}

/// `EVALSHA`, falling back to `EVAL` (which also caches the script) when the
/// server lost it.
async fn eval<C: LuaInterface + Sync>(
    conn: &C,
    script: &Script,
    key: &str,
    args: Vec<Value>,
) -> Result<Value, RedisError> {
    match conn
        .evalsha::<Value, _, _, _>(script.sha1().clone(), key, args.clone())
        .await
    {
        Err(error) if error.details().starts_with("NOSCRIPT") => {
            let lua = script.lua().cloned().unwrap_or_default();
            conn.eval(lua, key, args).await.map_err(RedisError::command)
        }
        result => result.map_err(RedisError::command),
    }
}

async fn get<C: KeysInterface + Sync>(conn: &C, key: &str) -> Result<Option<Vec<u8>>, RedisError> {
    let reply: Value = conn.get(key).await.map_err(RedisError::command)?;
    optional_bytes(reply)
}

async fn set<C: KeysInterface + Sync>(
    conn: &C,
    key: &str,
    value: &[u8],
    ttl_ms: u64,
    nx: bool,
) -> Result<bool, RedisError> {
    let options = nx.then_some(SetOptions::NX);
    let reply: Value = conn
        .set(
            key,
            bytes(value),
            Some(Expiration::PX(millis(ttl_ms))),
            options,
            false,
        )
        .await
        .map_err(RedisError::command)?;
    Ok(!matches!(reply, Value::Null))
}

async fn del<C: KeysInterface + Sync>(conn: &C, key: &str) -> Result<(), RedisError> {
    conn.del::<Value, _>(key)
        .await
        .map(drop)
        .map_err(RedisError::command)
}

async fn take_lease<C: LuaInterface + Sync>(
    conn: &C,
    key: &str,
    marker: &[u8],
    ttl_ms: u64,
) -> Result<Option<Vec<u8>>, RedisError> {
    let args = vec![
        bytes(marker),
        Value::Integer(millis(ttl_ms)),
        bytes(&[entry::VALUE]),
        bytes(entry::NOT_FOUND),
    ];
    optional_bytes(eval(conn, &TAKE_LEASE, key, args).await?)
}

async fn fill_lease<C: LuaInterface + Sync>(
    conn: &C,
    key: &str,
    marker: &[u8],
    value: &[u8],
    ttl_ms: u64,
) -> Result<bool, RedisError> {
    let args = vec![bytes(marker), bytes(value), Value::Integer(millis(ttl_ms))];
    one(eval(conn, &FILL_LEASE, key, args).await?)
}

async fn del_if_equal<C: LuaInterface + Sync>(
    conn: &C,
    key: &str,
    expected: &[u8],
    only_without_ttl: bool,
) -> Result<bool, RedisError> {
    let flag = bytes(if only_without_ttl { b"1" } else { b"0" });
    one(eval(conn, &DEL_IF_EQUAL, key, vec![bytes(expected), flag]).await?)
}

delegate_backend!(Client);
delegate_backend!(Pool);
