//! [`Options`]: TTLs, jitter, backfill mode, failure policy and hot-key aids.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{ConfigError, RedisError};

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
///
/// How long a stale value can be served after a write (database update,
/// then [`invalidate`](crate::Cache::invalidate)): in `Lease` mode, not at
/// all once the first delete has returned (a caller that joined a load of
/// the old row reads again); in `SetNx` mode, until the second delete, plus
/// the loads in flight at that moment (a load slower than
/// [`Options::double_delete_delay`] leaves its stale value for its TTL).
/// `tests/stale_window.rs` measures both.
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
/// Setters only record values; [`Cache::new`](crate::Cache::new) (or
/// [`Options::validate`]) checks each against the range its setter
/// documents and rejects the first one outside it with a [`ConfigError`]
/// naming the field. Every key the cache writes gets a TTL within these
/// ranges, so no setting makes a key permanent.
///
/// | setting | valid range | default |
/// |---|---|---|
/// | [`ttl`](Options::ttl) | 1 ms to 365 days | 5 min |
/// | [`jitter`](Options::jitter) | 0.0 to 0.99 | 0.1 |
/// | [`not_found_ttl`](Options::not_found_ttl) | 1 ms to 365 days | 30 s |
/// | [`double_delete_delay`](Options::double_delete_delay) | 0 (off) to 1 hour | 500 ms |
/// | [`lease_ttl`](Options::lease_ttl) | 1 ms to 10 minutes | 3 s |
/// | [`lease_wait`](Options::lease_wait) | 0 to 60 s | 1 s |
/// | [`redis_timeout`](Options::redis_timeout) | 1 ms to 60 s | 1 s |
/// | [`front_cache`](Options::front_cache) capacity | 1 to 1,048,576 entries | off |
/// | [`front_cache`](Options::front_cache) ttl | 1 ms to 1 hour | off |
/// | [`replicas`](Options::replicas) | 1 to 64 | 1 |
/// | [`delete_retries`](Options::delete_retries) retries | 0 to 20 | 5 |
/// | [`delete_retries`](Options::delete_retries) backoff | 1 ms to 60 s | 100 ms |
/// | [`max_pending_deletes`](Options::max_pending_deletes) | 1 to 10,000,000 | 100,000 |
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
    pub(crate) max_pending_deletes: u64,
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
            max_pending_deletes: 100_000,
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
            .field("max_pending_deletes", &self.max_pending_deletes)
            .field("on_delete_failure", &self.on_delete_failure.is_some())
            .finish()
    }
}

/// Valid ranges, shared by the setters' docs, [`Options::validate`] and the README.
pub(crate) mod range {
    use std::time::Duration;

    const MS: Duration = Duration::from_millis(1);
    const MINUTE: Duration = Duration::from_secs(60);
    const HOUR: Duration = Duration::from_secs(3600);
    const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

    pub(crate) const TTL: (Duration, Duration, &str) = (MS, YEAR, "1 ms to 365 days");
    pub(crate) const JITTER: (f64, f64, &str) = (0.0, crate::jitter::MAX_JITTER, "0.0 to 0.99");
    pub(crate) const DOUBLE_DELETE_DELAY: (Duration, Duration, &str) =
        (Duration::ZERO, HOUR, "0 (off) to 1 hour");
    pub(crate) const LEASE_TTL: (Duration, Duration, &str) =
        (MS, Duration::from_secs(600), "1 ms to 10 minutes");
    pub(crate) const LEASE_WAIT: (Duration, Duration, &str) = (Duration::ZERO, MINUTE, "0 to 60 s");
    pub(crate) const REDIS_TIMEOUT: (Duration, Duration, &str) = (MS, MINUTE, "1 ms to 60 s");
    pub(crate) const FRONT_CAPACITY: (usize, usize, &str) = (1, 1 << 20, "1 to 1048576");
    pub(crate) const FRONT_TTL: (Duration, Duration, &str) = (MS, HOUR, "1 ms to 1 hour");
    pub(crate) const REPLICAS: (u32, u32, &str) = (1, 64, "1 to 64");
    pub(crate) const DELETE_RETRIES: (u32, u32, &str) = (0, 20, "0 to 20");
    pub(crate) const DELETE_BACKOFF: (Duration, Duration, &str) = (MS, MINUTE, "1 ms to 60 s");
    pub(crate) const MAX_PENDING_DELETES: (u64, u64, &str) = (1, 10_000_000, "1 to 10000000");
}

fn check<T: PartialOrd + fmt::Debug>(
    field: &'static str,
    value: T,
    (low, high, range): (T, T, &'static str),
) -> Result<(), ConfigError> {
    // Written so that NaN fails too.
    if value >= low && value <= high {
        Ok(())
    } else {
        Err(ConfigError {
            field,
            range,
            got: format!("{value:?}"),
        })
    }
}

impl Options {
    /// Base time to live of cached values (default 5 minutes); each write
    /// gets it scaled by the [`jitter`](Options::jitter).
    ///
    /// Valid range: 1 ms to 365 days (checked by [`Cache::new`](crate::Cache::new)).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Relative TTL spread against avalanche (default 0.1): every TTL is drawn
    /// uniformly from `[ttl·(1−jitter), ttl·(1+jitter)]`, and is at least
    /// 1 ms. 0 disables it.
    ///
    /// Valid range: 0.0 to 0.99 (NaN is rejected).
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// Time to live of a cached "not found" (default 30 s, jittered too):
    /// how long a missing row is answered without reaching the database.
    ///
    /// Valid range: 1 ms to 365 days.
    pub fn not_found_ttl(mut self, ttl: Duration) -> Self {
        self.not_found_ttl = ttl;
        self
    }

    /// Delay of the second delete of [`invalidate`](crate::Cache::invalidate)
    /// (default 500 ms). Make it longer than a load plus a backfill takes.
    /// `Duration::ZERO` disables the second delete (reasonable with
    /// [`Backfill::Lease`], where it only backs up a failed first delete).
    ///
    /// Valid range: 0 (off) to 1 hour. Each pending second delete is a small
    /// spawned task, so the delay bounds how many are alive at once
    /// (invalidations per second × delay).
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
    ///
    /// Valid range: 1 ms to 10 minutes (a process that dies holding a lease
    /// blocks the key's other readers for up to this long).
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// In [`Backfill::Lease`] mode, how long a caller polls for another
    /// process's load before returning [`Error::LeaseBusy`](crate::Error::LeaseBusy)
    /// (default 1 s). Polls back off from 2 ms to 50 ms, so a wait costs at
    /// most about `wait / 50 ms + 5` Redis calls.
    ///
    /// Valid range: 0 to 60 s.
    pub fn lease_wait(mut self, wait: Duration) -> Self {
        self.lease_wait = wait;
        self
    }

    /// Upper bound on every Redis call (default 1 s); a call that takes
    /// longer fails with [`RedisError::Timeout`]. The connection bounds each
    /// call too ([`seckill_redis::Connection::timeout`]: 5 s unless wrapped
    /// in [`seckill_redis::WithTimeout`]); the shorter of the two applies.
    ///
    /// Valid range: 1 ms to 60 s.
    pub fn redis_timeout(mut self, timeout: Duration) -> Self {
        self.redis_timeout = timeout;
        self
    }

    /// What reads do when Redis fails (default [`OnRedisError::Load`]).
    pub fn on_redis_error(mut self, policy: OnRedisError) -> Self {
        self.on_redis_error = policy;
        self
    }

    /// Enables a bounded in-process front cache for hot keys: at most
    /// `capacity` entries, each served for `ttl` without a Redis round trip
    /// (off by default; leave this call out to keep it off). Invalidations
    /// reach only this process's front cache: other processes may serve the
    /// old value for up to `ttl`, so keep it short (tens to hundreds of
    /// milliseconds).
    ///
    /// Valid ranges: `capacity` 1 to 1,048,576 entries (checked as field
    /// `front_cache.capacity`), `ttl` 1 ms to 1 hour (`front_cache.ttl`).
    pub fn front_cache(mut self, capacity: usize, ttl: Duration) -> Self {
        self.front = Some(FrontCache { capacity, ttl });
        self
    }

    /// Keeps every entry in `n` copies, in `n` different Redis Cluster hash
    /// slots, and reads a random one: the reads of a hot key spread over
    /// the cluster's primaries instead of all landing on one (default 1:
    /// off, the key itself).
    ///
    /// Copy names: with `n` ≥ 2, copy `i` is the key with `#j` added at the
    /// end of the part the cluster hashes: `sku:7#j`, or `{sale}:sku:7`
    /// becomes `{sale#j}:sku:7` (a hash tag would otherwise pin every copy
    /// to one slot). `j` is the smallest number ≥ 0 whose slot lies in the
    /// `i`-th of `n` equal ranges of the 16,384 slots, so the copies' slots
    /// are always distinct and spread evenly; on a cluster whose primaries
    /// own equal slot ranges (as `redis-cli --cluster create` makes them),
    /// every primary holds a copy when `n` is at least twice the number of
    /// primaries, and a multiple of it spreads them evenly. Every
    /// process derives the same names from the key alone. Changing `n`
    /// renames the copies: the old ones are no longer read and expire by
    /// their TTL.
    ///
    /// Consistency: [`set`](crate::Cache::set) writes every copy and
    /// [`invalidate`](crate::Cache::invalidate) deletes every copy (both
    /// deletes of it), one copy after the other: while it runs a reader may
    /// get the old or the new state, once it returned every copy was
    /// written or deleted. A miss fills only the copy it read, under the
    /// [`Backfill`] mode's rules for that copy (`SET NX`, or a lease on
    /// that copy), so a fill racing a write behaves per copy exactly as
    /// the mode's table says for one key. A cold key costs up to `n` loads
    /// (one per copy; in `SetNx` mode, per process), and copies filled at
    /// different moments may hold rows of different ages until the next
    /// write reaches them all. Reads in one process share one load
    /// whichever copy they read.
    ///
    /// Valid range: 1 to 64.
    pub fn replicas(mut self, n: u32) -> Self {
        self.replicas = n;
        self
    }

    /// How many times a failed second delete is retried (default 5), with
    /// a backoff starting at `backoff` and doubling up to 30 s (default
    /// 100 ms).
    ///
    /// Valid ranges: `retries` 0 to 20 (field `delete_retries`), `backoff`
    /// 1 ms to 60 s (field `delete_retries.backoff`).
    pub fn delete_retries(mut self, retries: u32, backoff: Duration) -> Self {
        self.delete_retries = retries;
        self.delete_backoff = backoff;
        self
    }

    /// At most this many second deletes wait at once (default 100,000), so
    /// a burst of invalidations cannot grow memory without bound. Beyond it,
    /// an `invalidate` still deletes at once, but its second delete is not
    /// scheduled: it is reported like a failed one (counted in
    /// [`Stats::delete_failures`](crate::Stats::delete_failures), logged,
    /// passed to [`on_delete_failure`](Options::on_delete_failure) with
    /// `attempts: 0`).
    ///
    /// Valid range: 1 to 10,000,000.
    pub fn max_pending_deletes(mut self, max: u64) -> Self {
        self.max_pending_deletes = max;
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

    /// Checks every setting against its documented range.
    /// [`Cache::new`](crate::Cache::new) calls it.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first field out of range, its range and
    /// the value given.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use seckill_cache_aside::Options;
    ///
    /// assert!(Options::default().validate().is_ok());
    /// let error = Options::default().ttl(Duration::ZERO).validate().unwrap_err();
    /// assert_eq!(error.to_string(), "ttl must be 1 ms to 365 days, got 0ns");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        check("ttl", self.ttl, range::TTL)?;
        check("jitter", self.jitter, range::JITTER)?;
        check("not_found_ttl", self.not_found_ttl, range::TTL)?;
        check(
            "double_delete_delay",
            self.double_delete_delay,
            range::DOUBLE_DELETE_DELAY,
        )?;
        check("lease_ttl", self.lease_ttl, range::LEASE_TTL)?;
        check("lease_wait", self.lease_wait, range::LEASE_WAIT)?;
        check("redis_timeout", self.redis_timeout, range::REDIS_TIMEOUT)?;
        if let Some(front) = self.front {
            check(
                "front_cache.capacity",
                front.capacity,
                range::FRONT_CAPACITY,
            )?;
            check("front_cache.ttl", front.ttl, range::FRONT_TTL)?;
        }
        check("replicas", self.replicas, range::REPLICAS)?;
        check("delete_retries", self.delete_retries, range::DELETE_RETRIES)?;
        check(
            "delete_retries.backoff",
            self.delete_backoff,
            range::DELETE_BACKOFF,
        )?;
        check(
            "max_pending_deletes",
            self.max_pending_deletes,
            range::MAX_PENDING_DELETES,
        )?;
        Ok(())
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
