//! An adaptive concurrency limit that follows measured latency.
//!
//! An [`AdaptiveLimit`] admits calls while fewer than its current *limit* are
//! in flight and rejects the rest at once with [`LimitExceeded`]. Each
//! admitted call's [`Token`] measures its round-trip time (RTT) and, when the
//! call completes, hands a [`Sample`] to a pluggable [`LimitAlgorithm`] that
//! returns the new limit. The handle clamps every answer into
//! `min_limit..=max_limit`, whatever the algorithm says.
//!
//! # Why latency, not CPU
//!
//! The shipped default, [`Gradient`], watches latency, like Netflix's
//! concurrency-limits (Gradient2/Vegas). go-zero's shedder watches the
//! process's CPU instead and sheds when it passes a threshold (90 % by
//! default). For a flash-sale service the resource that runs out first is
//! rarely the local CPU: it is a dependency (Redis, MySQL, Kafka) or a pool
//! in front of it, and queueing there shows as latency while the local CPU
//! idles. Latency is also measured per call, on the shared tokio clock, so
//! the limit is tested deterministically with a paused clock; CPU usage is a
//! process-wide, sampled, OS-specific signal. A CPU-based algorithm fits the
//! same [`LimitAlgorithm`] trait (it would ignore the RTT and read its own
//! CPU gauge); [`Aimd`] is the second shipped implementation.
//!
//! When the machine itself saturates, latency misleads: every call slows
//! down together (scheduling delay counts in its RTT), and a latency rule
//! sheds down to its minimum while the service could still serve what it
//! served a moment ago. [`Bbr`] reads throughput instead: the limit is the
//! concurrency that carried the best throughput at the best latency of the
//! last few seconds (the bandwidth-delay product of TCP BBR, the rule of
//! go-zero's shedder), so under saturation it keeps serving that much and
//! sheds only the calls that would have waited.
//!
//! # Examples
//!
//! ```
//! use seckill_overload::adaptive::{AdaptiveLimit, Gradient};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let limit = AdaptiveLimit::builder(Gradient::builder().build()?)
//!     .min_limit(4)
//!     .max_limit(1_000)
//!     .initial_limit(20)
//!     .build()?;
//!
//! match limit.try_acquire() {
//!     Ok(token) => {
//!         // ... call the dependency ...
//!         token.success(); // or token.dropped() on a timeout / overload error
//!     }
//!     Err(rejected) => eprintln!("shed: {rejected}"),
//! }
//! assert_eq!(limit.stats().in_flight, 0);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use crate::config::ConfigError;
use crate::layer_error::{Admission, AdmittedFuture, LayerError};

mod bbr;

pub use bbr::{Bbr, BbrBuilder};

/// The largest `max_limit` an [`AdaptiveLimit`] accepts.
pub const MAX_LIMIT: usize = 1_000_000;

fn check_factor(field: &'static str, min: f64, max: f64, got: f64) -> Result<f64, ConfigError> {
    if (min..=max).contains(&got) {
        Ok(got)
    } else {
        Err(ConfigError::new(field, format!("{min} to {max}"), got))
    }
}

fn check_count(field: &'static str, min: u32, max: u32, got: u32) -> Result<u32, ConfigError> {
    if (min..=max).contains(&got) {
        Ok(got)
    } else {
        Err(ConfigError::new(field, format!("{min} to {max}"), got))
    }
}

/// The limit was reached: the call was rejected without running.
///
/// Answer it as overload (HTTP 503, or fail the dependency call fast).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "adaptive concurrency limit reached: {limit} calls in flight; \
     the call was shed without running, retry later"
)]
pub struct LimitExceeded {
    /// The limit at the time of the rejection.
    pub limit: usize,
}

/// How an admitted call ended, as far as the limit is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The call completed; its RTT is a latency sample.
    Success,
    /// The call failed in a way that signals overload (a timeout, a
    /// "too busy" answer): algorithms back off.
    Dropped,
}

/// One completed call, handed to a [`LimitAlgorithm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Sample {
    /// From admission to completion, on the tokio clock.
    pub rtt: Duration,
    /// Calls in flight when this one was admitted (itself included).
    pub in_flight: usize,
    /// How it ended.
    pub outcome: Outcome,
}

impl Sample {
    /// A sample (for driving an algorithm directly, e.g. in tests).
    pub fn new(rtt: Duration, in_flight: usize, outcome: Outcome) -> Self {
        Self {
            rtt,
            in_flight,
            outcome,
        }
    }
}

/// A rule that moves the concurrency limit from samples.
///
/// Called once per completed call, under a lock held only for the call
/// (keep it short: no I/O, no waiting). `limit` is the current limit; the
/// returned value is clamped by the [`AdaptiveLimit`] into
/// `min_limit..=max_limit`, so an algorithm cannot move the limit outside
/// them. A CPU-based shedder fits here too: ignore `sample.rtt` and read a
/// CPU gauge.
pub trait LimitAlgorithm: Send + 'static {
    /// The new limit after `sample`.
    fn update(&mut self, limit: usize, sample: &Sample) -> usize;
}

impl<A: LimitAlgorithm + ?Sized> LimitAlgorithm for Box<A> {
    fn update(&mut self, limit: usize, sample: &Sample) -> usize {
        (**self).update(limit, sample)
    }
}

/// A latency-gradient limit in the spirit of Netflix's Gradient2.
///
/// It keeps a *baseline* RTT, the smallest RTT seen over the last one to two
/// baseline windows of `baseline_rounds` round trips each (a round trip is
/// `limit` samples, so the window follows throughput, not a sample count
/// that would take minutes to fill at a low limit), and a *short* RTT, an exponential average
/// over about `short_window` samples. Their ratio is the gradient:
///
/// - while `short <= tolerance × baseline` and the limit is in use (at least
///   half of it in flight), the limit grows by `√limit` per `limit` samples
///   (about `√limit` per round trip);
/// - when `short > tolerance × baseline`, the limit is multiplied by
///   `max(0.5, baseline / short)`: back to where latency was at its
///   baseline, at most halving, at most once per `limit` samples (one round
///   trip), so a backlog of slow calls admitted earlier does not cut it
///   again and again;
/// - a dropped call multiplies it by `backoff`, under the same
///   once-per-round rule.
///
/// With a dependency that serves `C` calls at once and queues the rest, the
/// limit oscillates around `C`: up to where the short RTT passes
/// `tolerance × baseline`, then back down below `C` (where queueing stops, so
/// the baseline stays honest). With the defaults and `C` = 50 the tests see
/// it stay within 34 to 65 once settled. When the dependency itself slows down,
/// the limit drops (as far as `min_limit` if the slowdown lasts), then
/// recovers once the baseline windows have rolled over and the slower RTT is
/// the new baseline.
#[derive(Debug, Clone)]
pub struct Gradient {
    tolerance: f64,
    backoff: f64,
    short_alpha: f64,
    baseline_rounds: u32,
    estimate: f64,
    short: Option<f64>,
    window_min: f64,
    previous_min: f64,
    window_samples: u64,
    since_decrease: u64,
}

/// Builds a [`Gradient`]; every setter documents its range, checked by
/// [`GradientBuilder::build`].
#[derive(Debug, Clone)]
pub struct GradientBuilder {
    tolerance: f64,
    backoff: f64,
    short_window: u32,
    baseline_rounds: u32,
}

impl Default for GradientBuilder {
    fn default() -> Self {
        Self {
            tolerance: 1.5,
            backoff: 0.9,
            short_window: 10,
            baseline_rounds: 20,
        }
    }
}

impl GradientBuilder {
    /// How far the short RTT may rise above the baseline before the limit
    /// shrinks: 1.05 to 10.0, default 1.5.
    pub fn tolerance(mut self, tolerance: f64) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// The factor applied on a dropped call: 0.5 to 0.99, default 0.9.
    pub fn backoff(mut self, backoff: f64) -> Self {
        self.backoff = backoff;
        self
    }

    /// Samples averaged into the short RTT: 1 to 1,000, default 10.
    pub fn short_window(mut self, samples: u32) -> Self {
        self.short_window = samples;
        self
    }

    /// Round trips (of `limit` samples, at least 10 samples) per baseline
    /// window; the baseline is the minimum over the current and the previous
    /// window: 2 to 10,000, default 20.
    pub fn baseline_rounds(mut self, rounds: u32) -> Self {
        self.baseline_rounds = rounds;
        self
    }

    /// Checks the ranges.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] or [`ConfigError`] naming the field
    /// that is out of range.
    pub fn build(self) -> Result<Gradient, ConfigError> {
        let tolerance = check_factor("tolerance", 1.05, 10.0, self.tolerance)?;
        let backoff = check_factor("backoff", 0.5, 0.99, self.backoff)?;
        let short_window = check_count("short_window", 1, 1_000, self.short_window)?;
        let baseline_rounds = check_count("baseline_rounds", 2, 10_000, self.baseline_rounds)?;
        Ok(Gradient {
            tolerance,
            backoff,
            short_alpha: 2.0 / (f64::from(short_window) + 1.0),
            baseline_rounds,
            estimate: 0.0,
            short: None,
            window_min: f64::INFINITY,
            previous_min: f64::INFINITY,
            window_samples: 0,
            since_decrease: u64::MAX,
        })
    }
}

impl Gradient {
    /// A builder with the defaults (tolerance 1.5, backoff 0.9, short
    /// window 10 samples, baseline windows of 20 round trips).
    pub fn builder() -> GradientBuilder {
        GradientBuilder::default()
    }

    /// The current baseline RTT, if any sample was seen.
    pub fn baseline(&self) -> Option<Duration> {
        let min = self.window_min.min(self.previous_min);
        min.is_finite().then(|| Duration::from_secs_f64(min))
    }

    fn decrease(&mut self, limit: usize, factor: f64) {
        if self.since_decrease >= limit as u64 {
            self.estimate *= factor;
            self.since_decrease = 0;
        }
    }
}

impl LimitAlgorithm for Gradient {
    fn update(&mut self, limit: usize, sample: &Sample) -> usize {
        // Resynchronise when the handle clamped the last answer.
        if self.estimate as usize != limit {
            self.estimate = limit as f64;
        }
        self.since_decrease = self.since_decrease.saturating_add(1);
        match sample.outcome {
            Outcome::Dropped => self.decrease(limit, self.backoff),
            Outcome::Success => {
                let rtt = sample.rtt.as_secs_f64().max(1e-9);
                self.window_samples += 1;
                self.window_min = self.window_min.min(rtt);
                let window = (u64::from(self.baseline_rounds) * limit as u64).max(10);
                if self.window_samples >= window {
                    self.previous_min = self.window_min;
                    self.window_min = f64::INFINITY;
                    self.window_samples = 0;
                }
                let short = match self.short {
                    Some(short) => short + self.short_alpha * (rtt - short),
                    None => rtt,
                };
                self.short = Some(short);
                let baseline = self.window_min.min(self.previous_min).min(rtt);
                if short > self.tolerance * baseline {
                    self.decrease(limit, (baseline / short).max(0.5));
                } else if sample.in_flight.saturating_mul(2) >= limit {
                    self.estimate += self.estimate.sqrt() / self.estimate.max(1.0);
                }
            }
        }
        self.estimate = self.estimate.max(1.0);
        self.estimate as usize
    }
}

/// Additive increase, multiplicative decrease on drops and slow calls.
///
/// A success no slower than `timeout`, with at least half the limit in
/// flight, adds `1 / limit` (one per round trip); a dropped call, or one
/// slower than `timeout`, multiplies the limit by `backoff`.
#[derive(Debug, Clone)]
pub struct Aimd {
    backoff: f64,
    timeout: Duration,
    estimate: f64,
}

impl Aimd {
    /// `backoff` 0.5 to 0.99 (Netflix uses 0.9); `timeout` 1 ms to 1 hour:
    /// a success slower than it counts as a drop.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the field.
    pub fn new(backoff: f64, timeout: Duration) -> Result<Self, ConfigError> {
        let backoff = check_factor("backoff", 0.5, 0.99, backoff)?;
        let (min, max) = (Duration::from_millis(1), Duration::from_secs(3_600));
        if !(min..=max).contains(&timeout) {
            return Err(ConfigError::new(
                "timeout",
                format!("{min:?} to {max:?}"),
                format!("{timeout:?}"),
            ));
        }
        Ok(Self {
            backoff,
            timeout,
            estimate: 0.0,
        })
    }
}

impl LimitAlgorithm for Aimd {
    fn update(&mut self, limit: usize, sample: &Sample) -> usize {
        if self.estimate as usize != limit {
            self.estimate = limit as f64;
        }
        let slow = sample.rtt > self.timeout;
        if sample.outcome == Outcome::Dropped || slow {
            self.estimate *= self.backoff;
        } else if sample.in_flight.saturating_mul(2) >= limit {
            self.estimate += 1.0 / self.estimate.max(1.0);
        }
        self.estimate = self.estimate.max(1.0);
        self.estimate as usize
    }
}

/// A change of the limit, passed to the callback set with
/// [`AdaptiveLimitBuilder::on_limit_change`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LimitChange {
    /// The limit before.
    pub from: usize,
    /// The limit after.
    pub to: usize,
}

type Callback = Arc<dyn Fn(LimitChange) + Send + Sync>;

/// A snapshot of an [`AdaptiveLimit`]'s counters, read with
/// [`AdaptiveLimit::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdaptiveStats {
    /// The current limit.
    pub limit: usize,
    /// Tokens held right now.
    pub in_flight: usize,
    /// Calls admitted since creation.
    pub admitted: u64,
    /// Calls rejected since creation.
    pub rejected: u64,
    /// Samples handed to the algorithm (successes and drops).
    pub samples: u64,
    /// Of those, drops.
    pub dropped: u64,
    /// Tokens dropped without an outcome (no sample).
    pub ignored: u64,
}

struct Inner {
    min_limit: usize,
    max_limit: usize,
    limit: AtomicUsize,
    in_flight: AtomicUsize,
    admitted: AtomicU64,
    rejected: AtomicU64,
    samples: AtomicU64,
    dropped: AtomicU64,
    ignored: AtomicU64,
    algorithm: Mutex<Box<dyn LimitAlgorithm>>,
    on_change: Option<Callback>,
}

/// A concurrency limit moved by a [`LimitAlgorithm`] from measured latency.
///
/// Cheap to clone: clones share one limit (an `Arc` inside).
#[derive(Clone)]
pub struct AdaptiveLimit {
    inner: Arc<Inner>,
}

impl fmt::Debug for AdaptiveLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveLimit")
            .field("min_limit", &self.inner.min_limit)
            .field("max_limit", &self.inner.max_limit)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Builds an [`AdaptiveLimit`]; ranges are checked by
/// [`AdaptiveLimitBuilder::build`].
pub struct AdaptiveLimitBuilder {
    algorithm: Box<dyn LimitAlgorithm>,
    min_limit: usize,
    max_limit: usize,
    initial_limit: Option<usize>,
    on_change: Option<Callback>,
}

impl fmt::Debug for AdaptiveLimitBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveLimitBuilder")
            .field("min_limit", &self.min_limit)
            .field("max_limit", &self.max_limit)
            .field("initial_limit", &self.initial_limit)
            .finish_non_exhaustive()
    }
}

impl AdaptiveLimitBuilder {
    /// The smallest limit: 1 to 1,000,000, default 1.
    pub fn min_limit(mut self, min_limit: usize) -> Self {
        self.min_limit = min_limit;
        self
    }

    /// The largest limit: `min_limit` to 1,000,000, default 1,000.
    pub fn max_limit(mut self, max_limit: usize) -> Self {
        self.max_limit = max_limit;
        self
    }

    /// The limit to start from: `min_limit` to `max_limit`, default 20
    /// clamped into them.
    pub fn initial_limit(mut self, initial_limit: usize) -> Self {
        self.initial_limit = Some(initial_limit);
        self
    }

    /// Called after each change of the limit, outside any lock.
    pub fn on_limit_change(
        mut self,
        callback: impl Fn(LimitChange) + Send + Sync + 'static,
    ) -> Self {
        self.on_change = Some(Arc::new(callback));
        self
    }

    /// Checks the ranges.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming `min_limit`, `max_limit` or `initial_limit`.
    pub fn build(self) -> Result<AdaptiveLimit, ConfigError> {
        let min = self.min_limit;
        if !(1..=MAX_LIMIT).contains(&min) {
            return Err(ConfigError::new(
                "min_limit",
                format!("1 to {MAX_LIMIT}"),
                min,
            ));
        }
        let max = self.max_limit;
        if !(min..=MAX_LIMIT).contains(&max) {
            return Err(ConfigError::new(
                "max_limit",
                format!("min_limit ({min}) to {MAX_LIMIT}"),
                max,
            ));
        }
        let initial = self.initial_limit.unwrap_or(20_usize.clamp(min, max));
        if !(min..=max).contains(&initial) {
            return Err(ConfigError::new(
                "initial_limit",
                format!("min_limit ({min}) to max_limit ({max})"),
                initial,
            ));
        }
        Ok(AdaptiveLimit {
            inner: Arc::new(Inner {
                min_limit: min,
                max_limit: max,
                limit: AtomicUsize::new(initial),
                in_flight: AtomicUsize::new(0),
                admitted: AtomicU64::new(0),
                rejected: AtomicU64::new(0),
                samples: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                ignored: AtomicU64::new(0),
                algorithm: Mutex::new(self.algorithm),
                on_change: self.on_change,
            }),
        })
    }
}

impl AdaptiveLimit {
    /// A builder around `algorithm` ([`Gradient`], [`Aimd`] or your own).
    pub fn builder(algorithm: impl LimitAlgorithm) -> AdaptiveLimitBuilder {
        AdaptiveLimitBuilder {
            algorithm: Box::new(algorithm),
            min_limit: 1,
            max_limit: 1_000,
            initial_limit: None,
            on_change: None,
        }
    }

    /// Admits a call if fewer than the current limit are in flight; never
    /// waits.
    ///
    /// # Errors
    ///
    /// [`LimitExceeded`] when the limit is reached.
    pub fn try_acquire(&self) -> Result<Token, LimitExceeded> {
        let inner = &self.inner;
        let limit = inner.limit.load(Ordering::Acquire);
        let taken = inner
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            });
        match taken {
            Ok(before) => {
                inner.admitted.fetch_add(1, Ordering::Relaxed);
                Ok(Token {
                    inner: Some(Arc::clone(&self.inner)),
                    start: Instant::now(),
                    in_flight: before + 1,
                })
            }
            Err(_) => {
                inner.rejected.fetch_add(1, Ordering::Relaxed);
                Err(LimitExceeded { limit })
            }
        }
    }

    /// Runs `future` holding a token, reporting success when it completes;
    /// rejects without polling it when the limit is reached.
    ///
    /// # Errors
    ///
    /// [`LimitExceeded`]; `future` is then dropped unpolled.
    ///
    /// # Cancel safety
    ///
    /// Dropping the returned future releases the token without a sample.
    pub async fn run<F: Future>(&self, future: F) -> Result<F::Output, LimitExceeded> {
        let token = self.try_acquire()?;
        let output = future.await;
        token.success();
        Ok(output)
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        self.inner.limit.load(Ordering::Acquire)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> AdaptiveStats {
        let inner = &self.inner;
        AdaptiveStats {
            limit: inner.limit.load(Ordering::Acquire),
            in_flight: inner.in_flight.load(Ordering::Acquire),
            admitted: inner.admitted.load(Ordering::Relaxed),
            rejected: inner.rejected.load(Ordering::Relaxed),
            samples: inner.samples.load(Ordering::Relaxed),
            dropped: inner.dropped.load(Ordering::Relaxed),
            ignored: inner.ignored.load(Ordering::Relaxed),
        }
    }
}

impl Inner {
    fn record(&self, sample: &Sample) {
        self.samples.fetch_add(1, Ordering::Relaxed);
        if sample.outcome == Outcome::Dropped {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        let change = {
            // A panicking algorithm poisons the lock; its state is still
            // usable and the limit stays clamped, so carry on.
            let mut algorithm = self.algorithm.lock().unwrap_or_else(|p| p.into_inner());
            let from = self.limit.load(Ordering::Acquire);
            let to = algorithm
                .update(from, sample)
                .clamp(self.min_limit, self.max_limit);
            self.limit.store(to, Ordering::Release);
            (from != to).then_some(LimitChange { from, to })
        };
        if let (Some(change), Some(callback)) = (change, &self.on_change) {
            callback(change);
        }
    }
}

/// One admitted call of an [`AdaptiveLimit`].
///
/// It records the admission time; [`Token::success`] or [`Token::dropped`]
/// report the sample and release the slot. Dropping it without either
/// releases the slot and reports nothing (a cancelled call says nothing
/// about latency).
#[must_use = "report the outcome with success() or dropped(); dropping ignores the call"]
pub struct Token {
    inner: Option<Arc<Inner>>,
    start: Instant,
    in_flight: usize,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("start", &self.start)
            .field("in_flight", &self.in_flight)
            .finish()
    }
}

impl Token {
    /// The call succeeded: its RTT is a latency sample.
    pub fn success(self) {
        self.finish(Outcome::Success);
    }

    /// The call failed from overload (timeout, "busy" answer): back off.
    pub fn dropped(self) {
        self.finish(Outcome::Dropped);
    }

    /// Reports `outcome` and releases the slot.
    pub fn finish(mut self, outcome: Outcome) {
        if let Some(inner) = self.inner.take() {
            let sample = Sample {
                rtt: self.start.elapsed(),
                in_flight: self.in_flight,
                outcome,
            };
            inner.record(&sample);
            inner.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// When the call was admitted (tokio clock).
    pub fn start(&self) -> Instant {
        self.start
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            inner.ignored.fetch_add(1, Ordering::Relaxed);
            inner.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// The error of an [`AdaptiveService`]: [`LayerError::Rejected`] with
/// [`LimitExceeded`] (the inner service was not called), or the inner
/// service's own error.
pub type AdaptiveError<E> = LayerError<LimitExceeded, E>;

/// The future of an [`AdaptiveService`] call; dropping it releases the token
/// without a sample.
pub type AdaptiveFuture<F> = AdmittedFuture<F, Token, LimitExceeded>;

impl Admission for Token {
    /// `Ok` is a success, an error a drop (overload).
    fn finish(self, ok: bool) {
        if ok { self.success() } else { self.dropped() }
    }
}

/// A tower [`Layer`] wrapping services in an [`AdaptiveService`] sharing one
/// [`AdaptiveLimit`].
#[derive(Debug, Clone)]
pub struct AdaptiveLayer {
    limit: AdaptiveLimit,
}

impl AdaptiveLayer {
    /// A layer sharing `limit` (keep a clone to read its `stats()`).
    pub fn new(limit: AdaptiveLimit) -> Self {
        Self { limit }
    }
}

impl<S> Layer<S> for AdaptiveLayer {
    type Service = AdaptiveService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AdaptiveService {
            inner,
            limit: self.limit.clone(),
        }
    }
}

/// A service admitting calls under an [`AdaptiveLimit`], shedding the rest
/// at `call`.
///
/// An `Ok` response is a success sample; an inner `Err` is a drop sample
/// (the limit backs off); a cancelled call is no sample. `poll_ready` never
/// waits for the limit: it forwards the inner service's readiness (its
/// errors as [`AdaptiveError::Inner`]), and the limit is checked in `call`.
#[derive(Debug, Clone)]
pub struct AdaptiveService<S> {
    inner: S,
    limit: AdaptiveLimit,
}

impl<S> AdaptiveService<S> {
    /// Wraps `inner` under `limit`.
    pub fn new(inner: S, limit: AdaptiveLimit) -> Self {
        Self { inner, limit }
    }

    /// The shared limit.
    pub fn limit(&self) -> &AdaptiveLimit {
        &self.limit
    }
}

impl<S, Req> Service<Req> for AdaptiveService<S>
where
    S: Service<Req>,
{
    type Response = S::Response;
    type Error = AdaptiveError<S::Error>;
    type Future = AdaptiveFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(AdaptiveError::Inner)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match self.limit.try_acquire() {
            Ok(token) => AdmittedFuture::admitted(self.inner.call(req), token),
            Err(rejected) => AdmittedFuture::rejected(rejected),
        }
    }
}
