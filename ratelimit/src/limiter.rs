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
