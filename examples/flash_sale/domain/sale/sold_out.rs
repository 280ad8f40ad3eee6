//! The local sold-out flag: once Redis says a SKU is gone, this instance
//! answers `sold_out` without a Redis round trip, and a retry of a request
//! Redis granted still gets `queued`, on every instance, exactly.
//!
//! **Knowing every grant.** Grants are at most the stock, so when a flag is
//! set the sale loads every request id ever granted units of the SKU (the
//! deduction log in Redis, then the orders in MySQL: see
//! [`GrantRecord`](crate::domain::ports::GrantRecord)). Until that set is
//! in, the flag does not answer (requests go to Redis, whose record replays
//! the first answer); from then on a request id in the set is answered
//! `queued` and any other `sold_out`. When the flag was set, Redis had no
//! unit left, so no grant can come after the load started unless units
//! come back (a refund or a restock): the set is reloaded at every recheck
//! that still finds the SKU sold out, so a grant of such a returned unit on
//! another instance is known here within one recheck interval.
//!
//! **Rechecks.** A flag answers for the recheck interval. When it has run
//! out, exactly one request is let through to Redis (the recheck) while
//! every other keeps getting the flag's answer: if Redis still says sold
//! out the flag is set again, if it grants the flag is cleared, and if the
//! recheck ends any other way (an error, a cancelled request, an answer
//! that says nothing about the stock) the next request rechecks. So a
//! refund or a restock on another instance is seen within about one
//! interval, at the cost of one Redis call per interval per SKU.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

/// Per-SKU sold-out flags. Cheap to clone (clones share the flags).
#[derive(Debug, Clone)]
pub struct SoldOutFlags {
    recheck: Duration,
    flags: Arc<RwLock<Flags>>,
}

#[derive(Debug, Default)]
struct Flags {
    by_sku: HashMap<u64, Flag>,
    /// Numbers each flag set, so a late load never lands on a newer flag.
    next_epoch: u64,
}

#[derive(Debug)]
struct Flag {
    until: Instant,
    rechecking: bool,
    epoch: u64,
    /// Every request id granted units of the SKU, once loaded.
    grants: Option<Arc<HashSet<String>>>,
    /// A load of `grants` is under way.
    loading: bool,
}

/// What the flag says of one request.
#[derive(Debug)]
pub enum Check {
    /// No flag: ask Redis.
    Open,
    /// Flagged, but the grants are not loaded yet: ask Redis (its record
    /// replays a granted request's answer).
    Unknown,
    /// Flagged, and this request id is not among the grants: `sold_out`.
    SoldOut,
    /// Flagged, and Redis granted this request id: `queued`.
    Granted,
    /// The flag ran out and this request is the one that rechecks Redis;
    /// report what Redis said through the guard.
    Recheck(Recheck),
}

/// A load of the grants of one SKU to start: hand its result to
/// [`SoldOutFlags::loaded`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantLoad {
    /// The SKU.
    pub sku: u64,
    epoch: u64,
}

/// The right to recheck one SKU. Dropped without a verdict, it lets the
/// next request recheck.
#[derive(Debug)]
pub struct Recheck {
    sku: u64,
    recheck: Duration,
    flags: Arc<RwLock<Flags>>,
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

    /// The flag of `sku` for request `request_id`.
    pub fn check(&self, sku: u64, request_id: &str) -> Check {
        let now = Instant::now();
        {
            let flags = self.flags.read().unwrap_or_else(PoisonError::into_inner);
            match flags.by_sku.get(&sku) {
                None => return Check::Open,
                Some(flag) if now < flag.until || flag.rechecking => {
                    return answer(flag, request_id);
                }
                Some(_) => {}
            }
        }
        let mut flags = self.flags.write().unwrap_or_else(PoisonError::into_inner);
        match flags.by_sku.get_mut(&sku) {
            None => Check::Open,
            Some(flag) if now < flag.until || flag.rechecking => answer(flag, request_id),
            // Without the grants the flag answers nothing; no recheck either.
            Some(flag) if flag.grants.is_none() => Check::Unknown,
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

    /// Flags `sku` sold out for the recheck interval (or extends the flag);
    /// the grants load to start, if one is needed.
    pub fn mark(&self, sku: u64) -> Option<GrantLoad> {
        mark(&self.flags, sku, self.recheck, false)
    }

    /// Installs the grants a [`GrantLoad`] read (`None`: the load failed,
    /// and the next sold-out answer from Redis starts another).
    pub fn loaded(&self, load: GrantLoad, grants: Option<HashSet<String>>) {
        let mut flags = self.flags.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(flag) = flags
            .by_sku
            .get_mut(&load.sku)
            .filter(|f| f.epoch == load.epoch)
        {
            flag.loading = false;
            if let Some(grants) = grants {
                flag.grants = Some(Arc::new(grants));
            }
        }
    }

    /// Clears the flag of `sku` (a restock).
    pub fn clear(&self, sku: u64) {
        self.flags
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .by_sku
            .remove(&sku);
    }
}

/// The flag's answer to `request_id`.
fn answer(flag: &Flag, request_id: &str) -> Check {
    match &flag.grants {
        None => Check::Unknown,
        Some(grants) if grants.contains(request_id) => Check::Granted,
        Some(_) => Check::SoldOut,
    }
}

/// Sets or extends the flag of `sku`; `reload`: load the grants again even
/// when they are in (a recheck found the SKU still sold out).
fn mark(flags: &RwLock<Flags>, sku: u64, recheck: Duration, reload: bool) -> Option<GrantLoad> {
    let until = Instant::now() + recheck;
    let mut flags = flags.write().unwrap_or_else(PoisonError::into_inner);
    let epoch = flags.next_epoch;
    let flag = flags.by_sku.entry(sku).or_insert(Flag {
        until,
        rechecking: false,
        epoch,
        grants: None,
        loading: false,
    });
    flag.until = until;
    flag.rechecking = false;
    let start = !flag.loading && (reload || flag.grants.is_none());
    if start {
        flag.loading = true;
    }
    let load = start.then_some(GrantLoad {
        sku,
        epoch: flag.epoch,
    });
    if flag.epoch == epoch {
        flags.next_epoch += 1;
    }
    load
}

impl Recheck {
    /// Redis still says sold out: flag it for another interval, and reload
    /// the grants (units may have come back and been sold meanwhile).
    pub fn still_sold_out(mut self) -> Option<GrantLoad> {
        self.done = true;
        mark(&self.flags, self.sku, self.recheck, true)
    }

    /// Redis sold a unit or has some left: clear the flag.
    pub fn back_on_sale(mut self) {
        self.done = true;
        self.flags
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .by_sku
            .remove(&self.sku);
    }
}

impl Drop for Recheck {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut flags = self.flags.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(flag) = flags.by_sku.get_mut(&self.sku) {
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

    fn grants(ids: &[&str]) -> Option<HashSet<String>> {
        Some(ids.iter().map(|id| (*id).to_owned()).collect())
    }

    /// Flags `sku` and installs `ids` as its grants.
    fn flag_with(flags: &SoldOutFlags, sku: u64, ids: &[&str]) {
        let load = flags.mark(sku).expect("a new flag loads its grants");
        flags.loaded(load, grants(ids));
    }

    #[test]
    fn the_flag_answers_only_once_it_knows_every_grant() {
        let flags = SoldOutFlags::new(Duration::from_secs(60));
        assert!(matches!(flags.check(1, "a"), Check::Open));
        let load = flags.mark(1).unwrap();
        assert_eq!(load.sku, 1);
        // Until the grants are in, requests go to Redis.
        assert!(matches!(flags.check(1, "a"), Check::Unknown));
        // Another sold-out answer meanwhile starts no second load.
        assert_eq!(flags.mark(1), None);
        flags.loaded(load, grants(&["a"]));
        assert!(matches!(flags.check(1, "a"), Check::Granted));
        assert!(matches!(flags.check(1, "b"), Check::SoldOut));
        assert!(matches!(flags.check(2, "a"), Check::Open));
    }

    #[test]
    fn one_recheck_per_interval_and_each_reloads_the_grants() {
        let flags = SoldOutFlags::new(Duration::from_millis(20));
        flag_with(&flags, 1, &["a"]);
        expire(&flags);
        let Check::Recheck(recheck) = flags.check(1, "x") else {
            panic!("the first request after the interval rechecks");
        };
        // Everyone else still gets the flag's answer while the recheck is out.
        for _ in 0..100 {
            assert!(matches!(flags.check(1, "y"), Check::SoldOut));
            assert!(matches!(flags.check(1, "a"), Check::Granted));
        }
        let reload = recheck
            .still_sold_out()
            .expect("a recheck reloads the grants");
        // The old grants answer while the new ones load.
        assert!(matches!(flags.check(1, "b"), Check::SoldOut));
        flags.loaded(reload, grants(&["a", "b"]));
        assert!(matches!(flags.check(1, "b"), Check::Granted));
        expire(&flags);
        let Check::Recheck(recheck) = flags.check(1, "z") else {
            panic!("recheck again after the next interval");
        };
        recheck.back_on_sale();
        assert!(matches!(flags.check(1, "a"), Check::Open));
    }

    #[test]
    fn a_failed_load_leaves_the_flag_silent_until_redis_says_sold_out_again() {
        let flags = SoldOutFlags::new(Duration::from_secs(60));
        let load = flags.mark(1).unwrap();
        flags.loaded(load, None);
        assert!(matches!(flags.check(1, "a"), Check::Unknown));
        let again = flags.mark(1).expect("the next sold-out answer loads again");
        flags.loaded(again, grants(&[]));
        assert!(matches!(flags.check(1, "a"), Check::SoldOut));
    }

    #[test]
    fn a_late_load_never_lands_on_a_newer_flag() {
        let flags = SoldOutFlags::new(Duration::from_secs(60));
        let old = flags.mark(1).unwrap();
        flags.clear(1);
        let new = flags.mark(1).unwrap();
        assert_ne!(old, new);
        flags.loaded(old, grants(&["stale"]));
        assert!(matches!(flags.check(1, "stale"), Check::Unknown));
        flags.loaded(new, grants(&["fresh"]));
        assert!(matches!(flags.check(1, "stale"), Check::SoldOut));
        assert!(matches!(flags.check(1, "fresh"), Check::Granted));
    }

    #[test]
    fn an_abandoned_recheck_passes_to_the_next_request() {
        let flags = SoldOutFlags::new(Duration::from_millis(10));
        flag_with(&flags, 1, &[]);
        expire(&flags);
        let first = flags.check(1, "a");
        assert!(matches!(first, Check::Recheck(_)));
        drop(first);
        assert!(matches!(flags.check(1, "a"), Check::Recheck(_)));
    }

    #[test]
    fn clear_reopens() {
        let flags = SoldOutFlags::new(Duration::from_secs(60));
        flag_with(&flags, 3, &[]);
        flags.clear(3);
        assert!(matches!(flags.check(3, "a"), Check::Open));
    }

    #[test]
    fn thousands_of_threads_one_recheck() {
        let flags = SoldOutFlags::new(Duration::from_millis(10));
        flag_with(&flags, 1, &[]);
        expire(&flags);
        let rechecks: Vec<_> = (0..2_000)
            .map(|i| {
                let flags = flags.clone();
                std::thread::spawn(move || match flags.check(1, &i.to_string()) {
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
