//! Size/time-triggered, key-sharded batching of async work, with
//! backpressure, retries, per-item results and lossless shutdown.
//!
//! A flash sale turns a million purchases into a million order messages;
//! writing each on its own would overwhelm Kafka or the database. A
//! [`Batcher`] collects submitted items per bucket and hands them to an
//! async handler in batches: when a bucket holds `max_batch_size` items, or
//! when its oldest item has waited `max_delay` (Kafka's `batch.size` and
//! `linger.ms`).
//!
//! ```
//! use std::time::Duration;
//! use seckill_batcher::{Batch, Batcher, FailedBatch, WaitError};
//!
//! #[derive(Debug)]
//! struct Order { sku: u64, user: u64 }
//!
//! # #[tokio::main]
//! # async fn main() {
//! let batcher = Batcher::builder()
//!     .max_batch_size(100)
//!     .max_delay(Duration::from_millis(10))
//!     .buckets(8)
//!     .capacity(10_000)
//!     .retries(3)
//!     .on_failure(|lost: FailedBatch<Order, std::io::Error>| eprintln!("dead letter: {lost:?}"))
//!     .build(|orders: Batch<Order>| async move {
//!         // One Kafka write for the whole batch; orders of one SKU stay in order.
//!         println!("{} orders", orders.len());
//!         Ok::<(), std::io::Error>(())
//!     })
//!     .unwrap();
//!
//! for user in 0..1_000 {
//!     let sku = user % 10;
//!     batcher.submit(&sku, Order { sku, user }).await.unwrap();
//! }
//! // Waits until the batch holding this order was written.
//! batcher.submit_and_wait(&3, Order { sku: 3, user: 1_000 }).await.unwrap();
//!
//! batcher.shutdown().await; // hands over everything accepted, exactly once
//! assert_eq!(batcher.stats().handled, 1_001);
//! assert!(matches!(
//!     batcher.submit_and_wait(&3, Order { sku: 3, user: 1_001 }).await,
//!     Err(WaitError::Closed(_))
//! ));
//! # }
//! ```
//!
//! Guarantees:
//!
//! - **Nothing waits past `max_delay`** for its batch to be handed over,
//!   unless the bucket's handler is still busy with the previous batch.
//! - **Per-key order**: a key always maps to the same bucket; a bucket's
//!   handler calls never overlap and keep submit order, retries included.
//!   Buckets run in parallel.
//! - **Backpressure, not loss**: a full bucket makes [`Batcher::submit`]
//!   wait and [`Batcher::try_submit`] return [`TrySubmitError::Full`] with
//!   the item; memory per bucket is bounded by `capacity + max_batch_size`.
//! - **Failures are never silent**: a failing or panicking handler is
//!   retried with backoff, then the failure callback gets a [`FailedBatch`]
//!   that owns the items (to dead-letter or resubmit them), with the error
//!   and the attempt count, and every [`Batcher::submit_and_wait`] caller
//!   gets the error.
//! - **Lossless shutdown**: [`Batcher::shutdown`] hands over every accepted
//!   item exactly once; submits racing with it get their item back.
//! - **Observable**: [`Batcher::stats`] counts submitted, handled and failed
//!   items, retries, panics, and batches by [`Trigger`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod batch;
mod batcher;
mod bucket;
mod builder;
mod catch_panic;
mod error;
mod failed;
mod handler;
mod retry;
mod stats;
mod worker;

pub use batch::{Batch, Trigger};
pub use batcher::Batcher;
pub use builder::Builder;
pub use error::{BatchError, BuildError, SubmitError, TrySubmitError, WaitError};
pub use failed::FailedBatch;
pub use handler::Handler;
pub use stats::Stats;

// The README's examples run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
