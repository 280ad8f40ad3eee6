//! The fred adapter: `EVALSHA`, falling back to `EVAL` on `NOSCRIPT`.

use std::sync::LazyLock;

use ::fred::clients::Client;
use ::fred::interfaces::LuaInterface;
use ::fred::util::sha1_hash;

use super::backend::{Backend, BackendError};
use super::scripts::{LuaScript, ScriptCall};

/// Runs the limiter scripts through a fred client or pool (feature `fred`).
///
/// Sends `EVALSHA`; when Redis answers `NOSCRIPT` (a restart, a failover or a
/// `SCRIPT FLUSH`), sends `EVAL`, which runs the script and caches it again.
///
/// # Examples
///
/// ```no_run
/// use fred::prelude::*;
/// use seckill_ratelimit::Fred;
///
/// # async fn demo() -> Result<(), fred::error::Error> {
/// let client = Builder::from_config(Config::from_url("redis://127.0.0.1:6379")?).build()?;
/// client.init().await?;
/// let backend = Fred::new(client);
/// # let _ = backend; Ok(()) }
/// ```
#[derive(Clone)]
pub struct Fred<C = Client> {
    client: C,
}

impl<C> Fred<C> {
    /// Wraps a client (or a `Pool`).
    pub fn new(client: C) -> Self {
        Self { client }
    }
}

impl<C> std::fmt::Debug for Fred<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fred").finish_non_exhaustive()
    }
}

fn sha1(which: LuaScript) -> &'static str {
    static TOKEN: LazyLock<String> = LazyLock::new(|| sha1_hash(LuaScript::TokenBucket.source()));
    static LEAKY: LazyLock<String> = LazyLock::new(|| sha1_hash(LuaScript::LeakyBucket.source()));
    static SLIDING: LazyLock<String> =
        LazyLock::new(|| sha1_hash(LuaScript::SlidingWindow.source()));
    static FIXED: LazyLock<String> = LazyLock::new(|| sha1_hash(LuaScript::FixedWindow.source()));
    match which {
        LuaScript::TokenBucket => &TOKEN,
        LuaScript::LeakyBucket => &LEAKY,
        LuaScript::SlidingWindow => &SLIDING,
        LuaScript::FixedWindow => &FIXED,
    }
}

impl<C> Backend for Fred<C>
where
    C: LuaInterface + Send + Sync + 'static,
{
    async fn eval(&self, call: &ScriptCall) -> Result<Vec<i64>, BackendError> {
        let keys = call.keys.clone();
        let args: Vec<i64> = call
            .args
            .iter()
            .map(|a| i64::try_from(*a).unwrap_or(i64::MAX))
            .collect();
        let first = self
            .client
            .evalsha::<Vec<i64>, _, _, _>(sha1(call.script), keys.clone(), args.clone())
            .await;
        match first {
            Err(error) if error.details().starts_with("NOSCRIPT") => self
                .client
                .eval(call.script.source(), keys, args)
                .await
                .map_err(BackendError::new),
            other => other.map_err(BackendError::new),
        }
    }
}
