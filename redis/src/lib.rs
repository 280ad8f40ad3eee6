//! The Redis layer of the seckill crates: one way to run Lua scripts and
//! commands on any Redis deployment, through any client.
//!
//! - [`Script`]: a script run by `EVALSHA`; when the server lacks it, one
//!   caller loads it for everyone who found it missing at the same moment.
//! - [`Library`]: scripts as a Redis 7 Functions library, loaded the same way.
//! - [`send`] and [`command`]: any other call.
//! - [`Connection`]: the one trait a client adapter implements (open: plug
//!   in your own), with a per-call timeout ([`WithTimeout`], 5 s by
//!   default), so no call waits forever.
//! - [`Error`]: one classification for every client, with
//!   [`Error::is_retryable`] and [`Error::may_have_run`].
//! - [`Topology`]: a URL naming a single server, a Cluster
//!   (`redis+cluster://`) or a Sentinel group (`redis+sentinel://`).
//! - [`redis_rs`] (feature `redis`, default) and [`fred`] (feature `fred`):
//!   the adapters, and `connect(url)` for each client.
//!
//! ```no_run
//! use seckill_redis::{Arg, Script};
//!
//! # async fn demo() -> Result<(), seckill_redis::Error> {
//! let conn = seckill_redis::redis_rs::connect("redis+cluster://127.0.0.1:7000").await?;
//! let take = Script::new(
//!     "local n = tonumber(redis.call('GET', KEYS[1]) or '0')
//!      if n < tonumber(ARGV[1]) then return -1 end
//!      return redis.call('DECRBY', KEYS[1], ARGV[1])",
//! );
//! let left = take.run(&conn, &["{sale}:stock"], &[Arg::Int(1)]).await?;
//! # let _ = left; Ok(()) }
//! ```
//!
//! # Cluster
//!
//! A script's keys must share one hash slot: give them one hash tag
//! (`{sale}:stock`, `{sale}:log`). Calls are routed by their first key;
//! `SCRIPT LOAD` and `FUNCTION LOAD` go to every primary, so a replica
//! promoted later already has the library (Functions replicate) or gets the
//! script on its first `NOSCRIPT`.

mod call;
mod connection;
mod error;
mod library;
mod load_gate;
mod script;
mod topology;
mod value;

#[cfg(feature = "fred")]
pub mod fred;
#[cfg(feature = "redis")]
pub mod redis_rs;

pub use call::{Arg, Call};
pub use connection::{
    Connection, DEFAULT_TIMEOUT, MAX_TIMEOUT, MIN_TIMEOUT, WithTimeout, command, send,
};
pub use error::{BoxError, Error};
pub use library::{Library, MAX_FUNCTIONS};
pub use script::Script;
pub use topology::{MAX_NODES, Topology};
pub use value::Value;

// The README's examples run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
