//! A fixed window counter: at most `limit` admissions per aligned window.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::clock::{Clock, DefaultClock, saturating_nanos};
use crate::error::{ConfigError, Denied};
use crate::limiter::{KeyedLimiter, Limiter};
use crate::range::{MAX_WINDOW, WindowKind, check_window};

/// A lock-free fixed window counter: at most `limit` admissions in each
/// window `[k·window, (k+1)·window)` of the clock.
///
/// The cheapest limiter (one `AtomicU64` holding the window number and its
/// count), but around a window edge it lets up to `2·limit` through in one
/// window's length: `limit` at the end of one window and `limit` at the start
/// of the next. Use [`SlidingWindow`](crate::SlidingWindow) when that matters.
///
/// Windows are numbered modulo 2³²: a limiter left untouched for exactly a
/// multiple of 2³² windows (136 years of 1 s windows) would resume its old
/// count for one window — a few extra denials, never extra admissions.
///
/// Valid ranges (checked by [`FixedWindow::try_new`], which names the
/// argument and its range in a [`ConfigError`]):
///
/// | argument | valid range |
/// |---|---|
/// | `limit` | 1 to `u32::MAX` |
/// | `window` | [`MIN_WINDOW`](crate::MIN_WINDOW) (1 ms) to [`MAX_WINDOW`](crate::MAX_WINDOW) (`u64::MAX` ns, about 584 years) |
///
/// [`FixedWindow::new`] never fails: a zero limit or a window under 1 ms
/// builds a limiter that denies everything, and a window above
/// [`MAX_WINDOW`](crate::MAX_WINDOW) (such as [`Duration::MAX`]) is
/// saturated to it. Window arithmetic saturates instead of overflowing.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use seckill_ratelimit::{FixedWindow, ManualClock};
///
/// let clock = ManualClock::new();
/// let window = FixedWindow::with_clock(2, Duration::from_secs(1), clock.clone());
/// clock.advance(Duration::from_millis(300));
/// window.try_acquire(2).unwrap();
/// // Denied until the next window starts, 700 ms from now.
/// assert_eq!(window.try_acquire(1).unwrap_err().retry_after, Duration::from_millis(700));
/// ```
#[derive(Debug)]
pub struct FixedWindow<C: Clock = DefaultClock> {
    /// Window number (low 32 bits) in the high half, count in the low half.
    state: AtomicU64,
    limit: u32,
    window: u64,
    clock: C,
}

impl FixedWindow<DefaultClock> {
    /// At most `limit` admissions per `window`, on the default clock.
    ///
    /// # Panics
    ///
    /// Never. A zero limit or a window under 1 ms gives a limiter that
    /// denies everything (see above).
    pub fn new(limit: u32, window: Duration) -> Self {
        Self::with_clock(limit, window, DefaultClock::default())
    }

    /// Like [`FixedWindow::new`], rejecting an argument outside its range:
    /// `limit` 1 to `u32::MAX`, `window` 1 ms to [`MAX_WINDOW`](crate::MAX_WINDOW).
    ///
    /// # Errors
    ///
    /// [`ConfigError::OutOfRange`] naming `limit`, or
    /// [`ConfigError::DurationOutOfRange`] naming `window`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use seckill_ratelimit::FixedWindow;
    ///
    /// let err = FixedWindow::try_new(5, Duration::ZERO).unwrap_err();
    /// assert!(err.to_string().starts_with("window must be 1 ms to"));
    /// ```
    pub fn try_new(limit: u32, window: Duration) -> Result<Self, ConfigError> {
        Self::try_with_clock(limit, window, DefaultClock::default())
    }
}

impl<C: Clock> FixedWindow<C> {
    /// At most `limit` admissions per `window`, on the given clock.
    ///
    /// # Panics
    ///
    /// Never; out-of-range arguments as in [`FixedWindow::new`].
    pub fn with_clock(limit: u32, window: Duration, clock: C) -> Self {
        let ok = check_window(WindowKind::Fixed, limit, window.min(MAX_WINDOW)).is_ok();
        Self {
            state: AtomicU64::new(0),
            limit: if ok { limit } else { 0 },
            window: saturating_nanos(window).max(1),
            clock,
        }
    }

    /// Like [`FixedWindow::with_clock`], rejecting an argument outside its
    /// range (as [`FixedWindow::try_new`]).
    ///
    /// # Errors
    ///
    /// [`ConfigError::OutOfRange`] naming `limit`, or
    /// [`ConfigError::DurationOutOfRange`] naming `window`.
    pub fn try_with_clock(limit: u32, window: Duration, clock: C) -> Result<Self, ConfigError> {
        check_window(WindowKind::Fixed, limit, window)?;
        Ok(Self::with_clock(limit, window, clock))
    }

    /// Admits `n` units now if the current window has room. `n == 0` always passes.
    ///
    /// # Errors
    ///
    /// [`Denied`] with the time until the next window; with
    /// [`DenyReason::ExceedsCapacity`](crate::DenyReason::ExceedsCapacity)
    /// when `n > limit`.
    #[inline]
    pub fn try_acquire(&self, n: u32) -> Result<(), Denied> {
        self.acquire_at(n, self.clock.now())
    }

    /// The most admissions per window.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// The window length.
    pub fn window(&self) -> Duration {
        Duration::from_nanos(self.window)
    }

    fn acquire_at(&self, n: u32, now: u64) -> Result<(), Denied> {
        self.acquire_on(&self.state, n, now)
    }

    /// Admits `n` units at `now` on the window whose state is `cell`.
    #[inline]
    fn acquire_on(&self, cell: &AtomicU64, n: u32, now: u64) -> Result<(), Denied> {
        if n == 0 {
            return Ok(());
        }
        if n > self.limit {
            return Err(Denied::exceeds_capacity());
        }
        let number = now / self.window;
        let tag = number & u64::from(u32::MAX);
        let mut state = cell.load(Ordering::Acquire);
        loop {
            let count = if state >> 32 == tag {
                state & u64::from(u32::MAX)
            } else {
                0
            };
            let wanted = count + u64::from(n);
            if wanted > u64::from(self.limit) {
                let next_window = number.saturating_add(1).saturating_mul(self.window);
                return Err(Denied::rate_exceeded(Duration::from_nanos(
                    next_window.saturating_sub(now),
                )));
            }
            match cell.compare_exchange_weak(
                state,
                (tag << 32) | wanted,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(()),
                Err(current) => state = current,
            }
        }
    }
}

impl<C: Clock> Limiter for FixedWindow<C> {
    type Clock = C;

    fn clock(&self) -> &C {
        &self.clock
    }

    #[inline]
    fn try_acquire_at(&self, n: u32, now: u64) -> Result<(), Denied> {
        self.acquire_at(n, now)
    }

    fn idle_from(&self, now: u64) -> u64 {
        self.idle_on(&self.state, now)
    }
}

impl<C: Clock> KeyedLimiter for FixedWindow<C> {
    /// The window number and count, packed.
    type State = AtomicU64;

    fn new_state(&self) -> AtomicU64 {
        AtomicU64::new(0)
    }

    #[inline]
    fn try_acquire_state(&self, state: &AtomicU64, n: u32, now: u64) -> Result<(), Denied> {
        self.acquire_on(state, n, now)
    }

    fn state_idle_from(&self, state: &AtomicU64, now: u64) -> u64 {
        self.idle_on(state, now)
    }
}

impl<C: Clock> FixedWindow<C> {
    /// When the window whose state is `cell` is back to its initial state.
    fn idle_on(&self, cell: &AtomicU64, now: u64) -> u64 {
        let state = cell.load(Ordering::Acquire);
        if state & u64::from(u32::MAX) == 0 {
            return 0;
        }
        // The latest window carrying this tag, at or before now.
        let current = now / self.window;
        let behind = (current.wrapping_sub(state >> 32)) & u64::from(u32::MAX);
        current
            .saturating_sub(behind)
            .saturating_add(1)
            .saturating_mul(self.window)
    }
}
