//! The Lua scripts, the key layout and the reply format, shared by both client adapters.

use std::time::Duration;

use super::algorithm::Algorithm;
use super::config::ceil_millis;
use crate::error::Denied;

/// One of the four limiter scripts.
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
}

/// One script call: which script, its KEYS and ARGV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptCall {
    /// The script to run.
    pub script: LuaScript,
    /// `KEYS`: every key the script touches, all under one `{hash tag}`.
    pub keys: Vec<String>,
    /// `ARGV`, as integers.
    pub args: Vec<u64>,
}

/// How a call asks the leaky-bucket script to behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Check,
    Pace,
}

/// The call for `n` units of `key` under the limiter `name`.
///
/// Every Redis key of one (limiter, key) pair shares the hash tag
/// `{name:key}`, so a script touches one Redis Cluster slot, while
/// different keys spread over the cluster.
pub(crate) fn call(algorithm: &Algorithm, name: &str, key: &str, n: u32, mode: Mode) -> ScriptCall {
    let tag = format!("{{{name}:{key}}}");
    let n = u64::from(n);
    match *algorithm {
        Algorithm::TokenBucket {
            rate_per_sec,
            burst,
        } => ScriptCall {
            script: LuaScript::TokenBucket,
            keys: vec![format!("{tag}:tb")],
            args: vec![rate_per_sec.into(), burst.into(), n],
        },
        Algorithm::LeakyBucket {
            rate_per_sec,
            capacity,
        } => ScriptCall {
            script: LuaScript::LeakyBucket,
            keys: vec![format!("{tag}:lb")],
            args: vec![
                rate_per_sec.into(),
                capacity.into(),
                n,
                u64::from(mode == Mode::Pace),
            ],
        },
        Algorithm::SlidingWindow { limit, window } => ScriptCall {
            script: LuaScript::SlidingWindow,
            keys: vec![format!("{tag}:sw")],
            args: vec![ceil_millis(window), limit.into(), n],
        },
        Algorithm::FixedWindow { limit, window } => ScriptCall {
            script: LuaScript::FixedWindow,
            keys: vec![format!("{tag}:fw")],
            args: vec![ceil_millis(window), limit.into(), n],
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

/// Reads a script's `{code, micros}` reply; `None` when it is malformed.
pub(crate) fn parse(reply: &[i64]) -> Option<Outcome> {
    let [code, micros] = *reply else {
        return None;
    };
    let micros = Duration::from_micros(u64::try_from(micros).ok()?);
    match code {
        1 => Some(Outcome::Admitted(micros)),
        0 => Some(Outcome::Denied(Denied::rate_exceeded(micros))),
        _ => None,
    }
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
        assert_eq!(call.keys, ["{api:user:7}:sw"]);
        assert_eq!(call.args, [1000, 5, 1]);
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
        assert_eq!(parse(&[1, 0]), Some(Outcome::Admitted(Duration::ZERO)));
        assert_eq!(
            parse(&[0, 1500]),
            Some(Outcome::Denied(Denied::rate_exceeded(
                Duration::from_micros(1500)
            )))
        );
        assert_eq!(parse(&[1]), None);
        assert_eq!(parse(&[2, 0]), None);
        assert_eq!(parse(&[0, -1]), None);
    }
}
