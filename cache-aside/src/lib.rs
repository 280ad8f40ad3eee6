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
//! let conn = redis::Client::open("redis://127.0.0.1:6379")?
//!     .get_multiplexed_async_connection()
//!     .await?;
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
//! Features: `redis` (default; redis-rs `ConnectionManager` and
//! `MultiplexedConnection`), `fred` (fred `Client` and `Pool`), `postcard`
//! (the `Postcard` binary codec; JSON is the default).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod backend;
mod bounded;
mod cache;
mod codec;
mod entry;
mod error;
mod fill;
mod front;
mod jitter;
mod lease;
mod load;
mod options;
mod second_delete;
mod shared;
mod stats;

pub use backend::Backend;
pub use cache::Cache;
#[cfg(feature = "postcard")]
pub use codec::Postcard;
pub use codec::{Codec, Json};
pub use entry::Cached;
pub use error::{CodecError, ConfigError, Error, RedisError};
pub use options::{Backfill, DeleteFailure, OnRedisError, Options};
pub use stats::Stats;

// The README's examples run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
