//! One limiter per key (per IP, per user, per device), in a bounded map.

use std::borrow::Borrow;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use hashbrown::HashTable;

use crate::clock::{Clock, saturating_nanos};
use crate::error::Denied;
use crate::limiter::Limiter;

const MAX_SHARDS: usize = 64;
const DEFAULT_MAX_KEYS: usize = 100_000;
const DEFAULT_IDLE_TTL: Duration = Duration::from_secs(60);

/// A limiter per key, built on first use by a factory, in a map that never
/// holds more than `max_keys` keys.
///
/// - **Bounded**: a flood of distinct keys (spoofed IPs, random user ids)
///   cannot grow memory past `max_keys`. When a shard is full, its idle keys
///   are dropped first, then the quarter whose limiters will be back to
///   their initial state soonest. A key that is being limited (an emptied
///   bucket, a full window) is the last to go, so a flood of new keys cannot
///   reset an attacker's own limit.
/// - **Idle keys leave**: a key whose limiter has been back in its initial
///   state (a full bucket, an empty window) for `idle_ttl` is dropped by the
///   next sweep of its shard (shards sweep themselves as new keys arrive, at
///   most once per `idle_ttl / 4`), or by [`Keyed::evict_idle`]. Dropping
///   such a key changes nothing.
/// - **Read-only for known keys**: a request for a known key takes a shared
///   read lock and writes nothing but the limiter's own state.
/// - **Keys are independent**: one key's flood never limits another key.
/// - **Fast**: 64 shards under read-write locks; a known key takes a shared
///   read lock and then the limiter's lock-free path. Each entry holds only
///   the key and the limiter (24 bytes for a `u64` key and a token bucket).
///
/// All limiters must read the same clock as the map: the factory's first
/// limiter lends its clock to the map (the default clocks are process-wide,
/// a [`ManualClock`](crate::ManualClock) must be cloned into the factory).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use seckill_ratelimit::{Keyed, TokenBucket};
///
/// let per_ip: Keyed<String, TokenBucket> = Keyed::new(|| TokenBucket::new(5, 10))
///     .max_keys(1_000_000)
///     .idle_ttl(Duration::from_secs(60));
/// let ip = "203.0.113.7".to_string();
/// for _ in 0..10 {
///     per_ip.try_acquire(&ip, 1).unwrap();
/// }
/// assert!(per_ip.try_acquire(&ip, 1).is_err());
/// assert!(per_ip.try_acquire("198.51.100.1", 1).is_ok()); // another key
/// ```
pub struct Keyed<K, L: Limiter, S = RandomState> {
    shards: Box<[PaddedShard<K, L>]>,
    per_shard: usize,
    idle_ttl: u64,
    factory: Box<dyn Fn() -> L + Send + Sync>,
    clock: L::Clock,
    hasher: S,
}

/// One shard per 128 bytes, so two threads reading different shards never
/// write to the same cache line when they take the read lock (128: adjacent
/// lines are prefetched in pairs on x86).
#[repr(align(128))]
struct Padded<T>(T);

type PaddedShard<K, L> = Padded<RwLock<Shard<K, L>>>;

struct Shard<K, L> {
    table: HashTable<Entry<K, L>>,
    next_sweep: u64,
}

struct Entry<K, L> {
    key: K,
    limiter: L,
}

impl<K, L: Limiter> Keyed<K, L, RandomState>
where
    K: Hash + Eq + Send + Sync,
{
    /// A map building each key's limiter with `factory`, holding at most
    /// 100,000 keys and dropping keys idle for 60 s (change both with the
    /// builder methods).
    pub fn new(factory: impl Fn() -> L + Send + Sync + 'static) -> Self {
        Self::with_hasher(factory, RandomState::new())
    }
}

impl<K, L: Limiter, S: BuildHasher> Keyed<K, L, S>
where
    K: Hash + Eq + Send + Sync,
{
    /// Like [`Keyed::new`] with your own hasher (a faster one than SipHash
    /// when keys are not attacker-controlled).
    pub fn with_hasher(factory: impl Fn() -> L + Send + Sync + 'static, hasher: S) -> Self {
        let clock = factory().clock().clone();
        let mut keyed = Self {
            shards: Box::new([]),
            per_shard: 0,
            idle_ttl: saturating_nanos(DEFAULT_IDLE_TTL),
            factory: Box::new(factory),
            clock,
            hasher,
        };
        keyed.reshard(DEFAULT_MAX_KEYS);
        keyed
    }

    /// At most `max_keys` keys are held (at least 1). Set it before use: it
    /// empties the map.
    #[must_use]
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.reshard(max_keys.max(1));
        self
    }

    /// Keys whose limiter has been back in its initial state for `idle_ttl`
    /// are dropped (default 60 s; zero drops them as soon as they are idle).
    #[must_use]
    pub fn idle_ttl(mut self, idle_ttl: Duration) -> Self {
        self.idle_ttl = saturating_nanos(idle_ttl);
        self
    }

    fn reshard(&mut self, max_keys: usize) {
        // A power of two no larger than max_keys, so shards × per_shard ≤ max_keys.
        let mut shards = MAX_SHARDS;
        while shards > max_keys {
            shards /= 2;
        }
        self.per_shard = max_keys / shards;
        self.shards = (0..shards)
            .map(|_| {
                Padded(RwLock::new(Shard {
                    table: HashTable::new(),
                    next_sweep: 0,
                }))
            })
            .collect();
    }

    /// Admits `n` units for `key` or says how long to wait; the key's limiter
    /// is built on first use.
    ///
    /// # Errors
    ///
    /// The key's limiter's [`Denied`].
    #[inline]
    pub fn try_acquire<Q>(&self, key: &Q, n: u32) -> Result<(), Denied>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let now = self.clock.now();
        let hash = self.hasher.hash_one(key);
        let shard = self.shard(hash);
        {
            let guard = read(shard);
            if let Some(entry) = guard.table.find(hash, |e| e.key.borrow() == key) {
                return entry.limiter.try_acquire_at(n, now);
            }
        }
        self.insert_and_acquire(shard, hash, key, n, now)
    }

    /// The first request for a key: builds its limiter under the shard's
    /// write lock, making room first when the shard is full.
    #[cold]
    #[inline(never)]
    fn insert_and_acquire<Q>(
        &self,
        shard: &RwLock<Shard<K, L>>,
        hash: u64,
        key: &Q,
        n: u32,
        now: u64,
    ) -> Result<(), Denied>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let mut guard = write(shard);
        if let Some(entry) = guard.table.find(hash, |e| e.key.borrow() == key) {
            return entry.limiter.try_acquire_at(n, now);
        }
        if now >= guard.next_sweep {
            guard.evict_idle(now, self.idle_ttl);
        }
        if guard.table.len() >= self.per_shard {
            guard.make_room(now, self.idle_ttl, self.per_shard);
        }
        let entry = Entry {
            key: key.to_owned(),
            limiter: (self.factory)(),
        };
        let decision = entry.limiter.try_acquire_at(n, now);
        guard
            .table
            .insert_unique(hash, entry, |e| self.hasher.hash_one(&e.key));
        decision
    }

    /// Drops every key whose limiter has been back in its initial state for
    /// `idle_ttl`; returns how many were dropped.
    pub fn evict_idle(&self) -> usize {
        let now = self.clock.now();
        self.shards
            .iter()
            .map(|shard| write(&shard.0).evict_idle(now, self.idle_ttl))
            .sum()
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| read(&s.0).table.len()).sum()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `key` has a limiter now.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hasher.hash_one(key);
        read(self.shard(hash))
            .table
            .find(hash, |e| e.key.borrow() == key)
            .is_some()
    }

    /// Forgets `key`'s limiter (its next request starts afresh); returns whether it was held.
    pub fn remove<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hasher.hash_one(key);
        write(self.shard(hash))
            .table
            .find_entry(hash, |e| e.key.borrow() == key)
            .map(|occupied| occupied.remove())
            .is_ok()
    }

    fn shard(&self, hash: u64) -> &RwLock<Shard<K, L>> {
        // Middle bits: hashbrown uses the lowest bits for the bucket and the
        // highest seven as the tag inside a shard.
        // The shard count is a power of two, so the mask keeps the index in range.
        let index = (hash >> 32) as usize & (self.shards.len() - 1);
        &self.shards[index].0
    }
}

impl<K, L: Limiter> Shard<K, L> {
    fn evict_idle(&mut self, now: u64, idle_ttl: u64) -> usize {
        self.next_sweep = now.saturating_add(idle_ttl / 4);
        let before = self.table.len();
        self.table
            .retain(|e| e.limiter.idle_from(now).saturating_add(idle_ttl) > now);
        before - self.table.len()
    }

    /// Frees at least one place: idle keys first, then the quarter of the
    /// shard that has been idle longest (or will be idle soonest).
    fn make_room(&mut self, now: u64, idle_ttl: u64, per_shard: usize) {
        self.evict_idle(now, idle_ttl);
        if self.table.len() < per_shard {
            return;
        }
        let mut ages: Vec<u64> = self
            .table
            .iter()
            .map(|e| e.limiter.idle_from(now))
            .collect();
        if ages.is_empty() {
            return;
        }
        let cut = ages.len() / 4;
        let (_, threshold, _) = ages.select_nth_unstable(cut);
        let threshold = *threshold;
        let mut to_drop = cut.max(1);
        self.table.retain(|e| {
            if to_drop > 0 && e.limiter.idle_from(now) <= threshold {
                to_drop -= 1;
                false
            } else {
                true
            }
        });
    }
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    // A panic in a user's Hash or Eq leaves the table consistent: keep going.
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<K, L: Limiter, S> std::fmt::Debug for Keyed<K, L, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyed")
            .field("shards", &self.shards.len())
            .field("max_keys", &(self.per_shard * self.shards.len()))
            .field("idle_ttl", &Duration::from_nanos(self.idle_ttl))
            .finish_non_exhaustive()
    }
}
