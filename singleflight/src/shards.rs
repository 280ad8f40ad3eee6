//! The map from key to the execution in flight, split into independently
//! locked shards so that callers of different keys rarely meet on one lock.

use std::borrow::Borrow;
use std::sync::{Arc, Mutex, MutexGuard};

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;

use crate::call::Call;
use crate::lock::lock;

/// log2 of the number of shards per group.
const SHARD_BITS: u32 = 6;

/// Shards per group (64). A power of two; enough that a few hundred threads
/// hammering distinct keys seldom share a lock. Fixed: there is nothing to
/// configure, so nothing to validate.
const SHARDS: usize = 1 << SHARD_BITS;

/// An odd constant with well-spread bits (2^64 divided by the golden ratio):
/// multiplying by it carries every bit of a hash into the top bits.
const MIX: u64 = 0x9E37_79B9_7F4A_7C15;

/// The shard for `hash`.
///
/// Taken from the top bits of `hash * MIX` so that every bit of the hash
/// counts: a weak hasher (an identity hasher for integer keys, common with
/// `nohash`-style `BuildHasher`s) whose hashes differ only in their low bits
/// still spreads keys over every shard. hashbrown indexes buckets with the
/// hash's low bits and tags with its own top seven, which the product's top
/// bits do not repeat.
fn shard_index(hash: u64) -> usize {
    (hash.wrapping_mul(MIX) >> (u64::BITS - SHARD_BITS)) as usize
}

/// One key's slot: the precomputed hash (never recomputed on rehash), the
/// key and its execution.
pub(crate) struct Slot<K, V, E> {
    hash: u64,
    key: K,
    call: Arc<Call<V, E>>,
}

/// A shard's table, padded to its own cache line so neighbouring locks do
/// not bounce one line between cores.
#[repr(align(64))]
struct Shard<K, V, E>(Mutex<HashTable<Slot<K, V, E>>>);

/// The executions in flight, by key.
pub(crate) struct Shards<K, V, E> {
    shards: Box<[Shard<K, V, E>]>,
}

/// What a caller became when it arrived for a key.
pub(crate) enum Role<V, E> {
    /// No execution was in flight: this caller runs its closure.
    Leader(Arc<Call<V, E>>),
    /// An execution was in flight: this caller is registered as its waiter.
    Waiter(Arc<Call<V, E>>),
}

/// A locked shard.
pub(crate) type ShardGuard<'a, K, V, E> = MutexGuard<'a, HashTable<Slot<K, V, E>>>;

impl<K, V, E> Shards<K, V, E> {
    pub(crate) fn new() -> Self {
        Shards {
            shards: (0..SHARDS)
                .map(|_| Shard(Mutex::new(HashTable::new())))
                .collect(),
        }
    }

    /// Locks the shard that holds `hash`.
    pub(crate) fn lock(&self, hash: u64) -> ShardGuard<'_, K, V, E> {
        let index = shard_index(hash) % self.shards.len();
        lock(&self.shards[index].0)
    }

    /// Number of keys with an execution in flight.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|shard| lock(&shard.0).len()).sum()
    }
}

impl<K: Eq, V, E> Shards<K, V, E> {
    /// Joins the execution in flight for `key`, or registers a new one led
    /// by the caller.
    pub(crate) fn join(&self, hash: u64, key: K) -> Role<V, E> {
        let mut table = self.lock(hash);
        match table.entry(hash, |slot| slot.key == key, |slot| slot.hash) {
            Entry::Occupied(slot) => {
                let call = Arc::clone(&slot.get().call);
                call.add_waiter();
                Role::Waiter(call)
            }
            Entry::Vacant(vacant) => {
                let call = Arc::new(Call::new());
                vacant.insert(Slot {
                    hash,
                    key,
                    call: Arc::clone(&call),
                });
                Role::Leader(call)
            }
        }
    }

    /// Whether an execution for `key` is in flight.
    pub(crate) fn contains<Q>(&self, hash: u64, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.lock(hash)
            .find(hash, |slot| slot.key.borrow() == key)
            .is_some()
    }

    /// How many callers wait on the execution in flight for `key`.
    pub(crate) fn waiters<Q>(&self, hash: u64, key: &Q) -> usize
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.lock(hash)
            .find(hash, |slot| slot.key.borrow() == key)
            .map_or(0, |slot| slot.call.waiters())
    }

    /// The execution in flight for `key`, for tests.
    #[cfg(test)]
    pub(crate) fn call<Q>(&self, hash: u64, key: &Q) -> Option<Arc<Call<V, E>>>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.lock(hash)
            .find(hash, |slot| slot.key.borrow() == key)
            .map(|slot| Arc::clone(&slot.call))
    }

    /// Drops the entry for `key`, whatever execution it holds.
    pub(crate) fn forget<Q>(&self, hash: u64, key: &Q)
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let mut table = self.lock(hash);
        if let Ok(slot) = table.find_entry(hash, |slot| slot.key.borrow() == key) {
            slot.remove();
        }
    }
}

/// Removes the entry for `call` from a locked shard, if the entry at `hash`
/// is still that call's (a `forget` and a fresh execution may have replaced it).
pub(crate) fn remove_call<K, V, E>(
    table: &mut ShardGuard<'_, K, V, E>,
    hash: u64,
    call: &Arc<Call<V, E>>,
) {
    if let Ok(slot) = table.find_entry(hash, |slot| Arc::ptr_eq(&slot.call, call)) {
        slot.remove();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_that_differ_only_in_low_bits_use_every_shard() {
        // What an identity hasher gives for the keys 0..4096.
        let mut used = [0usize; SHARDS];
        for hash in 0..4_096u64 {
            used[shard_index(hash)] += 1;
        }
        assert!(used.iter().all(|&n| n > 0), "{used:?}");
        // And no shard gets more than twice its fair share (64 each).
        assert!(used.iter().all(|&n| n <= 128), "{used:?}");
    }

    #[test]
    fn hashes_that_differ_only_in_high_bits_use_every_shard() {
        let mut used = [0usize; SHARDS];
        for top in 0..4_096u64 {
            used[shard_index(top << 52)] += 1;
        }
        assert!(used.iter().all(|&n| n > 0), "{used:?}");
    }
}
