//! The optional bounded in-process front cache for hot keys.
//!
//! Holds the encoded entries (not typed values), each for a short TTL. When
//! full it drops expired entries (a full sweep, at most once per TTL, so the
//! work per insert stays O(1) amortized even at the largest capacity), else
//! an arbitrary one: hot keys are re-inserted on their next read anyway, and
//! the TTL bounds staleness.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::shared::Shared;

pub(crate) struct Front {
    capacity: usize,
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Shared)>>,
    /// No sweep for expired entries before this instant.
    next_sweep: Mutex<Instant>,
}

impl Front {
    pub(crate) fn new(capacity: usize, ttl: Duration) -> Self {
        Front {
            capacity,
            ttl,
            entries: Mutex::new(HashMap::new()),
            next_sweep: Mutex::new(Instant::now()),
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<Shared> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        match entries.get(key) {
            Some((expires, shared)) if Instant::now() < *expires => Some(shared.clone()),
            _ => None,
        }
    }

    pub(crate) fn insert(&self, key: &str, shared: Shared) {
        let expires = Instant::now() + self.ttl;
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.capacity && !entries.contains_key(key) {
            let now = Instant::now();
            let mut next_sweep = self
                .next_sweep
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if now >= *next_sweep {
                entries.retain(|_, (at, _)| now < *at);
                *next_sweep = now + self.ttl;
            }
            drop(next_sweep);
            if entries.len() >= self.capacity
                && let Some(victim) = entries.keys().next().cloned()
            {
                entries.remove(&victim);
            }
        }
        entries.insert(key.to_owned(), (expires, shared));
    }

    pub(crate) fn remove(&self, key: &str) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn entries_expire_after_the_ttl() {
        let front = Front::new(10, Duration::from_millis(100));
        front.insert("a", Shared::NotFound);
        assert_eq!(front.get("a"), Some(Shared::NotFound));
        tokio::time::advance(Duration::from_millis(99)).await;
        assert_eq!(front.get("a"), Some(Shared::NotFound));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(front.get("a"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn never_holds_more_than_capacity() {
        let front = Front::new(100, Duration::from_secs(1));
        for i in 0..10_000 {
            front.insert(&format!("k{i}"), Shared::NotFound);
            assert!(front.len() <= 100);
        }
        // The latest insert is always there.
        assert_eq!(front.get("k9999"), Some(Shared::NotFound));
        // Expired entries are dropped first, keeping live ones.
        tokio::time::advance(Duration::from_secs(2)).await;
        front.insert("fresh", Shared::NotFound);
        assert_eq!(front.len(), 1);
        front.remove("fresh");
        assert_eq!(front.get("fresh"), None);
    }
}
