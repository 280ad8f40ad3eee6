//! A limiter whose state lives in Redis, shared by every app instance.

use std::time::Duration;

use super::algorithm::Algorithm;
use super::backend::{Backend, BackendError};
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
/// let per_user = RedisLimiter::new(
///     RedisRs::new(conn),
///     "buy",
///     Algorithm::TokenBucket { rate_per_sec: 5, burst: 10 },
/// )?
/// .on_failure(FailurePolicy::Fallback { instances: 4 });
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
    fallback: Option<Fallback>,
    timeout: Duration,
    probe_interval: Duration,
    health: Health,
}

impl<B: Backend> RedisLimiter<B> {
    /// A limiter named `name` (the prefix of its Redis keys) running
    /// `algorithm` on `backend`, falling back to an in-process limiter while
    /// Redis fails.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for a zero rate, burst, capacity or limit, or a window
    /// under 1 ms.
    pub fn new(
        backend: B,
        name: impl Into<String>,
        algorithm: Algorithm,
    ) -> Result<Self, ConfigError> {
        algorithm.validate()?;
        let policy = FailurePolicy::default();
        Ok(Self {
            backend,
            name: name.into(),
            algorithm,
            policy,
            fallback: fallback_for(algorithm, policy),
            timeout: DEFAULT_TIMEOUT,
            probe_interval: DEFAULT_PROBE_INTERVAL,
            health: Health::new(),
        })
    }

    /// What to answer while Redis fails (default: an in-process fallback
    /// with the whole limit).
    #[must_use]
    pub fn on_failure(mut self, policy: FailurePolicy) -> Self {
        self.policy = policy;
        self.fallback = fallback_for(self.algorithm, policy);
        self
    }

    /// How long to wait for Redis before counting the call as failed (default 250 ms).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// While on the failure policy, how often one call tries Redis again
    /// (default 100 ms; zero: every call).
    #[must_use]
    pub fn probe_interval(mut self, interval: Duration) -> Self {
        self.probe_interval = interval;
        self
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
    /// bucket, as a meter. `n == 0` always passes without a Redis call.
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
        match (self.policy, &self.fallback) {
            (FailurePolicy::FailOpen, _) => Ok(()),
            (FailurePolicy::Fallback { .. }, Some(fallback)) => fallback.try_acquire(key, n),
            _ => Err(closed(self.probe_interval.max(Duration::from_millis(1)))),
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

fn fallback_for(algorithm: Algorithm, policy: FailurePolicy) -> Option<Fallback> {
    match policy {
        FailurePolicy::Fallback { instances } => Some(Fallback::new(algorithm, instances)),
        _ => None,
    }
}
