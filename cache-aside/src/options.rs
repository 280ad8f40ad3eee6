//! [`Options`]: TTLs, jitter, backfill mode, failure policy and hot-key aids.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::RedisError;
use crate::jitter;

/// How a loaded value is written back to Redis after a miss.
///
/// | race | `SetNx` | `Lease` |
/// |---|---|---|
/// | R1: reader loads the old row; writer updates the row and calls [`set`](crate::Cache::set); reader backfills | closed: the writer's key exists, `NX` refuses the stale value | closed: the writer's `SET` replaced the lease, the fill is refused |
/// | R2: reader loads the old row; writer updates the row and calls [`invalidate`](crate::Cache::invalidate); reader backfills | **narrowed**: the stale value lands and lives until the delayed second delete (or its TTL if the reader is slower than that delete) | closed: the delete revoked the lease, the fill is refused |
/// | stampede inside one process | closed (singleflight) | closed (singleflight) |
/// | stampede across processes | open: each process loads once | closed: only the lease holder loads, others poll, then get [`Error::LeaseBusy`](crate::Error::LeaseBusy) |
/// | cost of a miss | one `SET NX` | two small Lua calls; waiters poll |
///
/// A hit costs one `GET` in both modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Backfill {
    /// `SET key value NX PX ttl`: a backfill never overwrites an entry that
    /// is already there (the GoBao seed's "add cache" fix).
    #[default]
    SetNx,
    /// A miss takes a lease (a random token stored under the key for
    /// [`Options::lease_ttl`]); the fill is a Lua script that writes only
    /// while the key still holds that token. `invalidate` and `set` revoke
    /// it. Facebook's memcache leases (NSDI'13) and rockscache, on one key.
    Lease,
}

/// What [`get_or_load`](crate::Cache::get_or_load) does when Redis fails or
/// times out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnRedisError {
    /// Degraded mode: run the loader (still one load per key per process,
    /// thanks to singleflight) and skip the backfill. Counted in
    /// [`Stats::degraded`](crate::Stats::degraded).
    #[default]
    Load,
    /// Return [`Error::Redis`](crate::Error::Redis) and leave the database
    /// alone (go-zero's choice: an outage must not reach the database).
    Fail,
}

/// A second delete that failed on every attempt; passed to
/// [`Options::on_delete_failure`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DeleteFailure {
    /// The Redis key that may still hold a stale value (until its TTL).
    pub key: String,
    /// The last error.
    pub error: RedisError,
    /// How many deletes were tried.
    pub attempts: u32,
}

/// Called once per second delete that failed on every attempt.
pub(crate) type FailureHook = Arc<dyn Fn(&DeleteFailure) + Send + Sync>;

/// Bounded in-process front cache settings (see [`Options::front_cache`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrontCache {
    pub(crate) capacity: usize,
    pub(crate) ttl: Duration,
}

/// Settings of a [`Cache`](crate::Cache); build with the chained setters.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use seckill_cache_aside::{Backfill, Options};
///
/// let options = Options::default()
///     .ttl(Duration::from_secs(300))
///     .jitter(0.1)
///     .not_found_ttl(Duration::from_secs(30))
///     .double_delete_delay(Duration::from_millis(500))
///     .backfill(Backfill::Lease);
/// assert_eq!(options.get_ttl(), Duration::from_secs(300));
/// ```
#[derive(Clone)]
pub struct Options {
    pub(crate) ttl: Duration,
    pub(crate) jitter: f64,
    pub(crate) not_found_ttl: Duration,
    pub(crate) double_delete_delay: Duration,
    pub(crate) backfill: Backfill,
    pub(crate) lease_ttl: Duration,
    pub(crate) lease_wait: Duration,
    pub(crate) redis_timeout: Duration,
    pub(crate) on_redis_error: OnRedisError,
    pub(crate) front: Option<FrontCache>,
    pub(crate) replicas: u32,
    pub(crate) delete_retries: u32,
    pub(crate) delete_backoff: Duration,
    pub(crate) on_delete_failure: Option<FailureHook>,
}

impl Default for Options {
    /// TTL 5 min ± 10 %, not-found 30 s, second delete after 500 ms,
    /// [`Backfill::SetNx`], lease 3 s with a 1 s wait, Redis timeout 1 s,
    /// degraded loads on Redis errors, 5 delete retries from 100 ms, no
    /// front cache, no replicas.
    fn default() -> Self {
        Options {
            ttl: Duration::from_secs(300),
            jitter: 0.1,
            not_found_ttl: Duration::from_secs(30),
            double_delete_delay: Duration::from_millis(500),
            backfill: Backfill::SetNx,
            lease_ttl: Duration::from_secs(3),
            lease_wait: Duration::from_secs(1),
            redis_timeout: Duration::from_secs(1),
            on_redis_error: OnRedisError::Load,
            front: None,
            replicas: 1,
            delete_retries: 5,
            delete_backoff: Duration::from_millis(100),
            on_delete_failure: None,
        }
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("ttl", &self.ttl)
            .field("jitter", &self.jitter)
            .field("not_found_ttl", &self.not_found_ttl)
            .field("double_delete_delay", &self.double_delete_delay)
            .field("backfill", &self.backfill)
            .field("lease_ttl", &self.lease_ttl)
            .field("lease_wait", &self.lease_wait)
            .field("redis_timeout", &self.redis_timeout)
            .field("on_redis_error", &self.on_redis_error)
            .field("front", &self.front)
            .field("replicas", &self.replicas)
            .field("delete_retries", &self.delete_retries)
            .field("delete_backoff", &self.delete_backoff)
            .field("on_delete_failure", &self.on_delete_failure.is_some())
            .finish()
    }
}

impl Options {
    /// Base time to live of cached values (default 5 minutes); each write
    /// gets it scaled by the [`jitter`](Options::jitter).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Relative TTL spread against avalanche (default 0.1): every TTL is drawn
    /// uniformly from `[ttl·(1−jitter), ttl·(1+jitter)]`. Clamped to
    /// `[0, 0.99]`; 0 disables it.
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter::clamp(jitter);
        self
    }

    /// Time to live of a cached "not found" (default 30 s, jittered too):
    /// how long a missing row is answered without reaching the database.
    pub fn not_found_ttl(mut self, ttl: Duration) -> Self {
        self.not_found_ttl = ttl;
        self
    }

    /// Delay of the second delete of [`invalidate`](crate::Cache::invalidate)
    /// (default 500 ms). Make it longer than a load plus a backfill takes.
    /// `Duration::ZERO` disables the second delete (reasonable with
    /// [`Backfill::Lease`], where it only backs up a failed first delete).
    pub fn double_delete_delay(mut self, delay: Duration) -> Self {
        self.double_delete_delay = delay;
        self
    }

    /// How loaded values are written back (default [`Backfill::SetNx`]).
    pub fn backfill(mut self, backfill: Backfill) -> Self {
        self.backfill = backfill;
        self
    }

    /// In [`Backfill::Lease`] mode, how long a lease lives (default 3 s).
    /// Make it longer than a slow load: a lease that expires mid-load lets
    /// another process load too (the late fill is still refused).
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl.max(Duration::from_millis(1));
        self
    }

    /// In [`Backfill::Lease`] mode, how long a caller polls for another
    /// process's load before returning [`Error::LeaseBusy`](crate::Error::LeaseBusy)
    /// (default 1 s).
    pub fn lease_wait(mut self, wait: Duration) -> Self {
        self.lease_wait = wait;
        self
    }

    /// Upper bound on every Redis call (default 1 s); a call that takes
    /// longer fails with [`RedisError::Timeout`].
    pub fn redis_timeout(mut self, timeout: Duration) -> Self {
        self.redis_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// What reads do when Redis fails (default [`OnRedisError::Load`]).
    pub fn on_redis_error(mut self, policy: OnRedisError) -> Self {
        self.on_redis_error = policy;
        self
    }

    /// Enables a bounded in-process front cache for hot keys: at most
    /// `capacity` entries, each served for `ttl` without a Redis round trip
    /// (off by default). Invalidations reach only this process's front
    /// cache: other processes may serve the old value for up to `ttl`, so
    /// keep it short (tens to hundreds of milliseconds).
    pub fn front_cache(mut self, capacity: usize, ttl: Duration) -> Self {
        self.front = (capacity > 0 && !ttl.is_zero()).then_some(FrontCache { capacity, ttl });
        self
    }

    /// Stores every key under `n` copies (`key`, `key#r1`, … `key#r{n-1}`)
    /// and reads a random one, spreading a hot key over Redis Cluster
    /// shards (default 1: off). Writes and invalidations touch every copy;
    /// each copy is filled on its own miss (so a cold key costs up to `n`
    /// loads across processes). Clamped to `1..=64`.
    pub fn replicas(mut self, n: u32) -> Self {
        self.replicas = n.clamp(1, 64);
        self
    }

    /// How many times a failed second delete is retried (default 5), with
    /// a backoff starting at `backoff` and doubling (default 100 ms).
    pub fn delete_retries(mut self, retries: u32, backoff: Duration) -> Self {
        self.delete_retries = retries;
        self.delete_backoff = backoff;
        self
    }

    /// Called when a second delete failed on every attempt (it is also
    /// counted in [`Stats::delete_failures`](crate::Stats::delete_failures)
    /// and logged with `tracing`).
    pub fn on_delete_failure(
        mut self,
        hook: impl Fn(&DeleteFailure) + Send + Sync + 'static,
    ) -> Self {
        self.on_delete_failure = Some(Arc::new(hook));
        self
    }

    /// The base TTL.
    pub fn get_ttl(&self) -> Duration {
        self.ttl
    }

    /// The backfill mode.
    pub fn get_backfill(&self) -> Backfill {
        self.backfill
    }
}
