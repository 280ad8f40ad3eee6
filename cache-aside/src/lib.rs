//! Read-through Redis caching that stays consistent under races, stampedes
//! and expiry waves (cache-aside, 旁路缓存).
//!
//! [`Cache::get_or_load`] reads a key and, on a miss, runs your loader once
//! per key among concurrent callers and writes the answer back; writers
//! update the database, then [`Cache::invalidate`] (or [`Cache::set`]).
//!
//! ```no_run
//! use std::time::Duration;
//! use seckill_cache_aside::{Backfill, Cache, Options};
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Sku { id: u64, name: String }
//!
//! async fn load_from_db(id: u64) -> Result<Option<Sku>, std::io::Error> {
//!     Ok(Some(Sku { id, name: "tea".into() }))
//! }
//! async fn update_db(id: u64) -> Result<(), std::io::Error> { Ok(()) }
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! // Any topology: redis://host:port, redis+cluster://host:port,host:port,...
//! // or redis+sentinel://host:port,.../master; or seckill_redis::fred::connect.
//! let conn = seckill_redis::redis_rs::connect("redis://127.0.0.1:6379").await?;
//! let cache = Cache::new(
//!     conn,
//!     Options::default()
//!         .ttl(Duration::from_secs(300))
//!         .jitter(0.1)
//!         .not_found_ttl(Duration::from_secs(30))
//!         .double_delete_delay(Duration::from_millis(500))
//!         .backfill(Backfill::Lease),
//! )?;
//! let sku: Option<Sku> = cache.get_or_load("sku:7", || load_from_db(7)).await?;
//! cache.write_through("sku:7", || update_db(7)).await?; // DB write, then delete twice
//! println!("{:?}", cache.stats());
//! # Ok(()) }
//! ```
//!
//! What it guards against:
//!
//! - **Breakdown (击穿)**: concurrent misses of one key share one load
//!   (`seckill-singleflight`); in [`Backfill::Lease`] mode, across processes too.
//! - **Penetration (穿透)**: a loader's `Ok(None)` is cached as "not found"
//!   for [`Options::not_found_ttl`], told apart from values ([`Cached`]).
//! - **Avalanche (雪崩)**: every TTL is jittered over
//!   `[ttl·(1−j), ttl·(1+j)]`.
//! - **Stale backfill**: [`Backfill::SetNx`] never overwrites a writer's
//!   [`set`](Cache::set); [`Backfill::Lease`] also refuses a backfill that
//!   started before an [`invalidate`](Cache::invalidate). The table on
//!   [`Backfill`] lists which races each mode closes.
//! - **Lost invalidations**: the delayed second delete retries with backoff
//!   and reports a final failure ([`Options::on_delete_failure`],
//!   [`Stats::delete_failures`]).
//! - **Redis outages**: reads fall back to the loader, bounded by
//!   [`Options::redis_timeout`] (or fail, with [`OnRedisError::Fail`]).
//! - **Hot keys**: an optional bounded in-process front cache
//!   ([`Options::front_cache`]) and key replicas ([`Options::replicas`]).
//!
//! # Connections
//!
//! The cache runs on any [`Connection`] of `seckill-redis`, the one Redis
//! layer of the seckill crates (re-exported here as [`seckill_redis`]):
//! `seckill_redis::redis_rs::connect(url)` or `seckill_redis::fred::connect(url)`
//! open a single server, a Redis Cluster (`redis+cluster://`) or the primary
//! of a Sentinel group (`redis+sentinel://`), and the client types
//! themselves (redis-rs `MultiplexedConnection`, `ConnectionManager`,
//! `ClusterConnection`; fred `Client`, `Pool`) are connections too. Scripts
//! run by `EVALSHA` and are reloaded by `seckill-redis` when the server
//! lost them (a restart, a failover, `SCRIPT FLUSH`): no call fails with
//! `NOSCRIPT`. A failed call's [`RedisError`] keeps the
//! [`seckill_redis::Error`] as its source
//! ([`RedisError::is_retryable`]).
//!
//! # Redis Cluster
//!
//! Every Redis call of the cache, commands and scripts alike, touches
//! exactly one key: the cache key (or one of its copies, below). So any key
//! name works on a cluster, each call goes to the primary of its key's
//! slot, and no hash tag is needed. The key is used as you pass it (put
//! your prefix into it); a hash tag in it (`{sale}:sku:7`) places the entry
//! in the tag's slot like any Redis key, and a tag shared by many keys
//! puts them all on one primary, which is what spreading hot keys avoids.
//!
//! Hot keys: [`Options::replicas`]`(n)` keeps `n` copies of each entry in
//! `n` different slots, spread evenly over the slot space, and reads one at
//! random, so the reads of one hot key (the flash sale's SKU) spread over
//! the primaries. Copy names and the consistency they give are on
//! [`Options::replicas`].
//!
//! # Features
//!
//! `redis` (default; the redis-rs adapters of `seckill-redis`), `fred` (the
//! fred adapters), `postcard` (the `Postcard` binary codec; JSON is the
//! default). The cache itself is client-agnostic: with neither client
//! feature it builds, for a [`Connection`] of your own.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod bounded;
mod cache;
mod codec;
mod commands;
mod entry;
mod error;
mod fill;
mod front;
mod jitter;
mod lease;
mod load;
mod options;
mod replicas;
mod second_delete;
mod shared;
mod stats;

pub use cache::Cache;
#[cfg(feature = "postcard")]
pub use codec::Postcard;
pub use codec::{Codec, Json};
pub use entry::Cached;
pub use error::{CodecError, ConfigError, Error, RedisError};
pub use options::{Backfill, DeleteFailure, OnRedisError, Options};
pub use stats::Stats;

pub use seckill_redis;
pub use seckill_redis::Connection;

// The README's examples run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
