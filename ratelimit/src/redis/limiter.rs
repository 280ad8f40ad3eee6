//! A limiter whose state lives in Redis, shared by every app instance.

use std::sync::OnceLock;
use std::time::Duration;

use super::algorithm::Algorithm;
use super::backend::{Backend, BackendError};
use super::config;
use super::failure::{FailurePolicy, FailureStats, Fallback, Health, closed};
use super::scripts::{self, Mode, Outcome};
use crate::error::{ConfigError, Denied};

const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);
const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// One of the four algorithms, keyed, with its state in Redis: every app
/// instance sharing the Redis server (or cluster) shares the limit.
///
/// - **One clock**: the scripts read Redis's `TIME` once at their top, so app
///   servers' clock skew or a delayed call cannot grant extra (go-zero #4072).
/// - **Keys expire when idle**, with a TTL covering the full refill, drain or
///   window time and never 0 (go-zero's token limiter computes 0 for rate 100 /
///   burst 10 and flaps forever between Redis and its fallback).
/// - **Cluster-ready**: the keys of one (limiter, key) pair share the hash tag
///   `{name:key}`.
/// - **Script cache**: `EVALSHA`, reloading on `NOSCRIPT` (a restart, a
///   failover or a `SCRIPT FLUSH`).
/// - **Failures**: an error or no reply within the timeout (250 ms by
///   default) switches to the [`FailurePolicy`]; one call per probe interval
///   (100 ms) tries Redis again and switches back when it answers. Both
///   switches are logged (`tracing`, warn and info) and counted
///   ([`RedisLimiter::stats`]).
///
/// # Examples
///
/// ```no_run
/// use seckill_ratelimit::{Algorithm, FailurePolicy, RedisLimiter, RedisRs};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let client = redis::Client::open("redis://127.0.0.1:6379")?;
/// let conn = redis::aio::ConnectionManager::new(client).await?;
/// let per_user = RedisLimiter::builder(
///     RedisRs::new(conn),
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
pub struct RedisLimiter<B: Backend> {
    backend: B,
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
/// use seckill_ratelimit::{Algorithm, Backend, BackendError, FailurePolicy, RedisLimiter, ScriptCall};
///
/// # struct Offline;
/// # impl Backend for Offline {
/// #     async fn eval(&self, _: &ScriptCall) -> Result<Vec<i64>, BackendError> { unreachable!() }
/// # }
/// let err = RedisLimiter::builder(Offline, "api", Algorithm::TokenBucket { rate_per_sec: 5, burst: 10 })
///     .timeout(Duration::ZERO)
///     .build()
///     .unwrap_err();
/// assert_eq!(err.to_string(), "timeout must be 1 ms to 60 s, got 0ns");
/// ```
#[must_use = "call build() to get the limiter"]
pub struct RedisLimiterBuilder<B: Backend> {
    backend: B,
    name: String,
    algorithm: Algorithm,
    policy: FailurePolicy,
    timeout: Duration,
    probe_interval: Duration,
}

impl<B: Backend> RedisLimiterBuilder<B> {
    /// What to answer while Redis fails (default: an in-process fallback
    /// with the whole limit, `Fallback { instances: 1 }`; `instances` must be
    /// 1 to 65,536).
    pub fn on_failure(mut self, policy: FailurePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// How long to wait for Redis before counting the call as failed:
    /// 1 ms to 60 s (default 250 ms).
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
    pub fn build(self) -> Result<RedisLimiter<B>, ConfigError> {
        self.algorithm.validate()?;
        if let FailurePolicy::Fallback { instances } = self.policy {
            config::instances(instances)?;
        }
        config::timeout(self.timeout)?;
        config::probe_interval(self.probe_interval)?;
        Ok(RedisLimiter {
            backend: self.backend,
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

impl<B: Backend> std::fmt::Debug for RedisLimiterBuilder<B> {
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

impl<B: Backend> RedisLimiter<B> {
    /// A limiter named `name` (the prefix of its Redis keys) running
    /// `algorithm` on `backend`, with the default failure policy (an
    /// in-process fallback), timeout (250 ms) and probe interval (100 ms).
    /// Use [`RedisLimiter::builder`] to change them.
    ///
    /// # Errors
    ///
    /// [`ConfigError::OutOfRange`] or [`ConfigError::DurationOutOfRange`] when a field of `algorithm` is out
    /// of its range (see [`Algorithm`]).
    pub fn new(
        backend: B,
        name: impl Into<String>,
        algorithm: Algorithm,
    ) -> Result<Self, ConfigError> {
        Self::builder(backend, name, algorithm).build()
    }

    /// A builder for a limiter with another failure policy, timeout or
    /// probe interval; [`RedisLimiterBuilder::build`] checks them all.
    pub fn builder(
        backend: B,
        name: impl Into<String>,
        algorithm: Algorithm,
    ) -> RedisLimiterBuilder<B> {
        RedisLimiterBuilder {
            backend,
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
        let result = match tokio::time::timeout(self.timeout, self.backend.eval(&call)).await {
            Ok(Ok(reply)) => scripts::parse(&reply).ok_or_else(|| BackendError::malformed(&reply)),
            Ok(Err(error)) => Err(error),
            Err(elapsed) => Err(BackendError::new(elapsed)),
        };
        match result {
            Ok(outcome) => {
                self.health.succeeded(&self.name);
                Some(outcome)
            }
            Err(error) => {
                self.health
                    .failed(&self.name, self.policy, self.probe_interval, &error);
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

impl<B: Backend> std::fmt::Debug for RedisLimiter<B> {
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
