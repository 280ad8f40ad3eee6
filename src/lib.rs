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
//! | `ratelimit` (default) | [`seckill-ratelimit`](https://docs.rs/seckill-ratelimit) | token bucket, leaky bucket, sliding and fixed window limiters, keyed, in process and on Redis |
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "ratelimit")]
#[doc(inline)]
pub use seckill_ratelimit as ratelimit;
#[cfg(feature = "singleflight")]
#[doc(inline)]
pub use seckill_singleflight as singleflight;
