//! The local sold-out flag: once Redis says a SKU is gone, this instance
//! answers `sold_out` without a Redis round trip.
//!
//! A flag answers for the recheck interval. When it has run out, exactly one
//! request is let through to Redis (the recheck) while every other keeps
//! getting `sold_out`: if Redis still says sold out the flag is set again,
//! if it grants the flag is cleared, and if the recheck ends any other way
//! (an error, a cancelled request, an answer that says nothing about the
//! stock) the next request rechecks. So a refund or a restock on another
//! instance is seen within about one interval, at the cost of one Redis
//! call per interval per SKU.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

/// Per-SKU sold-out flags.
#[derive(Debug)]
pub struct SoldOutFlags {
    recheck: Duration,
    flags: Arc<RwLock<HashMap<u64, Flag>>>,
}

#[derive(Debug, Clone, Copy)]
struct Flag {
    until: Instant,
    rechecking: bool,
}

/// What the flag says of one request.
#[derive(Debug)]
pub enum Check {
    /// No flag: ask Redis.
    Open,
    /// Flagged: answer `sold_out`.
    SoldOut,
    /// The flag ran out and this request is the one that rechecks Redis;
    /// report what Redis said through the guard.
    Recheck(Recheck),
}

/// The right to recheck one SKU. Dropped without a verdict, it lets the
/// next request recheck.
#[derive(Debug)]
pub struct Recheck {
    sku: u64,
    recheck: Duration,
    flags: Arc<RwLock<HashMap<u64, Flag>>>,
    done: bool,
}

impl SoldOutFlags {
    /// Flags that answer for `recheck` after being set.
    pub fn new(recheck: Duration) -> Self {
        Self {
            recheck,
            flags: Arc::default(),
        }
    }

    /// The flag of `sku` for one request.
    pub fn check(&self, sku: u64) -> Check {
        let now = Instant::now();
        {
            let flags = self.flags.read().unwrap_or_else(PoisonError::into_inner);
            match flags.get(&sku) {
                None => return Check::Open,
                Some(flag) if now < flag.until || flag.rechecking => return Check::SoldOut,
                Some(_) => {}
            }
        }
        let mut flags = self.flags.write().unwrap_or_else(PoisonError::into_inner);
        match flags.get_mut(&sku) {
            None => Check::Open,
            Some(flag) if now < flag.until || flag.rechecking => Check::SoldOut,
            Some(flag) => {
                flag.rechecking = true;
                Check::Recheck(Recheck {
                    sku,
                    recheck: self.recheck,
                    flags: Arc::clone(&self.flags),
                    done: false,
                })
            }
        }
    }

    /// Flags `sku` sold out for the recheck interval.
    pub fn mark(&self, sku: u64) {
        mark(&self.flags, sku, self.recheck);
    }

    /// Clears the flag of `sku` (a restock).
    pub fn clear(&self, sku: u64) {
        self.flags
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&sku);
    }
}

fn mark(flags: &RwLock<HashMap<u64, Flag>>, sku: u64, recheck: Duration) {
    let flag = Flag {
        until: Instant::now() + recheck,
        rechecking: false,
    };
    flags
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(sku, flag);
}

impl Recheck {
    /// Redis still says sold out: flag it for another interval.
    pub fn still_sold_out(mut self) {
        self.done = true;
        mark(&self.flags, self.sku, self.recheck);
    }

    /// Redis sold a unit or has some left: clear the flag.
    pub fn back_on_sale(mut self) {
        self.done = true;
        self.flags
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.sku);
    }
}

impl Drop for Recheck {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut flags = self.flags.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(flag) = flags.get_mut(&self.sku) {
            flag.rechecking = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expire(flags: &SoldOutFlags) {
        std::thread::sleep(flags.recheck + Duration::from_millis(5));
    }

    #[test]
    fn one_recheck_per_interval() {
        let flags = SoldOutFlags::new(Duration::from_millis(20));
        assert!(matches!(flags.check(1), Check::Open));
        flags.mark(1);
        assert!(matches!(flags.check(1), Check::SoldOut));
        assert!(matches!(flags.check(2), Check::Open));
        expire(&flags);
        let Check::Recheck(recheck) = flags.check(1) else {
            panic!("the first request after the interval rechecks");
        };
        // Everyone else still gets sold out while the recheck is out.
        for _ in 0..100 {
            assert!(matches!(flags.check(1), Check::SoldOut));
        }
        recheck.still_sold_out();
        assert!(matches!(flags.check(1), Check::SoldOut));
        expire(&flags);
        let Check::Recheck(recheck) = flags.check(1) else {
            panic!("recheck again after the next interval");
        };
        recheck.back_on_sale();
        assert!(matches!(flags.check(1), Check::Open));
    }

    #[test]
    fn an_abandoned_recheck_passes_to_the_next_request() {
        let flags = SoldOutFlags::new(Duration::from_millis(10));
        flags.mark(1);
        expire(&flags);
        let first = flags.check(1);
        assert!(matches!(first, Check::Recheck(_)));
        drop(first);
        assert!(matches!(flags.check(1), Check::Recheck(_)));
    }

    #[test]
    fn clear_reopens() {
        let flags = SoldOutFlags::new(Duration::from_secs(60));
        flags.mark(3);
        flags.clear(3);
        assert!(matches!(flags.check(3), Check::Open));
    }

    #[test]
    fn thousands_of_threads_one_recheck() {
        let flags = Arc::new(SoldOutFlags::new(Duration::from_millis(10)));
        flags.mark(1);
        expire(&flags);
        let rechecks: Vec<_> = (0..2_000)
            .map(|_| {
                let flags = Arc::clone(&flags);
                std::thread::spawn(move || match flags.check(1) {
                    // Hold the guard: a dropped guard would hand over.
                    Check::Recheck(guard) => Some(guard),
                    _ => None,
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .filter_map(|t| t.join().unwrap())
            .collect();
        assert_eq!(rechecks.len(), 1);
    }
}
