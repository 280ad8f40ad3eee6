//! One execution per key among concurrent async callers.
//!
//! When a hot key expires from a cache, thousands of requests miss at once
//! and each would reload it from the database (cache breakdown, 缓存击穿).
//! A [`Group`] lets the first caller for a key run the load while every
//! concurrent caller for that key waits for the same outcome.
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use seckill_singleflight::{Error, Group};
//!
//! # #[tokio::main]
//! # async fn main() {
//! let group: Group<u64, String, String> = Group::new();
//! let loads = Arc::new(AtomicUsize::new(0));
//!
//! let callers: Vec<_> = (0..100)
//!     .map(|_| {
//!         let (group, loads) = (group.clone(), loads.clone());
//!         tokio::spawn(async move {
//!             group
//!                 .run(7, || async move {
//!                     loads.fetch_add(1, Ordering::SeqCst);
//!                     tokio::time::sleep(std::time::Duration::from_millis(50)).await;
//!                     Ok::<_, String>("sku 7".to_string())
//!                 })
//!                 .await
//!         })
//!     })
//!     .collect();
//! for caller in callers {
//!     assert_eq!(caller.await.unwrap(), Ok("sku 7".to_string()));
//! }
//! // Usually 1; a caller that arrives after the load finished starts a new one.
//! assert!(loads.load(Ordering::SeqCst) >= 1);
//!
//! // An error is shared with every waiter, never lost.
//! let failed = group.run(8, || async { Err("db down".to_string()) }).await;
//! assert_eq!(failed, Err(Error::Failed("db down".to_string())));
//! # }
//! ```
//!
//! What sets it apart:
//!
//! - **Errors reach everyone**: waiters get [`Error::Failed`] with a clone of
//!   the leader's error, not a bare "failed".
//! - **Panics are reported**: waiters get [`Error::Panicked`]; the panic
//!   resumes on the leader's own task; the key is usable again.
//! - **Cancellation hands over**: dropping the caller whose closure runs lets
//!   a waiter take over with its own closure; nobody hangs and nobody gets
//!   an error for another caller's timeout.
//! - **No global lock**: keys live in 64 independently locked shards; no lock
//!   is held across an `.await`, so a slow key never delays another.
//! - **Not a cache**: a finished execution leaves no entry behind;
//!   [`Group::forget`] detaches one still in flight.
//! - **Runtime-agnostic**: no async runtime dependency; waiters are woken
//!   with their own wakers, so it works under tokio, smol or any executor.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod call;
mod catch_panic;
mod error;
mod flight;
mod group;
mod lock;
mod shards;

pub use error::Error;
pub use group::Group;

// The README's examples run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
