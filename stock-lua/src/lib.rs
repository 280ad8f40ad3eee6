//! Atomic flash-sale stock deduction in Redis, one Lua script call per request.
//!
//! In a flash sale (秒杀) every purchase is decided inside Redis by one
//! script, so stock never goes below zero, a retried request is never
//! counted twice, and a request for several SKUs gets all of them or none.
//!
//! ```no_run
//! use seckill_stock_lua::{Deduction, Outcome, Refund, StockStore};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let conn = redis::Client::open("redis://127.0.0.1:6379")?
//!     .get_multiplexed_async_connection()
//!     .await?;
//! let store = StockStore::new(conn, "shop")?;
//! store.set_stock("phone", 1).await?;
//! store.set_stock("case", 5).await?;
//!
//! let order = Deduction {
//!     request_id: "b4c1e2".into(),
//!     user_id: "user-42".into(),
//!     items: vec![("phone".into(), 1), ("case".into(), 2)],
//!     per_user_limit: Some(2),
//! };
//! let decision = store.deduct(&order).await?;
//! assert_eq!(decision.outcome, Outcome::Deducted);
//! assert!(store.is_sold_out("phone").await?);
//!
//! // Another buyer wants the phone too: nothing of that order is taken.
//! let late = Deduction { request_id: "c9d0".into(), user_id: "user-7".into(), ..order.clone() };
//! assert_eq!(store.deduct(&late).await?.outcome, Outcome::SoldOut { sku: "phone".into() });
//! assert_eq!(store.stock("case").await?, 3);
//!
//! // The payment timed out: put everything back, exactly once.
//! assert!(matches!(store.refund("b4c1e2").await?, Refund::Refunded { .. }));
//! assert_eq!(store.refund("b4c1e2").await?, Refund::AlreadyRefunded);
//! assert_eq!(store.stock("phone").await?, 1);
//!
//! // Every change is in the SKU's log, for reconciliation with the database.
//! let log = store.deduction_log("case", None, 100).await?;
//! assert_eq!(log.len(), 2); // the deduction and the refund
//! # Ok(()) }
//! ```
//!
//! What one [`StockStore::deduct`] call does, inside one script:
//!
//! 1. **Dedup first**: a request id decided before returns its stored
//!    outcome ([`Decision::replayed`]); the record keeps the full outcome, so
//!    a client whose connection dropped after the script ran learns what
//!    happened by retrying. The same id with a different request (user,
//!    SKUs, quantities) is [`Error::RequestConflict`], carrying that outcome.
//! 2. **Per-user limit** of every item, then **stock** of every item; no
//!    write happens before the last check passed (a Lua script is atomic but
//!    never rolled back).
//! 3. **Write everything**: deduct each SKU, append to its log stream,
//!    count the units for the user, mark the SKU sold out at 0, store the outcome.
//!
//! [`StockStore::refund`] puts back exactly what a request took, once.
//!
//! # Key layout and Redis Cluster
//!
//! Every key of a namespace carries the hash tag `{namespace}`:
//! `seckill:{ns}:stock:<sku>` (string), `seckill:{ns}:soldout` (set),
//! `seckill:{ns}:log:<sku>` (stream: request id, user, quantity, kind; the
//! entry id carries the server time), `seckill:{ns}:bought:<sku>` (hash
//! user → units), `seckill:{ns}:req:<request id>` (hash: outcome, items,
//! refund state; expires after the dedup TTL). Scripts receive every key in
//! `KEYS`. So one namespace is one cluster slot: a multi-SKU request works on
//! Redis Cluster because a store only ever names SKUs of its own namespace,
//! and the price is that one namespace's traffic lands on one shard. Spread
//! load by splitting sales into namespaces; SKUs that must be bought together
//! belong to the same namespace.
//!
//! # Scripts
//!
//! The scripts are `.lua` files compiled in with `include_str!`, run by
//! `EVALSHA`; a `NOSCRIPT` reply (after a restart, a failover, or `SCRIPT
//! FLUSH`) is handled transparently by sending that call as `EVAL` with the
//! script text, which also caches the script again. With
//! [`ScriptMode::Functions`] they run as a Redis 7 function library
//! (`FCALL`), which survives restarts and failovers; a missing library is
//! loaded again by one caller while the others fall back to `EVAL`.
//!
//! # Features
//!
//! - `redis` (default): [`Connection`] for `redis::aio::MultiplexedConnection`
//!   and `redis::aio::ConnectionManager`.
//! - `fred`: [`Connection`] for `fred::clients::Client`.
//!
//! Both share the scripts, the key layout and the reply parsing; each adapter
//! only maps calls, replies and errors.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod deduction;
mod error;
mod keys;
mod log;
mod outcome;
mod reply;
mod scripts;
mod sharded;
mod slot;
mod store;

pub use deduction::{Deduction, MAX_ID_LEN, MAX_ITEMS, MAX_QUANTITY, MAX_STOCK};
pub use error::{Error, InvalidInput};
pub use log::{LogEntry, LogKind};
pub use outcome::{Decision, Outcome, Refund, RequestRecord};
pub use scripts::ScriptMode;
/// The Redis layer this crate runs on: its [`Connection`] trait is the
/// bound of [`StockStore`], its `Error` the source of [`Error::Redis`].
pub use seckill_redis;
pub use seckill_redis::Connection;
pub use sharded::{MAX_BUCKETS, ShardedStock};
pub use store::{
    DEFAULT_DEDUP_TTL, MAX_DEDUP_TTL, MAX_LOG_PAGE, MAX_RESTORE_CHUNK, RestoredGrant, StockStore,
};

// The README's examples run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
