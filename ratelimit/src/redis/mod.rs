//! The four algorithms on Redis, shared by every app instance: Lua scripts,
//! key layout and reply parsing here; one thin adapter per client.

mod algorithm;
mod backend;
#[cfg(feature = "fred")]
mod client_fred;
#[cfg(feature = "redis")]
mod client_redis;
mod config;
mod failure;
mod limiter;
mod scripts;

pub use algorithm::Algorithm;
pub use backend::{Backend, BackendError};
#[cfg(feature = "fred")]
pub use client_fred::Fred;
#[cfg(feature = "redis")]
pub use client_redis::RedisRs;
pub use failure::{FailurePolicy, FailureStats};
pub use limiter::{RedisLimiter, RedisLimiterBuilder};
pub use scripts::{LuaScript, ScriptCall};
