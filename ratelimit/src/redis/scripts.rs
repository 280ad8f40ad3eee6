//! The Lua scripts, the key layout and the reply format.

use std::sync::LazyLock;
use std::time::Duration;

use seckill_redis::{Arg, Script, Value};

use super::algorithm::Algorithm;
use super::config::ceil_millis;
use crate::error::Denied;

/// One of the four limiter scripts.
///
/// Each touches exactly one key, `KEYS[1]`, so a call always stays in one
/// Redis Cluster slot:
///
/// | script | `KEYS[1]` | Redis type |
/// |---|---|---|
/// | [`TokenBucket`](Self::TokenBucket) | `{name:key}:tb` | hash `tokens`, `ts` |
/// | [`LeakyBucket`](Self::LeakyBucket) | `{name:key}:lb` | string (the drain time) |
/// | [`SlidingWindow`](Self::SlidingWindow) | `{name:key}:sw` | sorted set |
/// | [`FixedWindow`](Self::FixedWindow) | `{name:key}:fw` | hash `w`, `c` |
///
/// where `name` is the limiter's name and `key` the key passed to
/// `try_acquire`; the hash tag `{name:key}` spreads keys over the cluster.
///
/// # Examples
///
/// ```no_run
/// use seckill_ratelimit::LuaScript;
///
/// # async fn demo() -> Result<(), seckill_redis::Error> {
/// // Warm every primary before a sale (calls load it by themselves anyway).
/// let conn = seckill_redis::redis_rs::connect("redis+cluster://127.0.0.1:7000").await?;
/// LuaScript::TokenBucket.script().load(&conn).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LuaScript {
    /// `token_bucket.lua`.
    TokenBucket,
    /// `leaky_bucket.lua` (meter and pacer).
    LeakyBucket,
    /// `sliding_window.lua`.
    SlidingWindow,
    /// `fixed_window.lua`.
    FixedWindow,
}

static TOKEN_BUCKET: LazyLock<Script> =
    LazyLock::new(|| Script::new(LuaScript::TokenBucket.source()));
static LEAKY_BUCKET: LazyLock<Script> =
    LazyLock::new(|| Script::new(LuaScript::LeakyBucket.source()));
static SLIDING_WINDOW: LazyLock<Script> =
    LazyLock::new(|| Script::new(LuaScript::SlidingWindow.source()));
static FIXED_WINDOW: LazyLock<Script> =
    LazyLock::new(|| Script::new(LuaScript::FixedWindow.source()));

impl LuaScript {
    /// The script's Lua source (KEYS and ARGV are documented at its top).
    pub fn source(self) -> &'static str {
        match self {
            LuaScript::TokenBucket => include_str!("token_bucket.lua"),
            LuaScript::LeakyBucket => include_str!("leaky_bucket.lua"),
            LuaScript::SlidingWindow => include_str!("sliding_window.lua"),
            LuaScript::FixedWindow => include_str!("fixed_window.lua"),
        }
    }

    /// The one [`Script`] every limiter of this process runs it through
    /// (`EVALSHA`, one `SCRIPT LOAD` for all callers that find it missing):
    /// [`Script::load`] warms a server, [`Script::loads`] counts reloads.
    pub fn script(self) -> &'static Script {
        match self {
            LuaScript::TokenBucket => &TOKEN_BUCKET,
            LuaScript::LeakyBucket => &LEAKY_BUCKET,
            LuaScript::SlidingWindow => &SLIDING_WINDOW,
            LuaScript::FixedWindow => &FIXED_WINDOW,
        }
    }
}

/// One script call: which script, its one key and its ARGV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScriptCall {
    pub(crate) script: LuaScript,
    /// `KEYS[1]`, the only key the script touches.
    pub(crate) key: String,
    /// `ARGV`, as unsigned integers.
    pub(crate) args: Vec<Arg<'static>>,
}

/// How a call asks the leaky-bucket script to behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Check,
    Pace,
}

/// The call for `n` units of `key` under the limiter `name`.
///
/// The one Redis key of a (limiter, key) pair is `{name:key}:<suffix>`: a
/// script touches one key, so one Redis Cluster slot, and the hash tag
/// `{name:key}` spreads different keys over the cluster. (Redis takes the
/// tag up to the first `}`: a `}` in `name` or `key` shortens the tag, so
/// such keys may share a slot, and a call still touches one key.)
pub(crate) fn call(algorithm: &Algorithm, name: &str, key: &str, n: u32, mode: Mode) -> ScriptCall {
    let tag = format!("{{{name}:{key}}}");
    let n = Arg::UInt(u64::from(n));
    let uint = |v: u32| Arg::UInt(u64::from(v));
    match *algorithm {
        Algorithm::TokenBucket {
            rate_per_sec,
            burst,
        } => ScriptCall {
            script: LuaScript::TokenBucket,
            key: format!("{tag}:tb"),
            args: vec![uint(rate_per_sec), uint(burst), n],
        },
        Algorithm::LeakyBucket {
            rate_per_sec,
            capacity,
        } => ScriptCall {
            script: LuaScript::LeakyBucket,
            key: format!("{tag}:lb"),
            args: vec![
                uint(rate_per_sec),
                uint(capacity),
                n,
                Arg::UInt(u64::from(mode == Mode::Pace)),
            ],
        },
        Algorithm::SlidingWindow { limit, window } => ScriptCall {
            script: LuaScript::SlidingWindow,
            key: format!("{tag}:sw"),
            args: vec![Arg::UInt(ceil_millis(window)), uint(limit), n],
        },
        Algorithm::FixedWindow { limit, window } => ScriptCall {
            script: LuaScript::FixedWindow,
            key: format!("{tag}:fw"),
            args: vec![Arg::UInt(ceil_millis(window)), uint(limit), n],
        },
    }
}

/// What a script decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Admitted; for the pacer, after this wait.
    Admitted(Duration),
    Denied(Denied),
}

/// Reads a script's `{code, micros}` reply.
///
/// # Errors
///
/// [`seckill_redis::Error::UnexpectedReply`] for any other shape (a script
/// of another version under the same key names?).
pub(crate) fn parse(reply: &Value) -> Result<Outcome, seckill_redis::Error> {
    let outcome = match reply {
        Value::Array(items) => match items.as_slice() {
            [code, micros] => code.as_int().zip(micros.as_int()),
            _ => None,
        },
        _ => None,
    }
    .and_then(|(code, micros)| {
        let micros = Duration::from_micros(u64::try_from(micros).ok()?);
        match code {
            1 => Some(Outcome::Admitted(micros)),
            0 => Some(Outcome::Denied(Denied::rate_exceeded(micros))),
            _ => None,
        }
    });
    outcome.ok_or_else(|| {
        seckill_redis::Error::UnexpectedReply(format!(
            "the rate-limit script replied {reply:?}, expected [0 or 1, microseconds]"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_one_limiter_share_a_hash_tag() {
        let algorithm = Algorithm::SlidingWindow {
            limit: 5,
            window: Duration::from_secs(1),
        };
        let call = call(&algorithm, "api", "user:7", 1, Mode::Check);
        assert_eq!(call.script, LuaScript::SlidingWindow);
        assert_eq!(call.key, "{api:user:7}:sw");
        assert_eq!(call.args, [Arg::UInt(1000), Arg::UInt(5), Arg::UInt(1)]);
        let pace = Algorithm::LeakyBucket {
            rate_per_sec: 7,
            capacity: 3,
        };
        let call = super::call(&pace, "db", "all", 2, Mode::Pace);
        assert_eq!(call.key, "{db:all}:lb");
        assert_eq!(
            call.args,
            [Arg::UInt(7), Arg::UInt(3), Arg::UInt(2), Arg::UInt(1)]
        );
    }

    /// One key per call: a script never leaves its slot on a Redis Cluster.
    #[test]
    fn every_script_touches_only_its_one_key() {
        for script in [
            LuaScript::TokenBucket,
            LuaScript::LeakyBucket,
            LuaScript::SlidingWindow,
            LuaScript::FixedWindow,
        ] {
            let source = script.source();
            assert!(source.contains("KEYS[1]"), "{script:?}");
            assert!(!source.contains("KEYS[2]"), "{script:?}");
            assert_eq!(script.script().code(), source);
            assert!(
                std::ptr::eq(script.script(), script.script()),
                "one static per script"
            );
        }
    }

    #[test]
    fn every_script_reads_redis_time_once_and_no_client_time() {
        for script in [
            LuaScript::TokenBucket,
            LuaScript::LeakyBucket,
            LuaScript::SlidingWindow,
            LuaScript::FixedWindow,
        ] {
            let source = script.source();
            assert_eq!(
                source.matches("redis.call('TIME')").count(),
                1,
                "{script:?}"
            );
            assert!(
                !source.contains("SETEX"),
                "{script:?}: expiry in ms, never 0"
            );
            assert!(source.contains(") + 1"), "{script:?}: TTL padded by 1 ms");
        }
    }

    #[test]
    fn malformed_replies_are_rejected() {
        let ints = |v: &[i64]| Value::Array(v.iter().map(|&n| Value::Int(n)).collect());
        assert_eq!(
            parse(&ints(&[1, 0])).ok(),
            Some(Outcome::Admitted(Duration::ZERO))
        );
        assert_eq!(
            parse(&ints(&[0, 1500])).ok(),
            Some(Outcome::Denied(Denied::rate_exceeded(
                Duration::from_micros(1500)
            )))
        );
        for bad in [
            ints(&[1]),
            ints(&[2, 0]),
            ints(&[0, -1]),
            ints(&[1, 0, 0]),
            Value::Int(1),
            Value::Nil,
        ] {
            assert!(
                matches!(parse(&bad), Err(seckill_redis::Error::UnexpectedReply(_))),
                "{bad:?}"
            );
        }
    }
}
