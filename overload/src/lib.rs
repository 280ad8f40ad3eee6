//! Overload protection for async services, as [tower] layers and as plain
//! guards around any future.
//!
//! A flash sale meets overload in its first second: the rate limits cap what
//! was configured, but not the machine itself running out, nor a dependency
//! slowing down. This crate holds the parts that keep a service answering
//! fast when it cannot do everything it is asked:
//!
//! | module | protects against | how |
//! |---|---|---|
//! | [`bulkhead`] | one route or dependency taking every task | a fixed concurrency limit that rejects at once when full |
//! | [`adaptive`] | the machine or a dependency saturating | a concurrency limit that follows measured latency (`Gradient`) or throughput × best latency (`Bbr`) |
//! | [`breaker`] | calling a dependency that is failing | adaptive client-side throttling (the Google SRE breaker) |
//! | `rate_limit` (feature `http`) | one client taking more than its share | `seckill-ratelimit`'s keyed limiters as a layer answering 429 |
//!
//! Every part validates its settings into one [`ConfigError`] that names
//! the field and its range, and every layered call fails with one
//! [`LayerError`]: `Rejected` (the inner service was not called) or `Inner`.
//!
//! [tower]: https://docs.rs/tower
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod adaptive;
pub mod breaker;
pub mod bulkhead;
pub mod config;
mod layer_error;
#[cfg(feature = "http")]
pub mod rate_limit;

pub use adaptive::{AdaptiveLayer, AdaptiveLimit, Bbr, LimitAlgorithm, LimitExceeded};
pub use breaker::{Breaker, BreakerError, BreakerLayer, BreakerOpen};
pub use bulkhead::{Bulkhead, BulkheadFull, BulkheadLayer};
pub use config::ConfigError;
pub use layer_error::{AdmittedFuture, LayerError};
#[cfg(feature = "http")]
pub use rate_limit::{RateLimitLayer, RateLimited, RateLimiter};

// The README's examples run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
