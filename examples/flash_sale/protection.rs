//! Overload protection around the app's dependencies (`seckill-overload`):
//! a circuit breaker per dependency, a timeout per call, and an adaptive
//! concurrency limit in front of the Redis deduction.
//!
//! | what | wraps | when it acts | the caller sees |
//! |---|---|---|---|
//! | adaptive limit (`--adaptive-limit on`) | the Redis deduction, after the rate limits and the sold-out flag | more deductions in flight than the limit the latency allows | 503 `overloaded`, nothing decided |
//! | Redis breaker + `--redis-timeout-ms` | the Redis deduction | Redis failing or slower than the timeout | 503; throttled: nothing sent; timed out: outcome unknown, retry with the same request id |
//! | MySQL breaker + `--mysql-timeout-ms` | the consumer's batch transaction, the SKU loads | MySQL failing or slower than the timeout | the consumer keeps its batch and backs off (no offset committed); `GET /api/v1/skus/{id}` 503 |
//! | Kafka breaker | publishing a batch of orders | Kafka failing | a failed attempt: the batcher retries, then the reconciler republishes |
//!
//! Every breaker is the SRE book's adaptive client-side throttling
//! ([`Breaker`]): it rejects calls locally with a probability that rises
//! while more than half of the calls fail, lets a probe through every
//! `window / 20`, and closes by itself once the dependency answers again.

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use clap::ArgAction;
use clap::builder::BoolishValueParser;
use seckill::overload::adaptive::{
    self, AdaptiveLimit, Bbr, Gradient, LimitAlgorithm, LimitExceeded, Token,
};
use seckill::overload::breaker::{Breaker, BreakerOpen, BreakerState, Outcome, StateChange};

use crate::app::{Backends, StartError};
use crate::config::{RangeError, check_ranges};
use crate::metrics::{Dependency, Metrics};

/// Buckets of every breaker's window (one probe per bucket while throttling).
pub const BREAKER_BUCKETS: u32 = 20;
/// The adaptive limit's starting point (clamped into its min and max).
pub const ADAPTIVE_INITIAL_LIMIT: u32 = 20;

/// The flags of the overload protection (flattened into the sale settings).
#[derive(Debug, Clone, clap::Args)]
pub struct ProtectionSettings {
    /// Longest wait for Redis to answer one stock deduction (ms, 1–60,000;
    /// the default is the Redis client's own response timeout). Past it the
    /// purchase is answered 503 and counts as a Redis failure for its
    /// breaker. The deduction may still have happened: the client retries
    /// with the same request_id, and Redis replays the first answer.
    #[arg(long, global = true, default_value_t = 5_000)]
    pub redis_timeout_ms: u64,
    /// Longest wait for MySQL on one consumer batch transaction or one SKU
    /// load (ms, 1–600,000). A timed-out batch is retried whole (its
    /// writes are idempotent).
    #[arg(long, global = true, default_value_t = 10_000)]
    pub mysql_timeout_ms: u64,
    /// Circuit breakers around Redis (the deduction), MySQL (the consumer,
    /// the SKU loads) and Kafka (publishing): `on`, or `off` (they only
    /// count: no call is ever rejected; the timeouts stay).
    #[arg(
        long,
        global = true,
        env = "SECKILL_BREAKERS",
        default_value = "on",
        value_parser = BoolishValueParser::new(),
        action = ArgAction::Set
    )]
    pub breakers: bool,
    /// The window each breaker counts requests and successes over (ms,
    /// 100–3,600,000), in 20 buckets: while throttling, one call per bucket
    /// passes as a probe.
    #[arg(long, global = true, default_value_t = 10_000)]
    pub breaker_window_ms: u64,
    /// A breaker rejects nothing while its window holds fewer calls than
    /// this (0–1,000,000), so a few failures at low traffic reject nothing.
    #[arg(long, global = true, default_value_t = 5)]
    pub breaker_min_requests: u32,
    /// The adaptive concurrency limit in front of the Redis deduction
    /// (latency gradient): `on`, or `off` (the default). On, a deduction
    /// beyond the limit that Redis's latency allows is answered 503
    /// `overloaded` at once instead of queueing for Redis; a burst far
    /// above the limit then sees many of those, and its buyers retry.
    #[arg(
        long,
        global = true,
        env = "SECKILL_ADAPTIVE_LIMIT",
        default_value = "off",
        value_parser = BoolishValueParser::new(),
        action = ArgAction::Set
    )]
    pub adaptive_limit: bool,
    /// How the adaptive limit moves: `gradient` (latency against its
    /// recent best: backs off when Redis slows down) or `bbr` (the
    /// concurrency that carried the best throughput at the best latency of
    /// the last 5 s: keeps serving that much when the whole machine
    /// saturates, where a latency rule would shed almost everything).
    #[arg(long, global = true, value_enum, default_value_t = AdaptiveAlgorithm::Bbr)]
    pub adaptive_algorithm: AdaptiveAlgorithm,
    /// The lowest the adaptive limit goes (1–1,000,000).
    #[arg(long, global = true, default_value_t = 32)]
    pub adaptive_min_limit: u32,
    /// The highest the adaptive limit goes (`--adaptive-min-limit` to 1,000,000).
    #[arg(long, global = true, default_value_t = 1_000)]
    pub adaptive_max_limit: u32,
    /// `bbr`'s room over the measured concurrency, in percent (100–1,000):
    /// lower keeps the admitted latency nearer the best seen, higher sheds
    /// less of a burst.
    #[arg(long, global = true, default_value_t = 150)]
    pub adaptive_headroom_pct: u32,
}

/// The algorithms of the adaptive limit (`seckill-overload`'s `Gradient` and `Bbr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AdaptiveAlgorithm {
    /// Latency gradient.
    Gradient,
    /// Throughput × best latency.
    Bbr,
}

impl ProtectionSettings {
    /// Every number with its flag and valid range.
    pub fn ranges(&self) -> [(&'static str, u64, u64, u64); 7] {
        let n = |v: u32| u64::from(v);
        [
            ("redis-timeout-ms", self.redis_timeout_ms, 1, 60_000),
            ("mysql-timeout-ms", self.mysql_timeout_ms, 1, 600_000),
            ("breaker-window-ms", self.breaker_window_ms, 100, 3_600_000),
            (
                "breaker-min-requests",
                n(self.breaker_min_requests),
                0,
                1_000_000,
            ),
            (
                "adaptive-min-limit",
                n(self.adaptive_min_limit),
                1,
                1_000_000,
            ),
            (
                "adaptive-max-limit",
                n(self.adaptive_max_limit),
                n(self.adaptive_min_limit),
                1_000_000,
            ),
            (
                "adaptive-headroom-pct",
                n(self.adaptive_headroom_pct),
                100,
                1_000,
            ),
        ]
    }

    /// Checks every number against its range.
    ///
    /// # Errors
    ///
    /// The first setting out of range, naming its flag and range.
    pub fn validate(&self) -> Result<(), RangeError> {
        check_ranges(&self.ranges())
    }
}

/// A call guarded by a breaker (and a timeout) that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum GuardError<E> {
    /// The breaker rejected the call: nothing was sent.
    #[error("{dependency} is failing: its circuit breaker rejected the call ({open})")]
    Throttled {
        /// The dependency.
        dependency: Dependency,
        /// The rejection.
        open: BreakerOpen,
    },
    /// No answer in time: what the dependency did is unknown.
    #[error("{dependency} did not answer within {timeout:?}")]
    TimedOut {
        /// The dependency.
        dependency: Dependency,
        /// The timeout.
        timeout: Duration,
    },
    /// The dependency's own error.
    #[error(transparent)]
    Failed(E),
}

/// One dependency's breaker with the timeout of its calls, counting into
/// the metrics. Cheap to clone: clones share the breaker.
#[derive(Debug, Clone)]
pub struct Guard {
    breaker: Breaker,
    timeout: Option<Duration>,
    dependency: Dependency,
    metrics: Arc<Metrics>,
}

impl Guard {
    /// The breaker (tests read its statistics).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// Runs `call` through the breaker, within the timeout. `Ok` and the
    /// errors `classify` calls [`Outcome::Success`] (the dependency
    /// answered) count as successes, a timeout as a failure.
    ///
    /// # Errors
    ///
    /// [`GuardError::Throttled`] (`call` was not made), a timeout, or
    /// `call`'s error.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future counts nothing (the breaker ignores the call).
    pub async fn call<T, E, F, Fut>(
        &self,
        classify: impl Fn(&E) -> Outcome,
        call: F,
    ) -> Result<T, GuardError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let admitted = match self.breaker.allow() {
            Ok(admitted) => admitted,
            Err(open) => {
                self.metrics.count_breaker_rejected(self.dependency);
                return Err(GuardError::Throttled {
                    dependency: self.dependency,
                    open,
                });
            }
        };
        let result = match self.timeout {
            Some(timeout) => match tokio::time::timeout(timeout, call()).await {
                Ok(result) => result.map_err(GuardError::Failed),
                Err(_) => Err(GuardError::TimedOut {
                    dependency: self.dependency,
                    timeout,
                }),
            },
            None => call().await.map_err(GuardError::Failed),
        };
        admitted.record(match &result {
            Ok(_) => Outcome::Success,
            Err(GuardError::Failed(error)) => classify(error),
            Err(_) => Outcome::Failure,
        });
        result
    }
}

/// Every error is a failure (a classifier for [`Guard::call`]).
pub fn any_error<E>(_: &E) -> Outcome {
    Outcome::Failure
}

/// The adaptive concurrency limit of the buy path, counting into the
/// metrics. Cheap to clone.
#[derive(Debug, Clone)]
pub struct BuyLimit {
    limit: AdaptiveLimit,
    metrics: Arc<Metrics>,
}

impl BuyLimit {
    /// A place for one deduction, or shed (counted).
    ///
    /// # Errors
    ///
    /// [`LimitExceeded`]: as many deductions in flight as the limit.
    pub fn try_acquire(&self) -> Result<Token, LimitExceeded> {
        self.limit.try_acquire().inspect_err(|_| {
            self.metrics.adaptive_shed.inc();
        })
    }

    /// Releases `token`: `Some(outcome)` hands its latency to the limit,
    /// `None` releases it without a sample (the call says nothing about
    /// latency: a connection error, a breaker rejection).
    pub fn finish(&self, token: Token, outcome: Option<adaptive::Outcome>) {
        match outcome {
            Some(outcome) => token.finish(outcome),
            None => drop(token),
        }
    }

    /// The limit (tests read its statistics).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn limit(&self) -> &AdaptiveLimit {
        &self.limit
    }
}

fn gauge(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// The breakers of one instance and its buy path's adaptive limit.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct Protection {
    /// Redis, on the buy path.
    pub redis: Guard,
    /// MySQL: the consumer's transactions and the SKU loads.
    pub mysql: Guard,
    /// Kafka: publishing.
    pub kafka: Guard,
    /// The adaptive limit in front of the Redis deduction; `None`: off.
    pub buy_limit: Option<BuyLimit>,
}

impl Protection {
    /// Builds the breakers and the limit of `settings`, reporting to `metrics`.
    ///
    /// # Errors
    ///
    /// A setting out of its range.
    pub fn new(settings: &ProtectionSettings, metrics: &Arc<Metrics>) -> Result<Self, StartError> {
        let invalid = |e: &dyn std::fmt::Display| StartError::Config(e.to_string());
        settings.validate().map_err(|e| invalid(&e))?;
        let guard = |dependency, timeout: Option<u64>| {
            let state = StateGauge {
                dependency,
                metrics: Arc::downgrade(metrics),
                seq: Mutex::new(0),
            };
            Breaker::builder()
                .window(Duration::from_millis(settings.breaker_window_ms))
                .buckets(BREAKER_BUCKETS)
                .min_requests(settings.breaker_min_requests)
                .max_reject(if settings.breakers { 0.95 } else { 0.0 })
                .on_state_change(move |change| state.changed(change))
                .build()
                .map(|breaker| Guard {
                    breaker,
                    timeout: timeout.map(Duration::from_millis),
                    dependency,
                    metrics: Arc::clone(metrics),
                })
                .map_err(|e| invalid(&format_args!("{dependency} breaker: {e}")))
        };
        let buy_limit = if settings.adaptive_limit {
            let (min, max) = (
                settings.adaptive_min_limit as usize,
                settings.adaptive_max_limit as usize,
            );
            let algorithm: Box<dyn LimitAlgorithm> = match settings.adaptive_algorithm {
                AdaptiveAlgorithm::Gradient => Box::new(
                    Gradient::builder()
                        .build()
                        .map_err(|e| invalid(&format_args!("adaptive limit: {e}")))?,
                ),
                AdaptiveAlgorithm::Bbr => Box::new(
                    Bbr::builder()
                        .headroom(f64::from(settings.adaptive_headroom_pct) / 100.0)
                        .build()
                        .map_err(|e| invalid(&format_args!("adaptive limit: {e}")))?,
                ),
            };
            let limit = AdaptiveLimit::builder(algorithm)
                .min_limit(min)
                .max_limit(max)
                .initial_limit((ADAPTIVE_INITIAL_LIMIT as usize).clamp(min, max))
                .build()
                .map_err(|e| invalid(&format_args!("adaptive limit: {e}")))?;
            metrics.adaptive_limit.set(gauge(limit.limit()));
            Some(BuyLimit {
                limit,
                metrics: Arc::clone(metrics),
            })
        } else {
            metrics.adaptive_limit.set(0);
            None
        };
        let protection = Self {
            redis: guard(Dependency::Redis, Some(settings.redis_timeout_ms))?,
            mysql: guard(Dependency::Mysql, Some(settings.mysql_timeout_ms))?,
            // Publishing waits for Kafka's acknowledgement, bounded by the
            // producer's own delivery timeout.
            kafka: guard(Dependency::Kafka, None)?,
            buy_limit,
        };
        // A breaker's state moves with its window, also without calls:
        // evaluate it at each scrape (a change reaches the gauge through
        // the state callback). The limit is read at each scrape too.
        let breakers = [&protection.redis, &protection.mysql, &protection.kafka]
            .map(|guard| guard.breaker.clone());
        let limit = protection.buy_limit.as_ref().map(|l| l.limit.clone());
        // Weak: the metrics hold this hook (and so the breakers, whose
        // callbacks reach the metrics).
        let refreshed = Arc::downgrade(metrics);
        metrics.on_render(move || {
            for breaker in &breakers {
                let _ = breaker.state();
            }
            if let (Some(limit), Some(metrics)) = (&limit, refreshed.upgrade()) {
                metrics.adaptive_limit.set(gauge(limit.limit()));
            }
        });
        Ok(protection)
    }
}

/// Keeps a breaker's state gauge on its latest change: changes seen by
/// concurrent callers may reach the callback out of order, and the highest
/// `seq` is the current state.
struct StateGauge {
    dependency: Dependency,
    /// Weak: the metrics keep the breakers alive through their render hook.
    metrics: Weak<Metrics>,
    seq: Mutex<u64>,
}

impl StateGauge {
    fn changed(&self, change: StateChange) {
        let throttling = change.to == BreakerState::Throttling;
        if let Some(metrics) = self.metrics.upgrade() {
            metrics.count_breaker_change(self.dependency);
            let mut seq = self.seq.lock().unwrap_or_else(PoisonError::into_inner);
            if change.seq > *seq {
                *seq = change.seq;
                metrics.set_breaker_state(self.dependency, throttling);
            }
        }
        if throttling {
            tracing::warn!(
                dependency = %self.dependency,
                reject_probability = change.reject_probability,
                "{} is failing: its circuit breaker throttles calls",
                self.dependency
            );
        } else {
            tracing::info!(dependency = %self.dependency, "{} answers again: its circuit breaker closed", self.dependency);
        }
    }
}

impl Backends {
    /// These backends with `protection` in place: the stock ledger's
    /// deduction behind the adaptive limit and the Redis breaker, the
    /// store's batch writes and SKU loads behind the MySQL breaker, and the
    /// order sinks made by [`Backends::sale`] behind the Kafka breaker.
    pub fn protect(&self, protection: &Protection) -> Backends {
        let mut backends = self.clone();
        backends.stock = self.stock.protected(protection);
        backends.store = self.store.guarded(protection.mysql.clone());
        backends.protection = Some(protection.clone());
        backends
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SaleSettings;
    use crate::config::range_tests::assert_every_range_is_checked;

    #[test]
    fn every_number_is_checked_against_its_range() {
        let defaults = SaleSettings::defaults().unwrap().protection;
        assert!(defaults.breakers);
        assert!(!defaults.adaptive_limit);
        assert_every_range_is_checked(
            &defaults,
            ProtectionSettings::ranges,
            set,
            ProtectionSettings::validate,
        );
        // The largest limit cannot be below the smallest.
        let mut settings = defaults.clone();
        settings.adaptive_min_limit = 50;
        settings.adaptive_max_limit = 49;
        assert_eq!(
            settings.validate().unwrap_err().to_string(),
            "--adaptive-max-limit must be 50 to 1000000, got 49"
        );
        // The sale's settings check these too.
        let mut sale = SaleSettings::defaults().unwrap();
        sale.protection.redis_timeout_ms = 0;
        assert_eq!(sale.validate().unwrap_err().flag, "redis-timeout-ms");
    }

    fn set(s: &mut ProtectionSettings, flag: &str, v: u64) {
        let n = u32::try_from(v).unwrap_or(u32::MAX);
        match flag {
            "redis-timeout-ms" => s.redis_timeout_ms = v,
            "mysql-timeout-ms" => s.mysql_timeout_ms = v,
            "breaker-window-ms" => s.breaker_window_ms = v,
            "breaker-min-requests" => s.breaker_min_requests = n,
            "adaptive-min-limit" => s.adaptive_min_limit = n,
            "adaptive-max-limit" => s.adaptive_max_limit = n,
            "adaptive-headroom-pct" => s.adaptive_headroom_pct = n,
            other => panic!("unknown flag {other}"),
        }
    }

    #[test]
    fn switches_parse_on_and_off() {
        use clap::{Args, FromArgMatches};
        let parse = |args: &[&str]| {
            let command = ProtectionSettings::augment_args(clap::Command::new("t"));
            let matches = command
                .try_get_matches_from(std::iter::once("t").chain(args.iter().copied()))
                .unwrap();
            ProtectionSettings::from_arg_matches(&matches).unwrap()
        };
        let s = parse(&["--adaptive-limit", "on", "--breakers", "off"]);
        assert!(s.adaptive_limit && !s.breakers);
        let s = parse(&["--adaptive-limit=true", "--breakers=yes"]);
        assert!(s.adaptive_limit && s.breakers);
    }

    /// A throttling breaker rejects without calling, counts each rejection
    /// and a timeout as a failure, and keeps the gauge on its state.
    #[tokio::test]
    async fn guard_counts_timeouts_and_rejections() {
        let metrics = Arc::new(Metrics::default());
        let mut settings = SaleSettings::defaults().unwrap().protection;
        settings.redis_timeout_ms = 20;
        // A 10 s window: the test stays within it.
        settings.breaker_window_ms = 10_000;
        let protection = Protection::new(&settings, &metrics).unwrap();
        let redis = &protection.redis;
        let calls = std::sync::atomic::AtomicU64::new(0);
        let slow = || async {
            calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<(), &str>(())
        };
        for _ in 0..5 {
            let r = redis.call(any_error, slow).await;
            assert!(matches!(r, Err(GuardError::TimedOut { .. })), "{r:?}");
        }
        assert_eq!(redis.breaker().stats().failures, 5);
        // Throttling now: while the calls keep failing, most are rejected
        // without being made (p from 0.83 up to 0.95).
        let failing = || async {
            calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Err::<(), _>("down")
        };
        let mut rejected = 0;
        for _ in 0..200 {
            match redis.call(any_error, failing).await {
                Err(GuardError::Throttled { .. }) => rejected += 1,
                Err(GuardError::Failed("down")) => {}
                other => panic!("{other:?}"),
            }
        }
        assert!(rejected > 100, "{rejected}");
        let stats = redis.breaker().stats();
        assert_eq!(
            calls.load(std::sync::atomic::Ordering::Relaxed),
            205 - rejected
        );
        assert_eq!(stats.rejected, rejected);
        assert_eq!(stats.admitted, 205 - rejected);
        assert_eq!(metrics.breaker(Dependency::Redis), (1, 1, rejected));
        assert_eq!(metrics.breaker(Dependency::Mysql), (0, 0, 0));
        // Answers again: a few successes (each counts twice) close it.
        while redis.breaker().state() == BreakerState::Throttling {
            let _ = redis.call(any_error, || async { Ok::<(), &str>(()) }).await;
        }
        metrics.render();
        assert_eq!(
            metrics.breaker(Dependency::Redis),
            (0, 2, redis.breaker().stats().rejected)
        );
        // Off: counts only, never rejects.
        settings.breakers = false;
        let off = Protection::new(&settings, &metrics).unwrap();
        for _ in 0..5 {
            let _ = off
                .kafka
                .call(any_error, || async { Err::<(), _>("down") })
                .await;
        }
        for _ in 0..100 {
            let r = off
                .kafka
                .call(any_error, || async { Err::<(), _>("down") })
                .await;
            assert!(matches!(r, Err(GuardError::Failed("down"))));
        }
        assert_eq!(off.kafka.breaker().stats().rejected, 0);
    }
}
