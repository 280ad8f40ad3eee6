//! The generic cell rate algorithm on one `AtomicU64`: the arithmetic shared
//! by [`TokenBucket`](crate::TokenBucket) and [`LeakyBucket`](crate::LeakyBucket).
//!
//! The state is the theoretical arrival time (TAT): the instant at which the
//! bucket would be full again (token view) or empty again (leaky view), in
//! nanoseconds of the limiter's clock. A request for `n` units moves it to
//! `max(tat, now) + n·interval`, and is admitted when that lies no further
//! than `capacity·interval` ahead of now.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error::Denied;

const NANOS_PER_SEC: u32 = 1_000_000_000;

/// One GCRA cell: its settings and its state, 16 bytes.
#[derive(Debug)]
pub(crate) struct Gcra {
    pub(crate) tat: AtomicU64,
    pub(crate) rate: GcraRate,
}

/// The settings of a GCRA cell, apart from its state (the TAT), so a keyed
/// map keeps them once and one `AtomicU64` per key.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GcraRate {
    /// Nanoseconds per unit (at most 10⁹); 0 for a limiter that never grants.
    interval: u32,
    capacity: u32,
}

/// The nanoseconds between two units at `rate_per_sec`, rounded up so the
/// effective rate never exceeds the configured one (exact when the rate
/// divides 10⁹).
pub(crate) fn interval_for(rate_per_sec: u32) -> u32 {
    NANOS_PER_SEC.div_ceil(rate_per_sec.max(1))
}

impl Gcra {
    /// A full bucket. A zero rate or capacity gives a cell that denies every
    /// non-empty request with [`DenyReason::ExceedsCapacity`](crate::DenyReason).
    pub(crate) fn new(rate_per_sec: u32, capacity: u32) -> Self {
        let (interval, capacity) = if rate_per_sec == 0 || capacity == 0 {
            (0, 0)
        } else {
            (interval_for(rate_per_sec), capacity)
        };
        Self {
            tat: AtomicU64::new(0),
            rate: GcraRate { interval, capacity },
        }
    }

    pub(crate) fn rate(&self) -> u32 {
        self.rate.rate()
    }

    pub(crate) fn capacity(&self) -> u32 {
        self.rate.capacity
    }

    pub(crate) fn interval(&self) -> u64 {
        u64::from(self.rate.interval)
    }

    #[inline]
    pub(crate) fn try_acquire(&self, n: u32, now: u64) -> Result<(), Denied> {
        self.rate.try_acquire(&self.tat, n, now)
    }

    pub(crate) fn reserve(&self, n: u32, now: u64) -> Option<(u64, u64)> {
        self.rate.reserve(&self.tat, n, now)
    }

    pub(crate) fn cancel(&self, n: u32, booked: u64) {
        self.rate.cancel(&self.tat, n, booked);
    }

    /// When the cell is back to its initial state (a full bucket): the TAT.
    pub(crate) fn idle_from(&self) -> u64 {
        self.tat.load(Ordering::Acquire)
    }
}

impl GcraRate {
    /// The rate the cell applies: 10⁹ / interval, rounded to the nearest
    /// integer (the configured rate unless it is above about 20,000/s and
    /// does not divide 10⁹); 0 for a cell that never grants.
    pub(crate) fn rate(&self) -> u32 {
        if self.interval == 0 {
            return 0;
        }
        (NANOS_PER_SEC + self.interval / 2) / self.interval
    }

    /// Admits `n` units at `now` if they fit on the cell whose TAT is
    /// `tat_cell`, without waiting.
    #[inline]
    pub(crate) fn try_acquire(&self, tat_cell: &AtomicU64, n: u32, now: u64) -> Result<(), Denied> {
        if n == 0 {
            return Ok(());
        }
        if n > self.capacity {
            return Err(Denied::exceeds_capacity());
        }
        // Both products fit in u64: u32::MAX · 10⁹ < 2⁶⁴.
        let interval = u64::from(self.interval);
        let cost = interval * u64::from(n);
        // `capacity · interval`: how far ahead of now the TAT may run.
        let horizon = interval * u64::from(self.capacity);
        let mut tat = tat_cell.load(Ordering::Acquire);
        loop {
            // Past the end of the clock (584 years): deny rather than
            // saturate, which would grant tokens that were never refilled.
            let Some(next) = tat.max(now).checked_add(cost) else {
                return Err(Denied::rate_exceeded(Duration::from_nanos(u64::MAX - now)));
            };
            let allowed_at = next.saturating_sub(horizon);
            if allowed_at > now {
                return Err(Denied::rate_exceeded(Duration::from_nanos(
                    allowed_at - now,
                )));
            }
            match tat_cell.compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(()),
                Err(current) => tat = current,
            }
        }
    }

    /// Books the next `n` slots whatever the queue length and returns
    /// `(wait, booked)`: how long until the first booked slot, and the TAT
    /// written (for [`Gcra::cancel`]). `None` when the cell never grants or
    /// the booking would end past `u64::MAX` nanoseconds.
    pub(crate) fn reserve(&self, tat_cell: &AtomicU64, n: u32, now: u64) -> Option<(u64, u64)> {
        if self.interval == 0 {
            return None;
        }
        let cost = u64::from(self.interval) * u64::from(n);
        let mut tat = tat_cell.load(Ordering::Acquire);
        loop {
            let start = tat.max(now);
            // Bookings past the end of the clock (584 years) never come.
            let next = start.checked_add(cost)?;
            match tat_cell.compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some((start - now, next)),
                Err(current) => tat = current,
            }
        }
    }

    /// Gives back `n` slots booked by [`Gcra::reserve`] that ended at `booked`,
    /// if nobody booked after them (otherwise they stay used: a gap in the
    /// output, never an excess).
    pub(crate) fn cancel(&self, tat_cell: &AtomicU64, n: u32, booked: u64) {
        let cost = u64::from(self.interval) * u64::from(n);
        let _ = tat_cell.compare_exchange(
            booked,
            booked.saturating_sub(cost),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_rounds_up() {
        assert_eq!(interval_for(1), 1_000_000_000);
        assert_eq!(interval_for(3), 333_333_334);
        assert_eq!(interval_for(u32::MAX), 1);
        assert_eq!(Gcra::new(3, 1).rate(), 3);
        assert_eq!(Gcra::new(20_000, 1).rate(), 20_000);
        assert_eq!(Gcra::new(0, 1).rate(), 0);
        assert_eq!(std::mem::size_of::<Gcra>(), 16);
        assert_eq!(std::mem::size_of::<GcraRate>(), 8);
    }

    #[test]
    fn cancel_restores_only_the_last_booking() {
        let cell = Gcra::new(10, 1);
        let (wait_a, a) = cell.reserve(1, 0).unwrap();
        let (wait_b, b) = cell.reserve(1, 0).unwrap();
        assert_eq!((wait_a, wait_b), (0, 100_000_000));
        cell.cancel(1, a); // b booked after a: a's slot stays used
        assert_eq!(cell.idle_from(), b);
        cell.cancel(1, b);
        assert_eq!(cell.idle_from(), a);
    }
}
