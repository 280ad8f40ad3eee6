//! One limiter per key (per IP, per user, per device), in a bounded map.

use std::borrow::Borrow;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use hashbrown::HashTable;

use crate::clock::{Clock, saturating_nanos};
use crate::error::{ConfigError, Denied};
use crate::limiter::KeyedLimiter;

const SHARDS: usize = 64;
const DEFAULT_MAX_KEYS: usize = 100_000;
const DEFAULT_IDLE_TTL: Duration = Duration::from_secs(60);

/// The largest `max_keys` a [`Keyed`] map accepts: 16,777,216 keys.
pub const MAX_KEYS: usize = 1 << 24;

/// The longest `idle_ttl` a [`Keyed`] map accepts: `u64::MAX` nanoseconds
/// (about 584 years); [`Keyed::idle_ttl`] saturates longer ones to it.
pub const MAX_IDLE_TTL: Duration = Duration::from_nanos(u64::MAX);

/// A limiter per key, in a map that never holds more than `max_keys` keys.
///
/// The map holds one limiter, the template, and per key only its state
/// ([`KeyedLimiter::State`]): a key seen for the first time starts as the
/// template was built (a full bucket, an empty window), and the template's
/// settings apply to every key. For a token or leaky bucket or a fixed
/// window the state is 8 bytes, so a `u64` key costs 16 bytes in the table.
///
/// - **Capacity is exactly `max_keys`**: no key is ever evicted to make room
///   while the map holds fewer than `max_keys` keys, whatever the size and
///   however the keys hash (the bound is one count for the whole map, not a
///   share per shard).
/// - **Bounded**: a flood of distinct keys (spoofed IPs, random user ids)
///   cannot grow memory past `max_keys`. When the map is full, the next new
///   key makes room for about an eighth of `max_keys` (at least one) in one
///   pass over the map: every idle key goes (dropping it changes nothing),
///   and only if that is not enough, the keys whose limiters will be back
///   in their initial state soonest. Eviction follows the keys'
///   [`KeyedLimiter::state_idle_from`] across the whole map: a key that is still being
///   limited (an emptied bucket, a full window) is never dropped while an
///   idle key or a key closer to idle is kept, so a flood of new keys cannot
///   reset an attacker's own limit. The pass costs two visits per key held
///   (and, while it runs, 8 bytes per key held), spread over the next
///   `max_keys / 8` new keys.
/// - **Idle keys leave**: a key whose limiter has been back in its initial
///   state (a full bucket, an empty window) for `idle_ttl` is dropped by the
///   next sweep of its shard (shards sweep themselves as new keys arrive, at
///   most once per `idle_ttl / 4`), or by [`Keyed::evict_idle`].
/// - **Read-only for known keys**: a request for a known key takes a shared
///   read lock on one of 64 shards and writes nothing but the limiter's own
///   state.
/// - **Keys are independent**: one key's flood never limits another key.
///
/// The map reads the template's clock.
///
/// Configuration (validated by the `try_` builders, clamped by the others):
///
/// | setting | valid range | default |
/// |---|---|---|
/// | `max_keys` | 1 to [`MAX_KEYS`] (16,777,216) | 100,000 |
/// | `idle_ttl` | 0 to [`MAX_IDLE_TTL`] (`u64::MAX` ns, about 584 years) | 60 s |
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use seckill_ratelimit::{Keyed, TokenBucket};
///
/// let per_ip: Keyed<String, TokenBucket> = Keyed::new(TokenBucket::new(5, 10))
///     .max_keys(1_000_000)
///     .idle_ttl(Duration::from_secs(60));
/// let ip = "203.0.113.7".to_string();
/// for _ in 0..10 {
///     per_ip.try_acquire(&ip, 1).unwrap();
/// }
/// assert!(per_ip.try_acquire(&ip, 1).is_err());
/// assert!(per_ip.try_acquire("198.51.100.1", 1).is_ok()); // another key
/// ```
pub struct Keyed<K, L: KeyedLimiter, S = RandomState> {
    shards: Box<[PaddedShard<K, L::State>]>,
    /// Keys held plus places reserved by inserts in progress; never above `max_keys`.
    len: Padded<AtomicUsize>,
    max_keys: usize,
    /// Held by the one thread making room when the map is full.
    evicting: Mutex<()>,
    idle_ttl: u64,
    /// The settings every key's state is read with.
    limiter: L,
    hasher: S,
}

/// One shard per 128 bytes, so two threads reading different shards never
/// write to the same cache line when they take the read lock (128: adjacent
/// lines are prefetched in pairs on x86).
#[repr(align(128))]
struct Padded<T>(T);

type PaddedShard<K, St> = Padded<RwLock<Shard<K, St>>>;

struct Shard<K, St> {
    table: HashTable<Entry<K, St>>,
    next_sweep: u64,
}

struct Entry<K, St> {
    key: K,
    state: St,
}

impl<K, L: KeyedLimiter> Keyed<K, L, RandomState>
where
    K: Hash + Eq + Send + Sync,
{
    /// A map giving each key a limiter with `limiter`'s settings (in the
    /// state `limiter` was built in), holding at most 100,000 keys and
    /// dropping keys idle for 60 s (change both with the builder methods).
    pub fn new(limiter: L) -> Self {
        Self::with_hasher(limiter, RandomState::new())
    }
}

impl<K, L: KeyedLimiter, S: BuildHasher> Keyed<K, L, S>
where
    K: Hash + Eq + Send + Sync,
{
    /// Like [`Keyed::new`] with your own hasher (a faster one than SipHash
    /// when keys are not attacker-controlled).
    pub fn with_hasher(limiter: L, hasher: S) -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| {
                    Padded(RwLock::new(Shard {
                        table: HashTable::new(),
                        next_sweep: 0,
                    }))
                })
                .collect(),
            len: Padded(AtomicUsize::new(0)),
            max_keys: DEFAULT_MAX_KEYS,
            evicting: Mutex::new(()),
            idle_ttl: saturating_nanos(DEFAULT_IDLE_TTL),
            limiter,
            hasher,
        }
    }

    /// At most `max_keys` keys are held; valid range 1 to [`MAX_KEYS`]
    /// (16,777,216), default 100,000. A value outside it is clamped into it;
    /// [`Keyed::try_max_keys`] rejects it instead. Set it before use: it
    /// empties the map.
    #[must_use]
    pub fn max_keys(self, max_keys: usize) -> Self {
        self.set_max_keys(max_keys.clamp(1, MAX_KEYS))
    }

    /// Like [`Keyed::max_keys`], rejecting a value outside 1 to [`MAX_KEYS`].
    ///
    /// # Errors
    ///
    /// [`ConfigError::OutOfRange`] naming `max_keys` and its range.
    ///
    /// # Examples
    ///
    /// ```
    /// use seckill_ratelimit::{Keyed, TokenBucket};
    ///
    /// let err = Keyed::<u64, TokenBucket>::new(TokenBucket::new(5, 10))
    ///     .try_max_keys(0)
    ///     .unwrap_err();
    /// assert_eq!(err.to_string(), "max_keys must be 1 to 16777216, got 0");
    /// ```
    pub fn try_max_keys(self, max_keys: usize) -> Result<Self, ConfigError> {
        if !(1..=MAX_KEYS).contains(&max_keys) {
            return Err(ConfigError::OutOfRange {
                field: "max_keys",
                range: "1 to 16777216",
                got: u64::try_from(max_keys).unwrap_or(u64::MAX),
            });
        }
        Ok(self.set_max_keys(max_keys))
    }

    fn set_max_keys(mut self, max_keys: usize) -> Self {
        for shard in self.shards.iter_mut() {
            let shard = shard.0.get_mut().unwrap_or_else(PoisonError::into_inner);
            shard.table = HashTable::new();
            shard.next_sweep = 0;
        }
        *self.len.0.get_mut() = 0;
        self.max_keys = max_keys;
        self
    }

    /// Keys whose limiter has been back in its initial state for `idle_ttl`
    /// are dropped; valid range 0 to [`MAX_IDLE_TTL`] (about 584 years),
    /// default 60 s, zero drops them as soon as they are idle. A longer
    /// duration is saturated to [`MAX_IDLE_TTL`]; [`Keyed::try_idle_ttl`]
    /// rejects it instead.
    #[must_use]
    pub fn idle_ttl(mut self, idle_ttl: Duration) -> Self {
        self.idle_ttl = saturating_nanos(idle_ttl);
        self
    }

    /// Like [`Keyed::idle_ttl`], rejecting a duration above [`MAX_IDLE_TTL`].
    ///
    /// # Errors
    ///
    /// [`ConfigError::DurationOutOfRange`] naming `idle_ttl` and its range.
    pub fn try_idle_ttl(self, idle_ttl: Duration) -> Result<Self, ConfigError> {
        if idle_ttl > MAX_IDLE_TTL {
            return Err(ConfigError::DurationOutOfRange {
                field: "idle_ttl",
                range: "0 to 18446744073709551615 ns (about 584 years)",
                got: idle_ttl,
            });
        }
        Ok(self.idle_ttl(idle_ttl))
    }

    /// The most keys the map holds (`max_keys`).
    pub fn capacity(&self) -> usize {
        self.max_keys
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
        let now = self.limiter.clock().now();
        let hash = self.hasher.hash_one(key);
        let shard = self.shard(hash);
        {
            let guard = read(shard);
            if let Some(entry) = guard.table.find(hash, |e| e.key.borrow() == key) {
                return self.limiter.try_acquire_state(&entry.state, n, now);
            }
        }
        self.insert_and_acquire(shard, hash, key, n, now)
    }

    /// The first request for a key: reserves a place (making room when the
    /// map is full), then builds its limiter under the shard's write lock.
    #[cold]
    #[inline(never)]
    fn insert_and_acquire<Q>(
        &self,
        shard: &RwLock<Shard<K, L::State>>,
        hash: u64,
        key: &Q,
        n: u32,
        now: u64,
    ) -> Result<(), Denied>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        // Built before a place is reserved, so a panicking `new_state` cannot
        // leak a reservation.
        let mut entry = None;
        let mut reserved = false;
        loop {
            let mut guard = write(shard);
            if let Some(found) = guard.table.find(hash, |e| e.key.borrow() == key) {
                if reserved {
                    self.len.0.fetch_sub(1, Ordering::AcqRel);
                }
                return self.limiter.try_acquire_state(&found.state, n, now);
            }
            if now >= guard.next_sweep {
                let dropped = guard.evict_idle(&self.limiter, now, self.idle_ttl);
                self.len.0.fetch_sub(dropped, Ordering::AcqRel);
            }
            let new = entry.take().unwrap_or_else(|| Entry {
                key: key.to_owned(),
                state: self.limiter.new_state(),
            });
            if !reserved {
                reserved = self.try_reserve();
            }
            if reserved {
                let decision = self.limiter.try_acquire_state(&new.state, n, now);
                guard
                    .table
                    .insert_unique(hash, new, |e| self.hasher.hash_one(&e.key));
                return decision;
            }
            entry = Some(new);
            // Full: make room without holding a shard lock (the pass takes
            // every shard's lock in turn), then look for the key again.
            drop(guard);
            self.make_room(now);
            reserved = true;
        }
    }

    /// Takes one place if the map is not full.
    fn try_reserve(&self) -> bool {
        self.len
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |len| {
                (len < self.max_keys).then_some(len + 1)
            })
            .is_ok()
    }

    /// Frees places for about `max_keys / 8` new keys (at least one) and
    /// returns holding one reserved place for the caller.
    #[cold]
    fn make_room(&self, now: u64) {
        let _evicting = self.evicting.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            // Another thread may have made room while this one waited.
            if self.try_reserve() {
                return;
            }
            let batch = (self.max_keys / 8).max(1);
            let mut ages: Vec<u64> =
                Vec::with_capacity(self.len.0.load(Ordering::Acquire).min(self.max_keys));
            for shard in self.shards.iter() {
                let guard = read(&shard.0);
                ages.extend(
                    guard
                        .table
                        .iter()
                        .map(|e| self.limiter.state_idle_from(&e.state, now)),
                );
            }
            if ages.is_empty() {
                // Every place is reserved by an insert in progress; they
                // finish without this lock.
                std::thread::yield_now();
                continue;
            }
            let index = batch.min(ages.len()) - 1;
            let (below, nth, _) = ages.select_nth_unstable(index);
            // Drop everything idle (harmless) and, when that is not `batch`
            // keys, the keys idle soonest: every key with idle_from below the
            // threshold, and as many at the threshold as `batch` still needs.
            let threshold = (*nth).max(now);
            let mut ties = if threshold > now {
                batch - below.iter().filter(|&&a| a < threshold).count()
            } else {
                usize::MAX
            };
            drop(ages);
            let mut dropped = 0;
            for shard in self.shards.iter() {
                let mut guard = write(&shard.0);
                guard.table.retain(|e| {
                    let from = self.limiter.state_idle_from(&e.state, now);
                    let keep = if from < threshold || from <= now {
                        false
                    } else if from == threshold && ties > 0 {
                        ties -= 1;
                        false
                    } else {
                        true
                    };
                    if !keep {
                        dropped += 1;
                    }
                    keep
                });
            }
            if dropped > 0 {
                // Keep one of the freed places for the caller.
                self.len.0.fetch_sub(dropped - 1, Ordering::AcqRel);
                return;
            }
        }
    }

    /// Drops every key whose limiter has been back in its initial state for
    /// `idle_ttl`; returns how many were dropped.
    pub fn evict_idle(&self) -> usize {
        let now = self.limiter.clock().now();
        let dropped = self
            .shards
            .iter()
            .map(|shard| write(&shard.0).evict_idle(&self.limiter, now, self.idle_ttl))
            .sum();
        self.len.0.fetch_sub(dropped, Ordering::AcqRel);
        dropped
    }

    /// Keys held now, counting the ones being inserted by other threads at
    /// this moment; never above `max_keys`.
    pub fn len(&self) -> usize {
        self.len.0.load(Ordering::Acquire)
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
        let removed = write(self.shard(hash))
            .table
            .find_entry(hash, |e| e.key.borrow() == key)
            .map(|occupied| occupied.remove())
            .is_ok();
        if removed {
            self.len.0.fetch_sub(1, Ordering::AcqRel);
        }
        removed
    }

    fn shard(&self, hash: u64) -> &RwLock<Shard<K, L::State>> {
        // Middle bits: hashbrown uses the lowest bits for the bucket and the
        // highest seven as the tag inside a shard. SHARDS is a power of two,
        // so the masked index is in range (the modulo keeps `get` infallible).
        let index = usize::from((hash >> 32) as u16) % SHARDS;
        &self.shards[index].0
    }
}

impl<K, St> Shard<K, St> {
    fn evict_idle<L: KeyedLimiter<State = St>>(
        &mut self,
        limiter: &L,
        now: u64,
        idle_ttl: u64,
    ) -> usize {
        self.next_sweep = now.saturating_add(idle_ttl / 4);
        let before = self.table.len();
        self.table.retain(|e| {
            limiter
                .state_idle_from(&e.state, now)
                .saturating_add(idle_ttl)
                > now
        });
        before - self.table.len()
    }
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    // A panic in a user's Hash or Eq leaves the table consistent: keep going.
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

impl<K, L: KeyedLimiter, S> std::fmt::Debug for Keyed<K, L, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyed")
            .field("shards", &self.shards.len())
            .field("max_keys", &self.max_keys)
            .field("idle_ttl", &Duration::from_nanos(self.idle_ttl))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FixedWindow, LeakyBucket, TokenBucket};

    /// A `u64` key and a bucket's or fixed window's state fill 16 bytes:
    /// four entries per cache line, none straddling two.
    #[test]
    fn entries_of_u64_keys_are_16_bytes() {
        assert_eq!(
            size_of::<Entry<u64, <TokenBucket as KeyedLimiter>::State>>(),
            16
        );
        assert_eq!(
            size_of::<Entry<u64, <LeakyBucket as KeyedLimiter>::State>>(),
            16
        );
        assert_eq!(
            size_of::<Entry<u64, <FixedWindow as KeyedLimiter>::State>>(),
            16
        );
    }
}
