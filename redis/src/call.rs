//! [`Call`]: one request, as the layer asks an adapter to send it.

/// One request to Redis. An adapter turns it into its client's command and
/// routes it: script calls and commands by their first key (so every key of
/// one call must share a hash slot on a cluster), loads to every primary.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Call<'a> {
    /// `EVALSHA sha numkeys keys... args...`.
    EvalSha {
        /// The script's SHA-1, 40 lowercase hex digits.
        sha: &'a str,
        /// `KEYS`.
        keys: &'a [&'a str],
        /// `ARGV`.
        args: &'a [Arg<'a>],
    },
    /// `EVAL code numkeys keys... args...`: needs nothing loaded, and caches the script.
    Eval {
        /// The script's source.
        code: &'a str,
        /// `KEYS`.
        keys: &'a [&'a str],
        /// `ARGV`.
        args: &'a [Arg<'a>],
    },
    /// `FCALL function numkeys keys... args...`.
    FCall {
        /// The function's name.
        function: &'a str,
        /// `KEYS`.
        keys: &'a [&'a str],
        /// `ARGV`.
        args: &'a [Arg<'a>],
    },
    /// `SCRIPT LOAD code`, on every primary of a cluster.
    ScriptLoad {
        /// The script's source.
        code: &'a str,
    },
    /// `FUNCTION LOAD REPLACE code`, on every primary of a cluster.
    FunctionLoad {
        /// The library's source.
        code: &'a str,
    },
    /// `name keys... args...`: any other command, routed by its first key.
    Command {
        /// The command, e.g. `"GET"`.
        name: &'static str,
        /// Its keys, sent first (one hash slot on a cluster).
        keys: &'a [&'a str],
        /// The arguments after the keys.
        args: &'a [Arg<'a>],
    },
}

impl Call<'_> {
    /// The command's name as Redis knows it (`"EVALSHA"`, `"SCRIPT LOAD"`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Call::EvalSha { .. } => "EVALSHA",
            Call::Eval { .. } => "EVAL",
            Call::FCall { .. } => "FCALL",
            Call::ScriptLoad { .. } => "SCRIPT LOAD",
            Call::FunctionLoad { .. } => "FUNCTION LOAD",
            Call::Command { name, .. } => name,
        }
    }
}

/// One argument of a [`Call`]; adapters send each in their client's
/// cheapest form (an integer is formatted without allocating where the
/// client allows it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arg<'a> {
    /// Text.
    Str(&'a str),
    /// Raw bytes.
    Bytes(&'a [u8]),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer.
    UInt(u64),
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(s: &'a str) -> Self {
        Arg::Str(s)
    }
}

impl<'a> From<&'a String> for Arg<'a> {
    fn from(s: &'a String) -> Self {
        Arg::Str(s)
    }
}

impl<'a> From<&'a [u8]> for Arg<'a> {
    fn from(b: &'a [u8]) -> Self {
        Arg::Bytes(b)
    }
}

impl<'a> From<&'a Vec<u8>> for Arg<'a> {
    fn from(b: &'a Vec<u8>) -> Self {
        Arg::Bytes(b)
    }
}

impl From<i64> for Arg<'_> {
    fn from(n: i64) -> Self {
        Arg::Int(n)
    }
}

impl From<u64> for Arg<'_> {
    fn from(n: u64) -> Self {
        Arg::UInt(n)
    }
}

impl From<u32> for Arg<'_> {
    fn from(n: u32) -> Self {
        Arg::UInt(u64::from(n))
    }
}
