//! A sliding window log: at most `limit` admissions in any window of length `window`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::clock::{Clock, DefaultClock, saturating_nanos};
use crate::error::{ConfigError, Denied};
use crate::limiter::{KeyedLimiter, Limiter};
use crate::range::{self, MAX_WINDOW, WindowKind};

/// An exact sliding window: no window of length `window`, wherever it
/// starts, holds more than `limit` admissions — unlike a fixed window, which
/// lets up to 2× through around a window edge.
///
/// It is a lock-free ring of `limit` slots holding the expiry of each
/// admission; admission number `i` may reuse the slot of admission `i − limit`
/// only once that one has left the window. A shared counter, advanced by a
/// compare-and-swap, hands out admission numbers, so concurrent callers never
/// take the same slot. Memory: 16 bytes per unit of `limit` (for limits in the
/// millions, prefer a [`TokenBucket`](crate::TokenBucket)), allocated when
/// the limiter is built.
///
/// Valid ranges (checked by [`SlidingWindow::try_new`], which names the
/// argument and its range in a [`ConfigError`]):
///
/// | argument | valid range |
/// |---|---|
/// | `limit` | 1 to [`MAX_SLIDING_LIMIT`] (16,777,216: 256 MiB of slots) |
/// | `window` | [`MIN_WINDOW`](crate::MIN_WINDOW) (1 ms) to [`MAX_WINDOW`](crate::MAX_WINDOW) (`u64::MAX` ns, about 584 years) |
///
/// [`SlidingWindow::new`] never fails: a zero limit, a limit above
/// [`MAX_SLIDING_LIMIT`] or a window under 1 ms builds a limiter that
/// allocates nothing and denies everything with
/// [`DenyReason::ExceedsCapacity`](crate::DenyReason::ExceedsCapacity); a
/// window above [`MAX_WINDOW`] (such as [`Duration::MAX`]) is saturated to it.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use seckill_ratelimit::{ManualClock, SlidingWindow};
///
/// let clock = ManualClock::new();
/// let window = SlidingWindow::with_clock(2, Duration::from_secs(1), clock.clone());
/// window.try_acquire(1).unwrap();
/// clock.advance(Duration::from_millis(600));
/// window.try_acquire(1).unwrap();
/// // Full until the first admission leaves the window, 400 ms from now.
/// assert_eq!(window.try_acquire(1).unwrap_err().retry_after, Duration::from_millis(400));
/// ```
#[derive(Debug)]
pub struct SlidingWindow<C: Clock = DefaultClock> {
    /// Admission numbers handed out so far.
    next: AtomicU64,
    slots: Box<[Slot]>,
    window: u64,
    clock: C,
}

#[derive(Debug, Default)]
struct Slot {
    /// When the admission stored here leaves the window (clock nanoseconds).
    expires: AtomicU64,
    /// One past the number of the admission stored here; lets a caller wait
    /// for a writer that took its number but has not stored its expiry yet.
    stamp: AtomicU64,
}

impl SlidingWindow<DefaultClock> {
    /// At most `limit` admissions in any `window`, on the default clock.
    ///
    /// # Panics
    ///
    /// Never. A zero limit, a limit above [`MAX_SLIDING_LIMIT`] or a window
    /// under 1 ms gives a limiter that denies everything (see above).
    pub fn new(limit: u32, window: Duration) -> Self {
        Self::with_clock(limit, window, DefaultClock::default())
    }

    /// Like [`SlidingWindow::new`], rejecting an argument outside its range:
    /// `limit` 1 to [`MAX_SLIDING_LIMIT`], `window` 1 ms to [`MAX_WINDOW`](crate::MAX_WINDOW).
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
    /// use seckill_ratelimit::SlidingWindow;
    ///
    /// let err = SlidingWindow::try_new(0, Duration::from_secs(1)).unwrap_err();
    /// assert_eq!(err.to_string(), "limit must be 1 to 16777216, got 0");
    /// assert!(SlidingWindow::try_new(5, Duration::MAX).is_err());
    /// ```
    pub fn try_new(limit: u32, window: Duration) -> Result<Self, ConfigError> {
        Self::try_with_clock(limit, window, DefaultClock::default())
    }
}

impl<C: Clock> SlidingWindow<C> {
    /// At most `limit` admissions in any `window`, on the given clock.
    ///
    /// # Panics
    ///
    /// Never; out-of-range arguments as in [`SlidingWindow::new`].
    pub fn with_clock(limit: u32, window: Duration, clock: C) -> Self {
        let usable =
            range::check_window(WindowKind::Sliding, limit, window.min(MAX_WINDOW)).is_ok();
        let limit = if usable { limit } else { 0 };
        Self {
            next: AtomicU64::new(0),
            slots: (0..limit).map(|_| Slot::default()).collect(),
            window: saturating_nanos(window),
            clock,
        }
    }

    /// Like [`SlidingWindow::with_clock`], rejecting an argument outside its
    /// range (as [`SlidingWindow::try_new`]).
    ///
    /// # Errors
    ///
    /// [`ConfigError::OutOfRange`] naming `limit`, or
    /// [`ConfigError::DurationOutOfRange`] naming `window`.
    pub fn try_with_clock(limit: u32, window: Duration, clock: C) -> Result<Self, ConfigError> {
        range::check_window(WindowKind::Sliding, limit, window)?;
        Ok(Self::with_clock(limit, window, clock))
    }

    /// Admits `n` units now if the last `window` holds at most `limit − n`.
    /// `n == 0` always passes.
    ///
    /// # Errors
    ///
    /// [`Denied`] with the exact time until enough earlier admissions leave
    /// the window; [`DenyReason::ExceedsCapacity`](crate::DenyReason::ExceedsCapacity)
    /// when `n > limit`.
    pub fn try_acquire(&self, n: u32) -> Result<(), Denied> {
        self.acquire_at(n, self.clock.now())
    }

    /// The most admissions any window holds.
    pub fn limit(&self) -> u32 {
        u32::try_from(self.slots.len()).unwrap_or(u32::MAX)
    }

    /// The window length.
    pub fn window(&self) -> Duration {
        Duration::from_nanos(self.window)
    }

    fn acquire_at(&self, n: u32, now: u64) -> Result<(), Denied> {
        if n == 0 {
            return Ok(());
        }
        let len = self.slots.len() as u64;
        if u64::from(n) > len {
            return Err(Denied::exceeds_capacity());
        }
        let mut first = self.next.load(Ordering::Acquire);
        loop {
            // Admissions first..first+n reuse the slots of first-len..first+n-len.
            let mut latest_expiry = 0;
            for number in first..first + u64::from(n) {
                let expires = self.settled_expiry(number, len);
                latest_expiry = latest_expiry.max(expires);
            }
            if latest_expiry > now {
                return Err(Denied::rate_exceeded(Duration::from_nanos(
                    latest_expiry - now,
                )));
            }
            match self.next.compare_exchange_weak(
                first,
                first + u64::from(n),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(current) => first = current,
            }
        }
        let expires = now.saturating_add(self.window);
        for number in first..first + u64::from(n) {
            if let Some(slot) = self.slot(number, len) {
                slot.expires.fetch_max(expires, Ordering::AcqRel);
                slot.stamp.store(number + 1, Ordering::Release);
            }
        }
        Ok(())
    }

    /// The expiry in the slot admission `number` would reuse, once the
    /// previous holder (admission `number − len`) has stored it.
    fn settled_expiry(&self, number: u64, len: u64) -> u64 {
        let Some(slot) = self.slot(number, len) else {
            return 0;
        };
        let Some(previous) = number.checked_sub(len) else {
            return 0; // first lap: the slot was never used
        };
        // The previous holder took its number before us; it stores its expiry
        // right after, so this wait is a few instructions unless its thread
        // was preempted in between.
        let mut spins = 0u32;
        while slot.stamp.load(Ordering::Acquire) < previous + 1 {
            if spins < 64 {
                std::hint::spin_loop();
                spins += 1;
            } else {
                std::thread::yield_now();
            }
        }
        slot.expires.load(Ordering::Acquire)
    }

    fn slot(&self, number: u64, len: u64) -> Option<&Slot> {
        usize::try_from(number % len)
            .ok()
            .and_then(|i| self.slots.get(i))
    }
}

impl<C: Clock> Limiter for SlidingWindow<C> {
    type Clock = C;

    fn clock(&self) -> &C {
        &self.clock
    }

    fn try_acquire_at(&self, n: u32, now: u64) -> Result<(), Denied> {
        self.acquire_at(n, now)
    }

    fn idle_from(&self, now: u64) -> u64 {
        let len = self.slots.len() as u64;
        let next = self.next.load(Ordering::Acquire);
        // The latest admission is the last one to leave the window; while
        // its expiry is not stored yet, it is in use now.
        next.checked_sub(1)
            .and_then(|last| self.slot(last, len))
            .map_or(0, |slot| {
                if slot.stamp.load(Ordering::Acquire) == next {
                    slot.expires.load(Ordering::Acquire)
                } else {
                    now.saturating_add(self.window)
                }
            })
    }
}

/// The largest in-process sliding window limit (256 MiB of slots).
pub const MAX_SLIDING_LIMIT: u32 = 1 << 24;

impl<C: Clock> KeyedLimiter for SlidingWindow<C> {
    /// A window of the key's own: a sliding window's state is its log of
    /// admissions, `limit` slots.
    type State = Self;

    fn new_state(&self) -> Self {
        Self::with_clock(self.limit(), self.window(), self.clock.clone())
    }

    fn try_acquire_state(&self, state: &Self, n: u32, now: u64) -> Result<(), Denied> {
        state.acquire_at(n, now)
    }

    fn state_idle_from(&self, state: &Self, now: u64) -> u64 {
        state.idle_from(now)
    }
}
