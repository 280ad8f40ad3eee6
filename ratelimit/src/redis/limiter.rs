//! A limiter whose state lives in Redis, shared by every app instance.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use seckill_redis::Connection;

use super::algorithm::Algorithm;
use super::config;
use super::error::BackendError;
use super::failure::{FailurePolicy, FailureStats, Fallback, Health, closed};
use super::scripts::{self, Mode, Outcome};
use crate::error::{ConfigError, Denied};

const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);
const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// One of the four algorithms, keyed, with its state in Redis: every app
/// instance sharing the Redis server (or Cluster, or Sentinel group) shares
/// the limit.
///
/// It runs on any [`seckill_redis::Connection`]: redis-rs (feature `redis`:
/// `ConnectionManager`, `MultiplexedConnection`, `ClusterConnection`,
/// `seckill_redis::redis_rs::connect` for any URL) or fred (feature `fred`:
/// `Client`, `Pool`, `seckill_redis::fred::connect`).
///
/// - **One clock**: the scripts read Redis's `TIME` once at their top, so app
///   servers' clock skew or a delayed call cannot grant extra (go-zero #4072).
/// - **Keys expire when idle**, with a TTL covering the full refill, drain or
///   window time and never 0 (go-zero's token limiter computes 0 for rate 100 /
///   burst 10 and flaps forever between Redis and its fallback).
/// - **Cluster-ready**: a call runs one script on one key,
///   `{name:key}:tb`, `:lb`, `:sw` or `:fw` (see [`LuaScript`](crate::LuaScript)),
///   so it stays in one slot; the hash tag `{name:key}` spreads keys over
///   the cluster.
/// - **Script cache**: [`seckill_redis::Script`]: `EVALSHA`, and one
///   `SCRIPT LOAD` for every caller that finds the script missing (a
///   restart, a failover, a new cluster node, a `SCRIPT FLUSH`).
/// - **Failures**: an error or no reply within the timeout (250 ms by
///   default) switches to the [`FailurePolicy`]; one call per probe interval
///   (100 ms) tries Redis again and switches back when it answers. Both
///   switches are logged (`tracing`, warn and info, the
///   [`seckill_redis::Error`] as the source of a [`BackendError`]) and
///   counted ([`RedisLimiter::stats`], [`RedisLimiter::last_error`]).
///
/// # Examples
///
/// ```no_run
/// use seckill_ratelimit::{Algorithm, FailurePolicy, RedisLimiter};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// // Or "redis+cluster://host:port,..." or "redis+sentinel://host:port,.../master";
/// // or seckill_redis::fred::connect (feature `fred`).
/// let conn = seckill_redis::redis_rs::connect("redis://127.0.0.1:6379").await?;
/// let per_user = RedisLimiter::builder(
///     conn,
///     "buy",
///     Algorithm::TokenBucket { rate_per_sec: 5, burst: 10 },
/// )
/// .on_failure(FailurePolicy::Fallback { instances: 4 })
/// .build()?;
///
/// match per_user.try_acquire("user:42", 1).await {
///     Ok(()) => println!("go ahead"),
///     Err(denied) => println!("429, retry after {:?}", denied.retry_after),
/// }
/// # Ok(()) }
/// ```
pub struct RedisLimiter<C: Connection> {
    conn: C,
    name: String,
    algorithm: Algorithm,
    policy: FailurePolicy,
    /// Built on the first call the policy decides, never before (a large
    /// limit's in-process state is paid for only in an outage).
    fallback: OnceLock<Fallback>,
    timeout: Duration,
    probe_interval: Duration,
    health: Health,
}

/// Builds a [`RedisLimiter`], checking every value against its range.
///
/// | setting | range | default |
/// |---|---|---|
/// | the [`Algorithm`]'s fields | see [`Algorithm`] | — |
/// | [`on_failure`](Self::on_failure) | [`FailurePolicy::Fallback`] `instances`: 1 to 65,536 | `Fallback { instances: 1 }` |
/// | [`timeout`](Self::timeout) | 1 ms to 60 s | 250 ms |
/// | [`probe_interval`](Self::probe_interval) | 0 to 24 hours | 100 ms |
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use seckill_ratelimit::{Algorithm, RedisLimiter};
///
/// # #[derive(Clone)]
/// # struct Offline;
/// # impl seckill_redis::Connection for Offline {
/// #     async fn send(&self, _: seckill_redis::Call<'_>) -> Result<seckill_redis::Value, seckill_redis::Error> {
/// #         Err(seckill_redis::Error::Config("offline".into()))
/// #     }
/// # }
/// # let conn = Offline;
/// let err = RedisLimiter::builder(conn, "api", Algorithm::TokenBucket { rate_per_sec: 5, burst: 10 })
///     .timeout(Duration::ZERO)
///     .build()
///     .unwrap_err();
/// assert_eq!(err.to_string(), "timeout must be 1 ms to 60 s, got 0ns");
/// ```
#[must_use = "call build() to get the limiter"]
pub struct RedisLimiterBuilder<C: Connection> {
    conn: C,
    name: String,
    algorithm: Algorithm,
    policy: FailurePolicy,
    timeout: Duration,
    probe_interval: Duration,
}

impl<C: Connection> RedisLimiterBuilder<C> {
    /// What to answer while Redis fails (default: an in-process fallback
    /// with the whole limit, `Fallback { instances: 1 }`; `instances` must be
    /// 1 to 65,536).
    pub fn on_failure(mut self, policy: FailurePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// How long to wait for Redis before counting the call as failed:
    /// 1 ms to 60 s (default 250 ms). It bounds the whole script run,
    /// a reload after `NOSCRIPT` included; the connection's own per-call
    /// timeout ([`seckill_redis::Connection::timeout`], 5 s unless wrapped
    /// in [`seckill_redis::WithTimeout`]) bounds each round trip in it, so
    /// the shorter wins.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// While on the failure policy, how often one call tries Redis again:
    /// 0 (every call) to 24 hours (default 100 ms).
    pub fn probe_interval(mut self, interval: Duration) -> Self {
        self.probe_interval = interval;
        self
    }

    /// The limiter, once every value is in range.
    ///
    /// # Errors
    ///
    /// [`ConfigError::OutOfRange`] or [`ConfigError::DurationOutOfRange`] naming the first field out of range
    /// (an [`Algorithm`] field, `instances`, `timeout` or `probe_interval`),
    /// its range and the value given.
    pub fn build(self) -> Result<RedisLimiter<C>, ConfigError> {
        self.algorithm.validate()?;
        if let FailurePolicy::Fallback { instances } = self.policy {
            config::instances(instances)?;
        }
        config::timeout(self.timeout)?;
        config::probe_interval(self.probe_interval)?;
        Ok(RedisLimiter {
            conn: self.conn,
            name: self.name,
            algorithm: self.algorithm,
            policy: self.policy,
            fallback: OnceLock::new(),
            timeout: self.timeout,
            probe_interval: self.probe_interval,
            health: Health::new(),
        })
    }
}

impl<C: Connection> std::fmt::Debug for RedisLimiterBuilder<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiterBuilder")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .field("policy", &self.policy)
            .field("timeout", &self.timeout)
            .field("probe_interval", &self.probe_interval)
            .finish_non_exhaustive()
    }
}

impl<C: Connection> RedisLimiter<C> {
    /// A limiter named `name` (the prefix of its Redis keys) running
    /// `algorithm` on `conn`, with the default failure policy (an
    /// in-process fallback), timeout (250 ms) and probe interval (100 ms).
    /// Use [`RedisLimiter::builder`] to change them.
    ///
    /// # Errors
    ///
    /// [`ConfigError::OutOfRange`] or [`ConfigError::DurationOutOfRange`] when a field of `algorithm` is out
    /// of its range (see [`Algorithm`]).
    pub fn new(
        conn: C,
        name: impl Into<String>,
        algorithm: Algorithm,
    ) -> Result<Self, ConfigError> {
        Self::builder(conn, name, algorithm).build()
    }

    /// A builder for a limiter with another failure policy, timeout or
    /// probe interval; [`RedisLimiterBuilder::build`] checks them all.
    pub fn builder(
        conn: C,
        name: impl Into<String>,
        algorithm: Algorithm,
    ) -> RedisLimiterBuilder<C> {
        RedisLimiterBuilder {
            conn,
            name: name.into(),
            algorithm,
            policy: FailurePolicy::default(),
            timeout: DEFAULT_TIMEOUT,
            probe_interval: DEFAULT_PROBE_INTERVAL,
        }
    }

    /// Whether the in-process fallback has been built (it is on the first
    /// call the fallback policy decides). For tests.
    #[doc(hidden)]
    pub fn fallback_is_built(&self) -> bool {
        self.fallback.get().is_some()
    }

    /// The limiter's name (the prefix of its Redis keys).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The algorithm and limits.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Failure counters and whether the failure policy is in force now.
    pub fn stats(&self) -> FailureStats {
        self.health.stats()
    }

    /// The latest Redis failure (an error, a timeout, a malformed reply),
    /// kept after Redis answers again; `None` while no call has failed.
    /// Its source is the [`seckill_redis::Error`]
    /// ([`BackendError::redis_error`]).
    pub fn last_error(&self) -> Option<Arc<BackendError>> {
        self.health.last_error()
    }

    /// Admits `n` units for `key` or says how long to wait; for a leaky
    /// bucket, as a meter. `n == 0` always passes without a Redis call; `n`
    /// above the burst, capacity or limit is denied without one. A call
    /// costs one script run whose work does not grow with `n` or the limit.
    ///
    /// # Errors
    ///
    /// [`Denied`]: over the limit (`retry_after` from Redis's clock, exact to
    /// the microsecond); [`DenyReason::ExceedsCapacity`](crate::DenyReason::ExceedsCapacity)
    /// when `n` is above the burst, capacity or limit (no Redis call);
    /// [`DenyReason::BackendUnavailable`](crate::DenyReason::BackendUnavailable)
    /// when Redis fails under [`FailurePolicy::FailClosed`].
    ///
    /// # Cancel safety
    ///
    /// Dropping the future may or may not leave the units counted in Redis
    /// (never more than `n`).
    pub async fn try_acquire(&self, key: &str, n: u32) -> Result<(), Denied> {
        if n == 0 {
            return Ok(());
        }
        if n > self.algorithm.capacity() {
            return Err(Denied::exceeds_capacity());
        }
        match self.run(key, n, Mode::Check).await {
            Some(Outcome::Admitted(_)) => Ok(()),
            Some(Outcome::Denied(denied)) => Err(denied),
            None => self.by_policy(key, n),
        }
    }

    /// Waits until `n` units for `key` pass. A leaky bucket books its slot in
    /// Redis and sleeps until it (a pacer: callers across all instances leave
    /// one per `1/rate`); the other algorithms retry after each `retry_after`.
    /// `n` is 1 to the burst, capacity or limit (`0` passes at once).
    ///
    /// # Errors
    ///
    /// [`Denied`] only when waiting cannot help:
    /// [`DenyReason::ExceedsCapacity`](crate::DenyReason::ExceedsCapacity),
    /// or [`DenyReason::BackendUnavailable`](crate::DenyReason::BackendUnavailable)
    /// under [`FailurePolicy::FailClosed`].
    ///
    /// # Cancel safety
    ///
    /// Dropping the future while it sleeps leaves a booked pacer slot unused
    /// (a gap in the output, never an excess).
    pub async fn acquire(&self, key: &str, n: u32) -> Result<(), Denied> {
        if n == 0 {
            return Ok(());
        }
        if n > self.algorithm.capacity() {
            return Err(Denied::exceeds_capacity());
        }
        if let Algorithm::LeakyBucket { .. } = self.algorithm {
            return match self.run(key, n, Mode::Pace).await {
                Some(Outcome::Admitted(wait)) => {
                    tokio::time::sleep(wait).await;
                    Ok(())
                }
                // The pacer script never denies; treat a denial like a wait.
                Some(Outcome::Denied(denied)) => {
                    tokio::time::sleep(denied.retry_after).await;
                    Ok(())
                }
                None => self.wait_by_policy(key, n).await,
            };
        }
        loop {
            match self.try_acquire(key, n).await {
                Ok(()) => return Ok(()),
                Err(denied) if denied.reason == crate::DenyReason::RateExceeded => {
                    tokio::time::sleep(denied.retry_after).await;
                }
                Err(denied) => return Err(denied),
            }
        }
    }

    async fn wait_by_policy(&self, key: &str, n: u32) -> Result<(), Denied> {
        loop {
            match self.by_policy(key, n) {
                Err(denied) if denied.reason == crate::DenyReason::RateExceeded => {
                    tokio::time::sleep(denied.retry_after).await;
                }
                decided => return decided,
            }
        }
    }

    /// Runs the script if Redis is up (or due for a probe); `None` when the
    /// failure policy must decide.
    async fn run(&self, key: &str, n: u32, mode: Mode) -> Option<Outcome> {
        if !self.health.should_try(self.probe_interval) {
            return None;
        }
        let call = scripts::call(&self.algorithm, &self.name, key, n, mode);
        let keys = [call.key.as_str()];
        let run = call.script.script().run(&self.conn, &keys, &call.args);
        let result = match tokio::time::timeout(self.timeout, run).await {
            Ok(Ok(reply)) => scripts::parse(&reply),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(seckill_redis::Error::Timeout {
                after: self.timeout,
            }),
        };
        match result {
            Ok(outcome) => {
                self.health.succeeded(&self.name);
                Some(outcome)
            }
            Err(error) => {
                self.health.failed(
                    &self.name,
                    self.policy,
                    self.probe_interval,
                    BackendError::new(error),
                );
                None
            }
        }
    }

    fn by_policy(&self, key: &str, n: u32) -> Result<(), Denied> {
        self.health.decided_by_policy();
        match self.policy {
            FailurePolicy::FailOpen => Ok(()),
            FailurePolicy::Fallback { instances } => self
                .fallback
                .get_or_init(|| Fallback::new(self.algorithm, instances))
                .try_acquire(key, n),
            FailurePolicy::FailClosed => {
                Err(closed(self.probe_interval.max(Duration::from_millis(1))))
            }
        }
    }
}

impl<C: Connection> std::fmt::Debug for RedisLimiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .field("policy", &self.policy)
            .field("timeout", &self.timeout)
            .field("probe_interval", &self.probe_interval)
            .field("stats", &self.health.stats())
            .finish_non_exhaustive()
    }
}
