//! The four algorithms on Redis, shared by every app instance: Lua scripts,
//! key layout and reply parsing here; everything Redis (scripts by
//! `EVALSHA`, `NOSCRIPT`, timeouts, errors, both clients, Cluster and
//! Sentinel) is `seckill-redis`.

mod algorithm;
mod config;
mod error;
mod failure;
mod limiter;
mod scripts;

pub use algorithm::Algorithm;
pub use error::BackendError;
pub use failure::{FailurePolicy, FailureStats};
pub use limiter::{RedisLimiter, RedisLimiterBuilder};
pub use scripts::LuaScript;
