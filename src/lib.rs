//! # seckill
//!
//! A toolkit for flash sales (秒杀): selling a fixed stock to a crowd a
//! hundred times larger, in seconds, with nothing sold twice, no order lost
//! and no service falling over.
//!
//! This facade re-exports each member crate behind a feature of the same
//! name. Depend on the member crates directly when you need only one of them.
//!
//! | feature | crate | what it does |
//! |---|---|---|
//! | `singleflight` (default) | [`seckill-singleflight`](https://docs.rs/seckill-singleflight) | one execution per key among concurrent async callers |
//! | `cache-aside` (default) | [`seckill-cache-aside`](https://docs.rs/seckill-cache-aside) | Redis cache-aside: singleflight, SET NX backfill, leases, cached not-found, TTL jitter, delayed double delete |
//! | `batcher` (default) | [`seckill-batcher`](https://docs.rs/seckill-batcher) | size/time-triggered, key-sharded batching with backpressure and lossless shutdown |
//! | `stock-lua` (default) | [`seckill-stock-lua`](https://docs.rs/seckill-stock-lua) | atomic multi-SKU stock deduction in one Redis Lua script, with dedup, per-user limits, refunds and a deduction log |
//! | `ratelimit` (default) | [`seckill-ratelimit`](https://docs.rs/seckill-ratelimit) | token bucket, leaky bucket, sliding and fixed window limiters, keyed, in process and on Redis |
//! | `redis` (default) | [`seckill-redis`](https://docs.rs/seckill-redis) | the Redis layer the Redis crates share: scripts by `EVALSHA` loaded once per `NOSCRIPT` burst, Functions, per-call timeouts, one error classification, redis-rs and fred on a single node, Cluster and Sentinel |
//! | `overload` (default) | [`seckill-overload`](https://docs.rs/seckill-overload) | overload protection as tower layers: bulkhead, adaptive concurrency limit, circuit breaker, keyed rate limits answering 429 |
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "singleflight")]
#[doc(inline)]
pub use seckill_singleflight as singleflight;

#[cfg(feature = "cache-aside")]
#[doc(inline)]
pub use seckill_cache_aside as cache_aside;

#[cfg(feature = "batcher")]
#[doc(inline)]
pub use seckill_batcher as batcher;

#[cfg(feature = "stock-lua")]
#[doc(inline)]
pub use seckill_stock_lua as stock_lua;

#[cfg(feature = "ratelimit")]
#[doc(inline)]
pub use seckill_ratelimit as ratelimit;

#[cfg(feature = "overload")]
#[doc(inline)]
pub use seckill_overload as overload;

#[cfg(feature = "redis")]
#[doc(inline)]
pub use seckill_redis as redis;
