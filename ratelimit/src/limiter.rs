//! What every in-process limiter offers, so [`Keyed`](crate::Keyed) can hold any of them.

use crate::clock::Clock;
use crate::error::Denied;

/// An in-process rate limiter: [`TokenBucket`](crate::TokenBucket),
/// [`LeakyBucket`](crate::LeakyBucket), [`SlidingWindow`](crate::SlidingWindow)
/// or [`FixedWindow`](crate::FixedWindow), or your own.
///
/// # Examples
///
/// ```
/// use seckill_ratelimit::{FixedWindow, Limiter, TokenBucket};
/// use std::time::Duration;
///
/// fn admit(limiter: &impl Limiter) -> bool {
///     limiter.try_acquire(1).is_ok()
/// }
/// assert!(admit(&TokenBucket::new(10, 1)));
/// assert!(admit(&FixedWindow::new(10, Duration::from_secs(1))));
/// ```
pub trait Limiter: Send + Sync + 'static {
    /// The clock the limiter reads.
    type Clock: Clock;

    /// The limiter's clock.
    fn clock(&self) -> &Self::Clock;

    /// Admits `n` units at `now` (nanoseconds of [`Limiter::clock`]) or says
    /// how long to wait. `n == 0` always passes.
    ///
    /// # Errors
    ///
    /// [`Denied`] with `retry_after` when over the limit, or with
    /// [`DenyReason::ExceedsCapacity`](crate::DenyReason::ExceedsCapacity)
    /// when `n` can never pass.
    fn try_acquire_at(&self, n: u32, now: u64) -> Result<(), Denied>;

    /// Admits `n` units now or says how long to wait. `n == 0` always passes.
    ///
    /// # Errors
    ///
    /// As [`Limiter::try_acquire_at`].
    #[inline]
    fn try_acquire(&self, n: u32) -> Result<(), Denied> {
        self.try_acquire_at(n, self.clock().now())
    }

    /// From when on (clock nanoseconds) the limiter is back in its initial
    /// state, so dropping it and building a fresh one changes nothing: at or
    /// before `now` when it is idle already, after `now` while it still
    /// limits. [`Keyed`](crate::Keyed) evicts by it.
    fn idle_from(&self, now: u64) -> u64;
}

/// A [`Limiter`] that [`Keyed`](crate::Keyed) can hold for many keys while
/// keeping its settings once: each key stores only a [`State`](Self::State),
/// and the template limiter (the one given to `Keyed`) applies its settings
/// to it.
///
/// For [`TokenBucket`](crate::TokenBucket), [`LeakyBucket`](crate::LeakyBucket)
/// and [`FixedWindow`](crate::FixedWindow) the state is one `AtomicU64`, so
/// a key costs its own size plus 8 bytes (a `u64` key: 16 bytes, four per
/// cache line). [`SlidingWindow`](crate::SlidingWindow)'s state is a whole
/// window of its own.
///
/// # Implementing it for your own limiter
///
/// The simplest correct form keeps a fresh limiter per key: `type State =
/// Self`, `new_state` builds one with the template's settings, and the
/// other two methods call the state's [`Limiter`] methods.
pub trait KeyedLimiter: Limiter {
    /// What one key holds.
    type State: Send + Sync + 'static;

    /// The state of a key seen for the first time: as the template was
    /// when it was built (a full bucket, an empty window).
    fn new_state(&self) -> Self::State;

    /// As [`Limiter::try_acquire_at`], on one key's state.
    ///
    /// # Errors
    ///
    /// As [`Limiter::try_acquire_at`].
    fn try_acquire_state(&self, state: &Self::State, n: u32, now: u64) -> Result<(), Denied>;

    /// As [`Limiter::idle_from`], for one key's state.
    fn state_idle_from(&self, state: &Self::State, now: u64) -> u64;
}
