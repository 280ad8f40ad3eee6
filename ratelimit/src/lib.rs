//! Rate limiters for flash sales: turn most of the crowd away before it costs anything.
//!
//! Four algorithms, in process and (with the `redis` or `fred` feature)
//! shared by every app instance through Redis:
//!
//! | limiter | admits | in process | on Redis |
//! |---|---|---|---|
//! | [`TokenBucket`] | a burst, then a steady rate | one `AtomicU64` (GCRA) | `token_bucket.lua` |
//! | [`LeakyBucket`] | meter: up to a capacity; pacer: exactly one per `1/rate` | one `AtomicU64` | `leaky_bucket.lua` |
//! | [`SlidingWindow`] | at most `limit` in any window | lock-free ring | `sliding_window.lua` (sorted set) |
//! | [`FixedWindow`] | at most `limit` per aligned window | one `AtomicU64` | `fixed_window.lua` |
//!
//! [`Keyed`] gives each key (IP, user, device) its own limiter in a map
//! bounded by `max_keys`, dropping idle keys.
//!
//! ```
//! use std::time::Duration;
//! use seckill_ratelimit::{Denied, Keyed, LeakyBucket, TokenBucket};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // Per IP: bursts of 10, then 5 per second.
//! let per_ip: Keyed<String, TokenBucket> = Keyed::new(TokenBucket::new(5, 10))
//!     .max_keys(1_000_000)
//!     .idle_ttl(Duration::from_secs(60));
//! // In front of the database: a steady 2,000 per second.
//! let pacer = LeakyBucket::new(2_000, 100);
//!
//! let ip = "203.0.113.7".to_string();
//! match per_ip.try_acquire(&ip, 1) {
//!     Ok(()) => pacer.acquire().await,
//!     Err(Denied { retry_after, .. }) => println!("429, Retry-After: {retry_after:?}"),
//! }
//! # }
//! ```
//!
//! In-process limiters are lock-free, `Send + Sync`, and read an injectable
//! [`Clock`]: [`ManualClock`] makes tests exact.
//!
//! Features:
//! - `quanta` (default): [`DefaultClock`] is a TSC clock, about 3× cheaper to
//!   read than [`std::time::Instant`].
//! - `redis`: `RedisLimiter`, the four algorithms as Lua scripts on Redis
//!   (a single server, a Cluster or a Sentinel group), through
//!   [`seckill-redis`](https://docs.rs/seckill-redis) and its redis-rs
//!   adapter: the limiter takes any `seckill_redis::Connection`, e.g. what
//!   `seckill_redis::redis_rs::connect(url)` opens.
//! - `fred`: the same through seckill-redis's fred adapter
//!   (`seckill_redis::fred::connect(url)`, or a fred `Client` or `Pool`).
//!
//! Without `redis` or `fred` the crate pulls no Redis client.
//!
//! On Redis, every call runs one script on one key, `{name:key}:tb`, `:lb`,
//! `:sw` or `:fw` (limiter name, caller's key, algorithm): one hash slot per
//! call on a Redis Cluster, and the hash tag `{name:key}` spreads the keys
//! over it (see `LuaScript` for each script's key).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod clock;
mod error;
mod fixed_window;
mod gcra;
mod keyed;
mod leaky_bucket;
mod limiter;
mod range;
#[cfg(any(feature = "redis", feature = "fred"))]
mod redis;
mod sliding_window;
mod token_bucket;

#[cfg(feature = "quanta")]
pub use clock::QuantaClock;
pub use clock::{Clock, DefaultClock, ManualClock, StdClock, TokioClock};
pub use error::{ConfigError, Denied, DenyReason};
pub use fixed_window::FixedWindow;
pub use keyed::{Keyed, MAX_IDLE_TTL, MAX_KEYS};
pub use leaky_bucket::LeakyBucket;
pub use limiter::{KeyedLimiter, Limiter};
pub use range::{MAX_RATE_PER_SEC, MAX_WINDOW, MIN_WINDOW};
#[cfg(any(feature = "redis", feature = "fred"))]
pub use redis::{
    Algorithm, BackendError, FailurePolicy, FailureStats, LuaScript, RedisLimiter,
    RedisLimiterBuilder,
};
/// The Redis layer the Redis limiters run on: connect with
/// `seckill_redis::redis_rs::connect` or `seckill_redis::fred::connect`
/// (a single server, a Cluster or a Sentinel group), and implement its
/// `Connection` trait to plug in another client.
#[cfg(any(feature = "redis", feature = "fred"))]
pub use seckill_redis;
pub use sliding_window::{MAX_SLIDING_LIMIT, SlidingWindow};
pub use token_bucket::TokenBucket;

// The README's examples run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
