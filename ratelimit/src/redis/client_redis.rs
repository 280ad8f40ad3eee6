//! The redis-rs adapter: maps a script call onto `redis::Script`.

use std::sync::LazyLock;

use ::redis::aio::{ConnectionLike, ConnectionManager};

use super::backend::{Backend, BackendError};
use super::scripts::{LuaScript, ScriptCall};

/// Runs the limiter scripts through a redis-rs async connection
/// (feature `redis`).
///
/// Use a [`ConnectionManager`] (the default type: it reconnects by itself)
/// or a multiplexed connection; the connection is cloned for each call.
/// `NOSCRIPT` is handled by `redis::Script`, which loads the script and retries.
///
/// # Examples
///
/// ```no_run
/// use seckill_ratelimit::RedisRs;
///
/// # async fn demo() -> redis::RedisResult<()> {
/// let client = redis::Client::open("redis://127.0.0.1:6379")?;
/// let backend = RedisRs::new(redis::aio::ConnectionManager::new(client).await?);
/// # let _ = backend; Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisRs<C = ConnectionManager> {
    conn: C,
}

impl<C> RedisRs<C> {
    /// Wraps a connection.
    pub fn new(conn: C) -> Self {
        Self { conn }
    }
}

impl<C> std::fmt::Debug for RedisRs<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRs").finish_non_exhaustive()
    }
}

fn script(which: LuaScript) -> &'static ::redis::Script {
    static TOKEN: LazyLock<::redis::Script> =
        LazyLock::new(|| ::redis::Script::new(LuaScript::TokenBucket.source()));
    static LEAKY: LazyLock<::redis::Script> =
        LazyLock::new(|| ::redis::Script::new(LuaScript::LeakyBucket.source()));
    static SLIDING: LazyLock<::redis::Script> =
        LazyLock::new(|| ::redis::Script::new(LuaScript::SlidingWindow.source()));
    static FIXED: LazyLock<::redis::Script> =
        LazyLock::new(|| ::redis::Script::new(LuaScript::FixedWindow.source()));
    match which {
        LuaScript::TokenBucket => &TOKEN,
        LuaScript::LeakyBucket => &LEAKY,
        LuaScript::SlidingWindow => &SLIDING,
        LuaScript::FixedWindow => &FIXED,
    }
}

impl<C> Backend for RedisRs<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    async fn eval(&self, call: &ScriptCall) -> Result<Vec<i64>, BackendError> {
        let mut invocation = script(call.script).prepare_invoke();
        for key in &call.keys {
            invocation.key(key);
        }
        for arg in &call.args {
            invocation.arg(*arg);
        }
        let mut conn = self.conn.clone();
        invocation
            .invoke_async(&mut conn)
            .await
            .map_err(BackendError::new)
    }
}
