//! [`Script`]: a Lua script run by `EVALSHA`, reloaded once when missing.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use crate::call::{Arg, Call};
use crate::connection::{Connection, send};
use crate::error::Error;
use crate::load_gate::LoadGate;
use crate::value::Value;

/// A Lua script: its source and SHA-1, run with `EVALSHA`.
///
/// When the server lacks the script (`NOSCRIPT`: a restart, a failover, a
/// new cluster node, `SCRIPT FLUSH`), one caller sends `SCRIPT LOAD` (to
/// every primary of a cluster) while every other caller that hit `NOSCRIPT`
/// at the same moment waits for it; then all send `EVALSHA` again. Should
/// the script vanish once more in between, that call goes as `EVAL` with the
/// source, which needs nothing loaded. No caller ever sees `NOSCRIPT`.
///
/// Clones share the load state; keep one per script, e.g. in a `static`
/// `LazyLock`.
///
/// # Examples
///
/// ```no_run
/// use seckill_redis::{Arg, Script};
///
/// # async fn demo() -> Result<(), seckill_redis::Error> {
/// let conn = seckill_redis::redis_rs::connect("redis://127.0.0.1:6379").await?;
/// let incr_by = Script::new("return redis.call('INCRBY', KEYS[1], ARGV[1])");
/// let n = incr_by.run(&conn, &["{shop}:visits"], &[Arg::Int(2)]).await?;
/// assert!(n.as_int().is_some());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Script {
    code: Cow<'static, str>,
    sha: String,
    gate: Arc<LoadGate>,
}

impl fmt::Debug for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Script")
            .field("sha", &self.sha)
            .field("loads", &self.loads())
            .finish_non_exhaustive()
    }
}

impl Script {
    /// A script from its Lua source.
    pub fn new(code: impl Into<Cow<'static, str>>) -> Self {
        let code = code.into();
        let sha = sha1_smol::Sha1::from(code.as_bytes()).digest().to_string();
        Self {
            code,
            sha,
            gate: Arc::default(),
        }
    }

    /// The Lua source.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The SHA-1 of the source, as `EVALSHA` names it (40 hex digits).
    pub fn sha(&self) -> &str {
        &self.sha
    }

    /// How many times this script (and its clones) sent `SCRIPT LOAD`
    /// successfully in this process.
    pub fn loads(&self) -> u64 {
        self.gate.loads()
    }

    /// Runs the script with `KEYS` and `ARGV`, with the connection's timeout
    /// for each round trip. On a cluster every key must share one hash slot.
    ///
    /// # Errors
    ///
    /// Any [`Error`] but [`Error::NoScript`], which is handled here.
    ///
    /// # Cancel safety
    ///
    /// Dropped, the script ran completely or not at all (Redis runs a script
    /// atomically); which one is unknown.
    pub async fn run<C: Connection>(
        &self,
        conn: &C,
        keys: &[&str],
        args: &[Arg<'_>],
    ) -> Result<Value, Error> {
        let seen = self.gate.generation();
        let by_sha = Call::EvalSha {
            sha: &self.sha,
            keys,
            args,
        };
        match send(conn, by_sha).await {
            Err(Error::NoScript { .. }) => {}
            other => return other,
        }
        // A failed load is not this call's answer: EVAL below still runs it.
        let _ = self.load_after(conn, seen).await;
        match send(conn, by_sha).await {
            Err(Error::NoScript { .. }) => {
                let code = &self.code;
                send(conn, Call::Eval { code, keys, args }).await
            }
            other => other,
        }
    }

    /// Sends `SCRIPT LOAD` now (to every primary of a cluster), e.g. to warm
    /// a server before a sale; callers of [`run`](Self::run) never need to.
    ///
    /// # Errors
    ///
    /// As [`send`](crate::send).
    pub async fn load<C: Connection>(&self, conn: &C) -> Result<(), Error> {
        self.load_after(conn, self.gate.generation()).await
    }

    async fn load_after<C: Connection>(&self, conn: &C, seen: u64) -> Result<(), Error> {
        self.gate
            .load_once(seen, async {
                send(conn, Call::ScriptLoad { code: &self.code })
                    .await
                    .map(drop)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha_is_the_sha1_of_the_source() {
        // SHA-1 of "return 1", as redis-cli SCRIPT LOAD prints it.
        let script = Script::new("return 1");
        assert_eq!(script.sha(), "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
        assert_eq!(script.code(), "return 1");
        assert_eq!(script.loads(), 0);
    }
}
