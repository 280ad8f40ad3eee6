//! [`Backend`]: the few Redis operations the cache needs, implemented by a
//! thin adapter per client. The Lua scripts live in `lua/*.lua` and are
//! shared by both adapters.

use std::future::Future;

use crate::error::RedisError;

/// Implements [`Backend`] for a connection type by calling the free
/// functions of the adapter module the macro is invoked in (each takes the
/// connection by reference).
#[cfg_attr(not(any(feature = "redis", feature = "fred")), allow(unused_macros))]
macro_rules! delegate_backend {
    ($conn:ty) => {
        impl $crate::backend::sealed::Sealed for $conn {}

        impl $crate::backend::Backend for $conn {
            async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, RedisError> {
                get(self, key).await
            }

            async fn set(&self, key: &str, value: &[u8], ttl_ms: u64) -> Result<(), RedisError> {
                set(self, key, value, ttl_ms, false).await.map(drop)
            }

            async fn set_nx(
                &self,
                key: &str,
                value: &[u8],
                ttl_ms: u64,
            ) -> Result<bool, RedisError> {
                set(self, key, value, ttl_ms, true).await
            }

            async fn del(&self, key: &str) -> Result<(), RedisError> {
                del(self, key).await
            }

            async fn take_lease(
                &self,
                key: &str,
                marker: &[u8],
                ttl_ms: u64,
            ) -> Result<Option<Vec<u8>>, RedisError> {
                take_lease(self, key, marker, ttl_ms).await
            }

            async fn fill_lease(
                &self,
                key: &str,
                marker: &[u8],
                value: &[u8],
                ttl_ms: u64,
            ) -> Result<bool, RedisError> {
                fill_lease(self, key, marker, value, ttl_ms).await
            }

            async fn del_if_equal(&self, key: &str, expected: &[u8]) -> Result<bool, RedisError> {
                del_if_equal(self, key, expected, false).await
            }

            async fn del_if_persistent(
                &self,
                key: &str,
                expected: &[u8],
            ) -> Result<bool, RedisError> {
                del_if_equal(self, key, expected, true).await
            }
        }
    };
}

#[cfg(feature = "fred")]
mod fred;
#[cfg(feature = "redis")]
mod redis_rs;

/// Lua sources shared by the adapters (KEYS and ARGV are documented at the
/// top of each file).
#[cfg_attr(not(any(feature = "redis", feature = "fred")), allow(dead_code))]
pub(crate) mod lua {
    /// Read the key, or take the lease when it is absent.
    pub(crate) const TAKE_LEASE: &str = include_str!("lua/take_lease.lua");
    /// Store a loaded entry only while the caller's lease is in place.
    pub(crate) const FILL_LEASE: &str = include_str!("lua/fill_lease.lua");
    /// Delete a key only if it still holds the given bytes.
    pub(crate) const DEL_IF_EQUAL: &str = include_str!("lua/del_if_equal.lua");
}

pub(crate) mod sealed {
    /// Only this crate's adapters implement [`Backend`](super::Backend).
    pub trait Sealed {}
}

/// A Redis connection the cache can use.
///
/// Implemented for redis-rs `ConnectionManager` and `MultiplexedConnection`
/// (feature `redis`) and for fred `Client` and `Pool` (feature `fred`).
/// Every method is one round trip; scripts reload themselves after a
/// `NOSCRIPT` (a restart, a failover or `SCRIPT FLUSH`). The trait is sealed
/// so it can grow without breaking users.
pub trait Backend: sealed::Sealed + Clone + Send + Sync + 'static {
    /// `GET key`.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Vec<u8>>, RedisError>> + Send;

    /// `SET key value PX ttl_ms`.
    fn set(
        &self,
        key: &str,
        value: &[u8],
        ttl_ms: u64,
    ) -> impl Future<Output = Result<(), RedisError>> + Send;

    /// `SET key value NX PX ttl_ms`; whether it was stored.
    fn set_nx(
        &self,
        key: &str,
        value: &[u8],
        ttl_ms: u64,
    ) -> impl Future<Output = Result<bool, RedisError>> + Send;

    /// `DEL key`.
    fn del(&self, key: &str) -> impl Future<Output = Result<(), RedisError>> + Send;

    /// The key's bytes, or `None` after storing `marker` for `ttl_ms`
    /// because the key held nothing usable (the lease is the caller's).
    fn take_lease(
        &self,
        key: &str,
        marker: &[u8],
        ttl_ms: u64,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, RedisError>> + Send;

    /// Stores `value` for `ttl_ms` only if the key still holds `marker`;
    /// whether it was stored.
    fn fill_lease(
        &self,
        key: &str,
        marker: &[u8],
        value: &[u8],
        ttl_ms: u64,
    ) -> impl Future<Output = Result<bool, RedisError>> + Send;

    /// Deletes the key only if it still holds `expected`; whether it did.
    fn del_if_equal(
        &self,
        key: &str,
        expected: &[u8],
    ) -> impl Future<Output = Result<bool, RedisError>> + Send;

    /// Deletes the key only if it still holds `expected` and has no TTL (a
    /// lease-shaped entry this crate did not write); whether it did.
    fn del_if_persistent(
        &self,
        key: &str,
        expected: &[u8],
    ) -> impl Future<Output = Result<bool, RedisError>> + Send;
}
