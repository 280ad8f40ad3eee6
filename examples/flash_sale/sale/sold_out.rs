//! The local sold-out flag: once Redis says a SKU is gone, this instance
//! answers `sold_out` without a Redis round trip. A flag lasts a short
//! recheck interval, after which a request goes to Redis again, so a refund
//! or a restock on another instance is seen within that interval.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

/// Per-SKU sold-out flags with an expiry.
#[derive(Debug)]
pub struct SoldOutFlags {
    recheck: Duration,
    until: RwLock<HashMap<u64, Instant>>,
}

impl SoldOutFlags {
    /// Flags that answer for `recheck` after being set.
    pub fn new(recheck: Duration) -> Self {
        Self {
            recheck,
            until: RwLock::new(HashMap::new()),
        }
    }

    /// Whether `sku` is flagged sold out right now.
    pub fn is_sold_out(&self, sku: u64) -> bool {
        let until = self.until.read().unwrap_or_else(PoisonError::into_inner);
        until.get(&sku).is_some_and(|t| Instant::now() < *t)
    }

    /// Flags `sku` as sold out for the recheck interval.
    pub fn mark(&self, sku: u64) {
        let until = Instant::now() + self.recheck;
        self.until
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(sku, until);
    }

    /// Clears the flag of `sku` (a restock on this instance).
    pub fn clear(&self, sku: u64) {
        self.until
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&sku);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_expires_and_clears() {
        let flags = SoldOutFlags::new(Duration::from_millis(30));
        assert!(!flags.is_sold_out(1));
        flags.mark(1);
        assert!(flags.is_sold_out(1));
        assert!(!flags.is_sold_out(2));
        std::thread::sleep(Duration::from_millis(40));
        assert!(!flags.is_sold_out(1));
        flags.mark(2);
        flags.clear(2);
        assert!(!flags.is_sold_out(2));
    }
}
