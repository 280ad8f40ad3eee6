//! What a Redis limiter does while Redis fails: the policy, the switch and the way back.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::algorithm::Algorithm;
use super::error::BackendError;
use crate::clock::{Clock, DefaultClock, saturating_nanos};
use crate::error::{Denied, DenyReason};
use crate::{FixedWindow, Keyed, KeyedLimiter, LeakyBucket, Limiter, SlidingWindow, TokenBucket};

/// What a [`RedisLimiter`](crate::RedisLimiter) answers while Redis fails
/// (an error or no reply within the limiter's timeout).
///
/// # Examples
///
/// ```
/// use seckill_ratelimit::FailurePolicy;
///
/// // Eight app instances: each enforces an eighth of the limit on its own.
/// let policy = FailurePolicy::Fallback { instances: 8 };
/// # let _ = policy;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailurePolicy {
    /// Admit every request: availability first, no limit at all meanwhile.
    FailOpen,
    /// Deny every request with [`DenyReason::BackendUnavailable`]: protect
    /// what lies behind, at the cost of turning everyone away.
    FailClosed,
    /// Enforce the same algorithm in this process, with every limit divided
    /// by `instances` (go-zero's token limiter does this with the whole
    /// limit, so N instances admit N× during an outage). The default, with
    /// `instances: 1`.
    ///
    /// The in-process limiters are built on the first call Redis fails, not
    /// before, and their memory is bounded: at most 64 MiB of limiter state
    /// and at most 100,000 keys (idle keys go first). A sliding window share
    /// above 1,024 is enforced by a fixed window of half the share, which
    /// never admits more than the share in any window (an exact log would
    /// take 16 bytes per unit of limit and key).
    Fallback {
        /// How many app instances share the limit: 1 to 65,536
        /// (checked by [`RedisLimiterBuilder::build`](crate::RedisLimiterBuilder::build)).
        instances: u32,
    },
}

impl Default for FailurePolicy {
    fn default() -> Self {
        FailurePolicy::Fallback { instances: 1 }
    }
}

/// Counters of a Redis limiter's failures, since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FailureStats {
    /// Redis calls that failed (errors, timeouts, malformed replies); the
    /// latest is [`RedisLimiter::last_error`](crate::RedisLimiter::last_error).
    pub errors: u64,
    /// Switches from Redis to the failure policy.
    pub outages: u64,
    /// Switches back from the failure policy to Redis.
    pub recoveries: u64,
    /// Requests the failure policy decided.
    pub decided_by_policy: u64,
    /// Whether the limiter is on its failure policy now.
    pub on_policy: bool,
}

/// Whether Redis is believed up, when to try it again, and the counters.
#[derive(Debug)]
pub(crate) struct Health {
    down: AtomicBool,
    next_probe: AtomicU64,
    errors: AtomicU64,
    outages: AtomicU64,
    recoveries: AtomicU64,
    decided_by_policy: AtomicU64,
    /// The latest failure; written only when a call fails.
    last_error: Mutex<Option<Arc<BackendError>>>,
    clock: DefaultClock,
}

impl Health {
    pub(crate) fn new() -> Self {
        Self {
            down: AtomicBool::new(false),
            next_probe: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            outages: AtomicU64::new(0),
            recoveries: AtomicU64::new(0),
            decided_by_policy: AtomicU64::new(0),
            last_error: Mutex::new(None),
            clock: DefaultClock::default(),
        }
    }

    /// Whether this call should go to Redis: always while Redis is up; while
    /// it is down, one call per `probe_interval` probes it.
    pub(crate) fn should_try(&self, probe_interval: Duration) -> bool {
        if !self.down.load(Ordering::Acquire) {
            return true;
        }
        let now = self.clock.now();
        let due = self.next_probe.load(Ordering::Acquire);
        now >= due
            && self
                .next_probe
                .compare_exchange(
                    due,
                    now.saturating_add(saturating_nanos(probe_interval)),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
    }

    /// Records a Redis failure; logs and counts the switch to the policy.
    pub(crate) fn failed(
        &self,
        name: &str,
        policy: FailurePolicy,
        probe_interval: Duration,
        error: BackendError,
    ) {
        let error = Arc::new(error);
        // Logged as an error value: subscribers see the seckill-redis error
        // as its source.
        let logged: &(dyn std::error::Error + 'static) = &*error;
        self.errors.fetch_add(1, Ordering::Relaxed);
        if !self.down.swap(true, Ordering::AcqRel) {
            self.next_probe.store(
                self.clock
                    .now()
                    .saturating_add(saturating_nanos(probe_interval)),
                Ordering::Release,
            );
            self.outages.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                limiter = name,
                ?policy,
                error = logged,
                "Redis rate limiter failed; switching to the failure policy until Redis answers again"
            );
        } else {
            tracing::debug!(
                limiter = name,
                error = logged,
                "Redis rate limiter probe failed"
            );
        }
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(error);
    }

    /// The latest failure, if any call failed yet.
    pub(crate) fn last_error(&self) -> Option<Arc<BackendError>> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records a Redis success; logs and counts the way back.
    pub(crate) fn succeeded(&self, name: &str) {
        if self.down.load(Ordering::Acquire) && self.down.swap(false, Ordering::AcqRel) {
            self.recoveries.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                limiter = name,
                "Redis rate limiter answers again; back from the failure policy"
            );
        }
    }

    pub(crate) fn decided_by_policy(&self) {
        self.decided_by_policy.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> FailureStats {
        FailureStats {
            errors: self.errors.load(Ordering::Relaxed),
            outages: self.outages.load(Ordering::Relaxed),
            recoveries: self.recoveries.load(Ordering::Relaxed),
            decided_by_policy: self.decided_by_policy.load(Ordering::Relaxed),
            on_policy: self.down.load(Ordering::Acquire),
        }
    }
}

/// Above this share, the fallback of a sliding window is a fixed window of
/// half the share (an exact in-process log keeps 16 bytes per unit).
pub(crate) const FALLBACK_EXACT_SLIDING: u32 = 1_024;
/// The most memory the fallback's limiters may hold, over all keys.
const FALLBACK_BUDGET: usize = 64 << 20;
/// The most keys the fallback holds.
const FALLBACK_MAX_KEYS: usize = 100_000;

/// The in-process limiters a [`FailurePolicy::Fallback`] uses, one per key.
pub(crate) struct Fallback {
    keys: Keyed<String, Local>,
}

impl Fallback {
    pub(crate) fn new(algorithm: Algorithm, instances: u32) -> Self {
        let share = local_share(algorithm, instances);
        let idle = share.memory().max(Duration::from_secs(1));
        Self {
            keys: Keyed::new(Local::new(share))
                .max_keys(max_keys(share))
                .idle_ttl(idle),
        }
    }

    pub(crate) fn try_acquire(&self, key: &str, n: u32) -> Result<(), Denied> {
        self.keys.try_acquire(key, n)
    }
}

impl std::fmt::Debug for Fallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fallback")
            .field("keys", &self.keys)
            .finish()
    }
}

/// What one instance enforces in process: its share of the limits, with a
/// large sliding window share replaced by a fixed window of half of it (any
/// window of length `window` overlaps at most two aligned windows, so it
/// never admits more than the share).
pub(crate) fn local_share(algorithm: Algorithm, instances: u32) -> Algorithm {
    match algorithm.share(instances) {
        Algorithm::SlidingWindow { limit, window } if limit > FALLBACK_EXACT_SLIDING => {
            Algorithm::FixedWindow {
                limit: limit / 2,
                window,
            }
        }
        share => share,
    }
}

/// Keys the fallback may hold within its memory budget.
pub(crate) fn max_keys(share: Algorithm) -> usize {
    // The key, the map entry and the limiter, roughly; the exact log adds
    // 16 bytes per unit of limit.
    let per_key = match share {
        Algorithm::SlidingWindow { limit, .. } => 128 + 16 * limit as usize,
        _ => 128,
    };
    (FALLBACK_BUDGET / per_key).clamp(1, FALLBACK_MAX_KEYS)
}

/// Any of the four in-process limiters.
enum Local {
    Token(TokenBucket),
    Leaky(LeakyBucket),
    Sliding(SlidingWindow),
    Fixed(FixedWindow),
}

impl Local {
    fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::TokenBucket {
                rate_per_sec,
                burst,
            } => Local::Token(TokenBucket::new(rate_per_sec, burst)),
            Algorithm::LeakyBucket {
                rate_per_sec,
                capacity,
            } => Local::Leaky(LeakyBucket::new(rate_per_sec, capacity)),
            Algorithm::SlidingWindow { limit, window } => {
                Local::Sliding(SlidingWindow::new(limit, window))
            }
            Algorithm::FixedWindow { limit, window } => {
                Local::Fixed(FixedWindow::new(limit, window))
            }
        }
    }

    fn inner(&self) -> &dyn Limiter<Clock = DefaultClock> {
        match self {
            Local::Token(l) => l,
            Local::Leaky(l) => l,
            Local::Sliding(l) => l,
            Local::Fixed(l) => l,
        }
    }
}

impl Limiter for Local {
    type Clock = DefaultClock;

    fn clock(&self) -> &DefaultClock {
        self.inner().clock()
    }

    fn try_acquire_at(&self, n: u32, now: u64) -> Result<(), Denied> {
        self.inner().try_acquire_at(n, now)
    }

    fn idle_from(&self, now: u64) -> u64 {
        self.inner().idle_from(now)
    }
}

/// One key's state in the fallback: the state of the algorithm's limiter.
pub(crate) enum LocalState {
    Token(<TokenBucket as KeyedLimiter>::State),
    Leaky(<LeakyBucket as KeyedLimiter>::State),
    Sliding(<SlidingWindow as KeyedLimiter>::State),
    Fixed(<FixedWindow as KeyedLimiter>::State),
}

impl KeyedLimiter for Local {
    type State = LocalState;

    fn new_state(&self) -> LocalState {
        match self {
            Local::Token(l) => LocalState::Token(l.new_state()),
            Local::Leaky(l) => LocalState::Leaky(l.new_state()),
            Local::Sliding(l) => LocalState::Sliding(l.new_state()),
            Local::Fixed(l) => LocalState::Fixed(l.new_state()),
        }
    }

    fn try_acquire_state(&self, state: &LocalState, n: u32, now: u64) -> Result<(), Denied> {
        match (self, state) {
            (Local::Token(l), LocalState::Token(s)) => l.try_acquire_state(s, n, now),
            (Local::Leaky(l), LocalState::Leaky(s)) => l.try_acquire_state(s, n, now),
            (Local::Sliding(l), LocalState::Sliding(s)) => l.try_acquire_state(s, n, now),
            (Local::Fixed(l), LocalState::Fixed(s)) => l.try_acquire_state(s, n, now),
            // Every state comes from `new_state` of this one template.
            _ => Err(closed(Duration::from_secs(1))),
        }
    }

    fn state_idle_from(&self, state: &LocalState, now: u64) -> u64 {
        match (self, state) {
            (Local::Token(l), LocalState::Token(s)) => l.state_idle_from(s, now),
            (Local::Leaky(l), LocalState::Leaky(s)) => l.state_idle_from(s, now),
            (Local::Sliding(l), LocalState::Sliding(s)) => l.state_idle_from(s, now),
            (Local::Fixed(l), LocalState::Fixed(s)) => l.state_idle_from(s, now),
            _ => 0,
        }
    }
}

/// The answer of [`FailurePolicy::FailClosed`].
pub(crate) fn closed(retry_after: Duration) -> Denied {
    Denied {
        retry_after,
        reason: DenyReason::BackendUnavailable,
    }
}
