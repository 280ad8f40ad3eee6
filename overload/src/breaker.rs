//! A circuit breaker by adaptive client-side throttling (the Google SRE
//! book, "Handling Overload").
//!
//! Over a rolling window the breaker counts `requests` (every call the
//! application attempted, including the ones the breaker rejected) and
//! `accepts` (calls the dependency answered successfully). A new call is
//! rejected locally with probability
//!
//! ```text
//! p = max(0, (requests − K × accepts) / (requests + 1))
//! ```
//!
//! capped at [`BreakerBuilder::max_reject`], and zero while the window holds
//! fewer than [`BreakerBuilder::min_requests`] requests. While the dependency
//! is healthy `accepts ≈ requests` and nothing is rejected; when it fails,
//! `p` rises smoothly towards the cap, so most calls fail in microseconds
//! without touching it; when it recovers, the calls that still pass succeed
//! and `p` falls back to zero without a human.
//!
//! States: [`BreakerState::Closed`] (`p == 0`: nothing rejected) and
//! [`BreakerState::Throttling`] (`p > 0`). Half-open probing is built in:
//! `p` never exceeds `max_reject` (at most 0.999), and while throttling the
//! first call in each bucket interval (`window / buckets`) is always let
//! through as a probe, so at least one call per bucket reaches the
//! dependency and its recovery is seen.
//!
//! Two ways to use it: [`Breaker::call`] / [`Breaker::allow`] around any
//! future (a Redis, MySQL or Kafka call), and [`BreakerLayer`], a tower
//! layer built on the same handle.
//!
//! # Examples
//!
//! ```
//! use seckill_overload::breaker::{Breaker, BreakerError};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let breaker = Breaker::builder().build()?;
//! let answer: Result<u32, BreakerError<std::io::Error>> =
//!     breaker.call(|| async { Ok(42) }).await;
//! assert_eq!(answer?, 42);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::ConfigError;
use crate::layer_error::LayerError;

/// The shortest rolling window: 10 ms.
pub const MIN_WINDOW: Duration = Duration::from_millis(10);
/// The longest rolling window: 1 hour.
pub const MAX_WINDOW: Duration = Duration::from_secs(3600);
/// The most buckets a window may have (bounds the work of one call).
pub const MAX_BUCKETS: u32 = 1024;
/// The shortest bucket (`window / buckets`): 1 ms.
pub const MIN_BUCKET: Duration = Duration::from_millis(1);
/// The smallest multiplier K.
pub const MIN_K: f64 = 1.0;
/// The largest multiplier K.
pub const MAX_K: f64 = 10.0;
/// The largest reject probability cap.
pub const MAX_REJECT_CAP: f64 = 0.999;
/// The largest `min_requests`.
pub const MAX_MIN_REQUESTS: u32 = 1_000_000;

/// The breaker rejected a call locally: the dependency has been failing.
///
/// Nothing was sent to the dependency. Fail fast, fall back (a cached
/// answer, "try again"), or retry later; the breaker lets calls through again
/// by itself as the dependency recovers.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error(
    "circuit breaker is throttling (reject probability {reject_probability:.3}): the dependency \
     is failing, so this call was rejected locally; fall back or retry later"
)]
#[non_exhaustive]
pub struct BreakerOpen {
    /// The reject probability when the call was rejected.
    pub reject_probability: f64,
}

/// The error of [`Breaker::call`] and of [`BreakerService`]:
/// [`LayerError::Rejected`] with [`BreakerOpen`] (rejected locally, the
/// dependency was not called), or the dependency's own error.
pub type BreakerError<E> = LayerError<BreakerOpen, E>;

/// What one finished call means to the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The dependency worked: counts as a request and an accept.
    Success,
    /// The dependency failed: counts as a request only.
    Failure,
    /// Says nothing about the dependency's health: not counted.
    Ignore,
}

/// Decides what a result means to the breaker (a "not found" is usually a
/// success, a timeout a failure).
///
/// Implemented by [`AnyErrIsFailure`] (the default) and by every
/// `Fn(&Result<T, E>) -> Outcome`.
pub trait Classify<T, E> {
    /// The outcome of `result`.
    fn classify(&self, result: &Result<T, E>) -> Outcome;
}

/// The default classifier: `Ok` is a success, any `Err` a failure.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnyErrIsFailure;

impl<T, E> Classify<T, E> for AnyErrIsFailure {
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        }
    }
}

impl<T, E, F> Classify<T, E> for F
where
    F: Fn(&Result<T, E>) -> Outcome,
{
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        self(result)
    }
}

/// The observable state of a breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// The reject probability is zero: every call passes.
    Closed,
    /// The reject probability is above zero: calls are rejected at random,
    /// except the probes.
    Throttling,
}

/// One state change, given to the [`BreakerBuilder::on_state_change`]
/// callback.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct StateChange {
    /// The state before.
    pub from: BreakerState,
    /// The state after.
    pub to: BreakerState,
    /// The reject probability that caused the change (0 when closing).
    pub reject_probability: f64,
    /// 1 for the breaker's first change, then 2, 3, …: changes seen by
    /// concurrent callers may reach the callback out of order, and the
    /// highest `seq` is the current state.
    pub seq: u64,
    /// When the change was seen (tokio's clock).
    pub at: Instant,
}

/// A snapshot of a breaker's counters (monotonic since it was built) and
/// of its window.
///
/// `admitted + rejected` is every call asked for; `admitted == successes +
/// failures + ignored + in_flight`.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct BreakerStats {
    /// Calls let through to the dependency (probes included).
    pub admitted: u64,
    /// Calls rejected locally.
    pub rejected: u64,
    /// Admitted calls let through as probes while throttling, whatever the
    /// random draw said.
    pub probes: u64,
    /// Admitted calls marked as successes.
    pub successes: u64,
    /// Admitted calls marked as failures.
    pub failures: u64,
    /// Admitted calls whose guard was dropped unmarked (cancelled) or
    /// marked [`Outcome::Ignore`].
    pub ignored: u64,
    /// Admitted calls not finished yet (a gauge).
    pub in_flight: u64,
    /// Changes from closed to throttling.
    pub opened: u64,
    /// Changes from throttling back to closed.
    pub closed: u64,
    /// The state at the last evaluation.
    pub state: BreakerState,
    /// `requests` in the current window (rejections included).
    pub window_requests: u64,
    /// `accepts` in the current window.
    pub window_accepts: u64,
    /// The reject probability computed from the current window.
    pub reject_probability: f64,
}

type Callback = Arc<dyn Fn(StateChange) + Send + Sync>;

/// Builds a [`Breaker`]; every setter documents its range, checked by
/// [`build`](Self::build).
#[derive(Clone)]
#[must_use]
pub struct BreakerBuilder {
    window: Duration,
    buckets: u32,
    k: f64,
    max_reject: f64,
    min_requests: u32,
    seed: Option<u64>,
    on_change: Option<Callback>,
}

impl fmt::Debug for BreakerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerBuilder")
            .field("window", &self.window)
            .field("buckets", &self.buckets)
            .field("k", &self.k)
            .field("max_reject", &self.max_reject)
            .field("min_requests", &self.min_requests)
            .field("seed", &self.seed)
            .field("on_state_change", &self.on_change.is_some())
            .finish()
    }
}

impl Default for BreakerBuilder {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(10),
            buckets: 20,
            k: 2.0,
            max_reject: 0.95,
            min_requests: 5,
            seed: None,
            on_change: None,
        }
    }
}

impl BreakerBuilder {
    /// The rolling window the counts cover. Default 10 s; range 10 ms to
    /// 1 hour, and `window / buckets` at least 1 ms.
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// How many buckets the window is cut into: the window slides by one
    /// bucket (`window / buckets`) at a time, and one probe per bucket passes
    /// while throttling. Default 20 (500 ms each); range 1 to 1024.
    pub fn buckets(mut self, buckets: u32) -> Self {
        self.buckets = buckets;
        self
    }

    /// The multiplier K: throttling starts when `requests > K × accepts`,
    /// i.e. when fewer than 1/K of the calls succeed. Default 2.0 (the SRE
    /// book's value: throttle only once more than half the calls fail, so a
    /// partial failure keeps most traffic flowing); range 1.0 to 10.0 (below
    /// 1 a healthy dependency would be throttled).
    pub fn k(mut self, k: f64) -> Self {
        self.k = k;
        self
    }

    /// The cap on the reject probability: even when every call fails, a
    /// share `1 − max_reject` still reaches the dependency (plus one probe
    /// per bucket), so recovery is seen. Default 0.95; range 0.0 to 0.999
    /// (0.0: never reject, only count).
    pub fn max_reject(mut self, max_reject: f64) -> Self {
        self.max_reject = max_reject;
        self
    }

    /// The reject probability stays zero while the window holds fewer than
    /// this many requests, so a few failures at low traffic reject nothing.
    /// Default 5; range 0 to 1,000,000 (0: the SRE formula alone).
    pub fn min_requests(mut self, min_requests: u32) -> Self {
        self.min_requests = min_requests;
        self
    }

    /// Seeds the breaker's random source (default: a random seed), so a
    /// test sees the same rejections on every run.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// A callback run on every state change (closed → throttling →
    /// closed), after the breaker's lock is released, on the thread of the
    /// call that saw the change. Keep it short; it may call the breaker.
    pub fn on_state_change(
        mut self,
        callback: impl Fn(StateChange) + Send + Sync + 'static,
    ) -> Self {
        self.on_change = Some(Arc::new(callback));
        self
    }

    /// Checks the configuration and builds the breaker.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the first field out of its range.
    pub fn build(self) -> Result<Breaker, ConfigError> {
        if !(MIN_WINDOW..=MAX_WINDOW).contains(&self.window) {
            return Err(ConfigError::new(
                "window",
                "10ms to 3600s",
                format!("{:?}", self.window),
            ));
        }
        if !(1..=MAX_BUCKETS).contains(&self.buckets) {
            return Err(ConfigError::new("buckets", "1 to 1024", self.buckets));
        }
        let bucket = self.window / self.buckets;
        if bucket < MIN_BUCKET {
            return Err(ConfigError::new(
                "window / buckets",
                "at least 1ms",
                format!("{:?} / {}", self.window, self.buckets),
            ));
        }
        if !(MIN_K..=MAX_K).contains(&self.k) {
            return Err(ConfigError::new("k", "1.0 to 10.0", self.k));
        }
        if !(0.0..=MAX_REJECT_CAP).contains(&self.max_reject) {
            return Err(ConfigError::new(
                "max_reject",
                "0.0 to 0.999",
                self.max_reject,
            ));
        }
        if self.min_requests > MAX_MIN_REQUESTS {
            return Err(ConfigError::new(
                "min_requests",
                "0 to 1000000",
                self.min_requests,
            ));
        }
        let seed = self.seed.unwrap_or_else(random_seed);
        let n = self.buckets as usize;
        Ok(Breaker {
            inner: Arc::new(Inner {
                bucket_nanos: u64::try_from(bucket.as_nanos()).unwrap_or(u64::MAX).max(1),
                k: self.k,
                max_reject: self.max_reject,
                min_requests: u64::from(self.min_requests),
                rng: AtomicU64::new(seed),
                on_change: self.on_change,
                start: Instant::now(),
                window: Mutex::new(Window {
                    buckets: vec![Bucket::default(); n],
                    current: 0,
                    requests: 0,
                    accepts: 0,
                    probe_bucket: None,
                    state: BreakerState::Closed,
                    seq: 0,
                }),
                counters: Counters::default(),
            }),
        })
    }
}

fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x5eed);
    h.finish()
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    requests: u64,
    accepts: u64,
}

#[derive(Debug)]
struct Window {
    buckets: Vec<Bucket>,
    /// Absolute index of the newest bucket (time since start / bucket).
    current: u64,
    requests: u64,
    accepts: u64,
    /// The absolute bucket whose probe has been let through.
    probe_bucket: Option<u64>,
    state: BreakerState,
    seq: u64,
}

impl Window {
    /// Slides the window to bucket `index`, clearing at most every bucket
    /// once.
    fn roll(&mut self, index: u64) {
        if index <= self.current {
            return;
        }
        let n = self.buckets.len() as u64;
        let gap = index - self.current;
        if gap >= n {
            self.buckets.fill(Bucket::default());
            self.requests = 0;
            self.accepts = 0;
        } else {
            for step in 1..=gap {
                let slot = ((self.current + step) % n) as usize;
                if let Some(b) = self.buckets.get_mut(slot) {
                    self.requests -= b.requests;
                    self.accepts -= b.accepts;
                    *b = Bucket::default();
                }
            }
        }
        self.current = index;
    }

    fn record(&mut self, accept: bool) {
        let n = self.buckets.len() as u64;
        if let Some(b) = self.buckets.get_mut((self.current % n) as usize) {
            b.requests += 1;
            self.requests += 1;
            if accept {
                b.accepts += 1;
                self.accepts += 1;
            }
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    admitted: AtomicU64,
    rejected: AtomicU64,
    probes: AtomicU64,
    successes: AtomicU64,
    failures: AtomicU64,
    ignored: AtomicU64,
    in_flight: AtomicU64,
    opened: AtomicU64,
    closed: AtomicU64,
}

struct Inner {
    bucket_nanos: u64,
    k: f64,
    max_reject: f64,
    min_requests: u64,
    rng: AtomicU64,
    on_change: Option<Callback>,
    start: Instant,
    window: Mutex<Window>,
    counters: Counters,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Window> {
        // The lock guards plain arithmetic that cannot panic; if a panic
        // ever poisoned it, the counts are still consistent.
        self.window.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn index(&self, now: Instant) -> u64 {
        let nanos = now.saturating_duration_since(self.start).as_nanos();
        u64::try_from(nanos / u128::from(self.bucket_nanos)).unwrap_or(u64::MAX)
    }

    fn probability(&self, w: &Window) -> f64 {
        if w.requests < self.min_requests || w.requests == 0 {
            return 0.0;
        }
        let requests = w.requests as f64;
        let p = (requests - self.k * w.accepts as f64) / (requests + 1.0);
        p.clamp(0.0, self.max_reject)
    }

    /// Uniform in [0, 1) from a SplitMix64 sequence (one atomic add).
    fn draw(&self) -> f64 {
        let mut z = self
            .rng
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Sets the state from `p`; returns the change to report, if any.
    fn settle(&self, w: &mut Window, p: f64, now: Instant) -> Option<StateChange> {
        let to = if p > 0.0 {
            BreakerState::Throttling
        } else {
            BreakerState::Closed
        };
        if to == w.state {
            return None;
        }
        let from = w.state;
        w.state = to;
        w.seq += 1;
        match to {
            BreakerState::Throttling => self.counters.opened.fetch_add(1, Ordering::Relaxed),
            BreakerState::Closed => self.counters.closed.fetch_add(1, Ordering::Relaxed),
        };
        Some(StateChange {
            from,
            to,
            reject_probability: p,
            seq: w.seq,
            at: now,
        })
    }

    fn report(&self, change: Option<StateChange>) {
        if let (Some(change), Some(cb)) = (change, &self.on_change) {
            cb(change);
        }
    }

    fn finish(&self, outcome: Outcome) {
        self.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
        let accept = match outcome {
            Outcome::Ignore => {
                self.counters.ignored.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Outcome::Success => {
                self.counters.successes.fetch_add(1, Ordering::Relaxed);
                true
            }
            Outcome::Failure => {
                self.counters.failures.fetch_add(1, Ordering::Relaxed);
                false
            }
        };
        let now = Instant::now();
        let change = {
            let mut w = self.lock();
            w.roll(self.index(now));
            w.record(accept);
            let p = self.probability(&w);
            self.settle(&mut w, p, now)
        };
        self.report(change);
    }
}

/// A circuit breaker by adaptive client-side throttling; cheap to clone
/// (an `Arc` inside), shared by every caller of one dependency.
///
/// See the [module docs](self) for the model.
#[derive(Clone)]
pub struct Breaker {
    inner: Arc<Inner>,
}

impl fmt::Debug for Breaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Breaker {
    /// A builder with the defaults: window 10 s in 20 buckets, K = 2.0,
    /// `max_reject` 0.95, `min_requests` 5, a random seed.
    pub fn builder() -> BreakerBuilder {
        BreakerBuilder::default()
    }

    /// Asks to make one call: a [`BreakerGuard`] to mark with the outcome,
    /// or a rejection.
    ///
    /// A rejection counts as a request in the window (as in the SRE book),
    /// takes one short lock and never waits.
    ///
    /// # Errors
    ///
    /// [`BreakerOpen`] when the call is rejected locally.
    pub fn allow(&self) -> Result<BreakerGuard, BreakerOpen> {
        let inner = &*self.inner;
        let now = Instant::now();
        let (result, change) = {
            let mut w = inner.lock();
            let index = inner.index(now);
            w.roll(index);
            let p = inner.probability(&w);
            let change = inner.settle(&mut w, p, now);
            let result = if p <= 0.0 {
                Ok(false)
            } else if w.probe_bucket.is_none_or(|b| b < index) {
                w.probe_bucket = Some(index);
                Ok(true)
            } else if inner.draw() < p {
                w.record(false);
                Err(BreakerOpen {
                    reject_probability: p,
                })
            } else {
                Ok(false)
            };
            (result, change)
        };
        inner.report(change);
        match result {
            Ok(probe) => {
                let c = &inner.counters;
                c.in_flight.fetch_add(1, Ordering::Relaxed);
                c.admitted.fetch_add(1, Ordering::Relaxed);
                if probe {
                    c.probes.fetch_add(1, Ordering::Relaxed);
                }
                Ok(BreakerGuard {
                    inner: Some(Arc::clone(&self.inner)),
                })
            }
            Err(open) => {
                inner.counters.rejected.fetch_add(1, Ordering::Relaxed);
                Err(open)
            }
        }
    }

    /// Runs `f()` through the breaker: `Ok` counts as a success, any `Err`
    /// as a failure.
    ///
    /// Put a timeout *inside* `f` (`tokio::time::timeout(d, call)` mapped to
    /// an error) so a slow dependency counts as failing; a timeout around
    /// `call` cancels it, which counts nothing.
    ///
    /// # Errors
    ///
    /// [`BreakerError::Rejected`] when rejected (`f` is not called),
    /// [`BreakerError::Inner`] with `f`'s error.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it finishes counts nothing (the call is
    /// ignored) and leaves every count right.
    pub async fn call<T, E, F, Fut>(&self, f: F) -> Result<T, BreakerError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.call_classified(&AnyErrIsFailure, f).await
    }

    /// Like [`call`](Self::call), with `classifier` deciding what the result
    /// means (e.g. "not found" is a success).
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    ///
    /// # Cancel safety
    ///
    /// As [`call`](Self::call).
    pub async fn call_classified<T, E, C, F, Fut>(
        &self,
        classifier: &C,
        f: F,
    ) -> Result<T, BreakerError<E>>
    where
        C: Classify<T, E> + ?Sized,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let guard = self.allow().map_err(BreakerError::Rejected)?;
        let result = f().await;
        guard.record(classifier.classify(&result));
        result.map_err(BreakerError::Inner)
    }

    /// The state now (the window slid to the present; may report a change
    /// to the callback).
    pub fn state(&self) -> BreakerState {
        self.evaluate().0
    }

    /// The reject probability now, in `[0, max_reject]`.
    pub fn reject_probability(&self) -> f64 {
        self.evaluate().1
    }

    fn evaluate(&self) -> (BreakerState, f64, u64, u64) {
        let inner = &*self.inner;
        let now = Instant::now();
        let (out, change) = {
            let mut w = inner.lock();
            w.roll(inner.index(now));
            let p = inner.probability(&w);
            let change = inner.settle(&mut w, p, now);
            ((w.state, p, w.requests, w.accepts), change)
        };
        inner.report(change);
        out
    }

    /// A snapshot of the counters and of the window (slid to the present).
    pub fn stats(&self) -> BreakerStats {
        let (state, reject_probability, window_requests, window_accepts) = self.evaluate();
        let c = &self.inner.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        BreakerStats {
            admitted: load(&c.admitted),
            rejected: load(&c.rejected),
            probes: load(&c.probes),
            successes: load(&c.successes),
            failures: load(&c.failures),
            ignored: load(&c.ignored),
            in_flight: load(&c.in_flight),
            opened: load(&c.opened),
            closed: load(&c.closed),
            state,
            window_requests,
            window_accepts,
            reject_probability,
        }
    }
}

/// One admitted call; mark it with [`success`](Self::success),
/// [`failure`](Self::failure) or [`record`](Self::record). Dropped unmarked
/// (e.g. the call was cancelled) it counts as ignored: nothing enters the
/// window.
#[must_use = "mark the guard with success() or failure(), or the call counts nothing"]
pub struct BreakerGuard {
    inner: Option<Arc<Inner>>,
}

impl fmt::Debug for BreakerGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerGuard").finish_non_exhaustive()
    }
}

impl BreakerGuard {
    /// The dependency worked.
    pub fn success(self) {
        self.record(Outcome::Success);
    }

    /// The dependency failed.
    pub fn failure(self) {
        self.record(Outcome::Failure);
    }

    /// Marks the call with `outcome`.
    pub fn record(mut self, outcome: Outcome) {
        if let Some(inner) = self.inner.take() {
            inner.finish(outcome);
        }
    }
}

impl Drop for BreakerGuard {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            inner.finish(Outcome::Ignore);
        }
    }
}

/// A tower layer putting a [`Breaker`] in front of a service.
///
/// The classifier sees the inner service's `Result` (so an HTTP 503 answer
/// can count as a failure); the default, [`AnyErrIsFailure`], counts every
/// `Err`.
#[derive(Clone, Debug)]
pub struct BreakerLayer<C = AnyErrIsFailure> {
    breaker: Breaker,
    classifier: Arc<C>,
}

impl BreakerLayer {
    /// A layer over `breaker` counting any `Err` as a failure.
    pub fn new(breaker: Breaker) -> Self {
        Self {
            breaker,
            classifier: Arc::new(AnyErrIsFailure),
        }
    }
}

impl<C> BreakerLayer<C> {
    /// The same layer with `classifier` deciding outcomes.
    pub fn with_classifier<C2>(self, classifier: C2) -> BreakerLayer<C2> {
        BreakerLayer {
            breaker: self.breaker,
            classifier: Arc::new(classifier),
        }
    }

    /// The breaker the layer uses.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }
}

impl<S, C> tower_layer::Layer<S> for BreakerLayer<C> {
    type Service = BreakerService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        BreakerService {
            inner,
            breaker: self.breaker.clone(),
            classifier: Arc::clone(&self.classifier),
        }
    }
}

/// The service made by [`BreakerLayer`]: rejected calls answer
/// [`BreakerError::Rejected`] at once without calling the inner service.
#[derive(Debug)]
pub struct BreakerService<S, C = AnyErrIsFailure> {
    inner: S,
    breaker: Breaker,
    classifier: Arc<C>,
}

impl<S: Clone, C> Clone for BreakerService<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            breaker: self.breaker.clone(),
            classifier: Arc::clone(&self.classifier),
        }
    }
}

impl<S, C> BreakerService<S, C> {
    /// The breaker the service uses.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }
}

impl<S, C, Req> tower_service::Service<Req> for BreakerService<S, C>
where
    S: tower_service::Service<Req>,
    C: Classify<S::Response, S::Error>,
{
    type Response = S::Response;
    type Error = BreakerError<S::Error>;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(BreakerError::Inner)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match self.breaker.allow() {
            Ok(guard) => ResponseFuture {
                state: State::Called {
                    future: self.inner.call(req),
                    guard: Some(guard),
                    classifier: Arc::clone(&self.classifier),
                },
            },
            Err(open) => ResponseFuture {
                state: State::Rejected { open: Some(open) },
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`BreakerService`]. Dropping it before it finishes
    /// counts nothing.
    pub struct ResponseFuture<F, C> {
        #[pin]
        state: State<F, C>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<F, C> {
        Rejected { open: Option<BreakerOpen> },
        Called {
            #[pin]
            future: F,
            guard: Option<BreakerGuard>,
            classifier: Arc<C>,
        },
    }
}

impl<F: fmt::Debug, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    C: Classify<T, E>,
{
    type Output = Result<T, BreakerError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Rejected { open } => match open.take() {
                Some(open) => Poll::Ready(Err(BreakerError::Rejected(open))),
                // Polled again after it finished: answer the same rejection.
                None => Poll::Ready(Err(BreakerError::Rejected(BreakerOpen {
                    reject_probability: 0.0,
                }))),
            },
            StateProj::Called {
                future,
                guard,
                classifier,
            } => {
                let result = std::task::ready!(future.poll(cx));
                if let Some(guard) = guard.take() {
                    guard.record(classifier.classify(&result));
                }
                Poll::Ready(result.map_err(BreakerError::Inner))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_checked() {
        let b = || Breaker::builder();
        assert_eq!(
            b().window(Duration::from_millis(9))
                .build()
                .unwrap_err()
                .to_string(),
            "window must be 10ms to 3600s, got 9ms"
        );
        assert_eq!(
            b().buckets(0).build().unwrap_err().to_string(),
            "buckets must be 1 to 1024, got 0"
        );
        assert_eq!(
            b().buckets(1025).build().unwrap_err().to_string(),
            "buckets must be 1 to 1024, got 1025"
        );
        assert!(matches!(
            b().window(Duration::from_millis(10)).buckets(11).build(),
            Err(ConfigError {
                field: "window / buckets",
                ..
            })
        ));
        assert_eq!(
            b().k(0.5).build().unwrap_err().to_string(),
            "k must be 1.0 to 10.0, got 0.5"
        );
        assert!(b().k(f64::NAN).build().is_err());
        assert_eq!(
            b().max_reject(1.0).build().unwrap_err().to_string(),
            "max_reject must be 0.0 to 0.999, got 1"
        );
        assert!(b().min_requests(1_000_001).build().is_err());
        assert!(
            b().window(MAX_WINDOW)
                .buckets(MAX_BUCKETS)
                .k(MAX_K)
                .build()
                .is_ok()
        );
    }

    #[test]
    fn draws_are_uniform_enough() {
        let breaker = Breaker::builder().seed(7).build().unwrap();
        let n = 100_000;
        let below = (0..n).filter(|_| breaker.inner.draw() < 0.25).count();
        assert!((24_000..26_000).contains(&below), "{below}");
    }
}
