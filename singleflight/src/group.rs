//! [`Group`]: the public handle.

use std::borrow::Borrow;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use crate::error::Error;
use crate::flight::{Flight, lead, wait};
use crate::shards::{Role, Shards};

/// Deduplicates concurrent executions by key.
///
/// While a closure for a key is running, every other [`run`](Group::run) for
/// that key waits for its outcome instead of running its own closure. When
/// the execution ends, the key is free: the next call runs again (a `Group`
/// is not a cache).
///
/// `Group` is a cheap handle: clones share the same executions. It is
/// `Send + Sync` when `K`, `V` and `E` are `Send`.
///
/// # Examples
///
/// ```
/// use seckill_singleflight::Group;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let group: Group<u64, String, std::io::ErrorKind> = Group::new();
/// let name = group
///     .run(42, || async { Ok("sku-42".to_string()) })
///     .await
///     .unwrap();
/// assert_eq!(name, "sku-42");
/// # }
/// ```
pub struct Group<K, V, E, S = RandomState> {
    inner: Arc<Inner<K, V, E, S>>,
}

struct Inner<K, V, E, S> {
    shards: Shards<K, V, E>,
    hasher: S,
}

impl<K, V, E> Group<K, V, E> {
    /// Creates an empty group with the standard library's randomly seeded hasher.
    ///
    /// A group takes no numeric settings: its 64 shards are fixed and it
    /// holds only one entry per key in flight and one slot per waiting
    /// caller, both freed when the execution ends.
    pub fn new() -> Self {
        Self::with_hasher(RandomState::new())
    }
}

impl<K, V, E> Default for Group<K, V, E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V, E, S> Clone for Group<K, V, E, S> {
    fn clone(&self) -> Self {
        Group {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K, V, E, S> fmt::Debug for Group<K, V, E, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("in_flight", &self.inner.shards.len())
            .finish()
    }
}

impl<K, V, E, S> Group<K, V, E, S> {
    /// Creates an empty group that hashes keys with `hasher`.
    ///
    /// Any `BuildHasher` works, a weak one too: the shard is chosen from a
    /// mix of every bit of the hash, so an identity hasher for integer keys
    /// still spreads them over all 64 shards.
    pub fn with_hasher(hasher: S) -> Self {
        Group {
            inner: Arc::new(Inner {
                shards: Shards::new(),
                hasher,
            }),
        }
    }

    /// Number of keys with an execution in flight right now.
    pub fn len(&self) -> usize {
        self.inner.shards.len()
    }

    /// Whether no execution is in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K, V, E, S> Group<K, V, E, S>
where
    K: Hash + Eq,
    V: Clone,
    E: Clone,
    S: BuildHasher,
{
    /// Runs `make` for `key` unless an execution for `key` is in flight, in
    /// which case waits for that execution's outcome instead.
    ///
    /// Exactly one caller among the concurrent callers of a key runs its
    /// closure (the leader); the others get a clone of its value or error.
    ///
    /// # Errors
    ///
    /// - [`Error::Failed`] with the execution's error (cloned to every caller).
    /// - [`Error::Panicked`] when the execution panicked while this caller
    ///   was waiting for it.
    ///
    /// # Panics
    ///
    /// Only when this caller's own closure, or the future it returned,
    /// panics: the panic is caught long enough to tell the waiters, then
    /// resumed on this task (so `tokio::spawn` reports it in the `JoinError`
    /// as usual).
    ///
    /// # Cancel safety
    ///
    /// Dropping the returned future never strands other callers. A dropped
    /// waiter just leaves. A dropped leader drops its closure's future and
    /// hands the key to its waiters: the first to notice runs its own
    /// closure and the rest wait on that one, so they never see an error
    /// caused by the leader's cancellation. With nobody waiting, the key is
    /// freed. Callers whose closures are not safe to run again after a
    /// partial run should not cancel the leader.
    ///
    /// A closure must not call `run` for its own key on the same group: it
    /// would wait for itself forever (as with Go's `singleflight`).
    ///
    /// # Examples
    ///
    /// Concurrent loads of one hot key run once:
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use seckill_singleflight::Group;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let group: Group<&str, u64, String> = Group::new();
    /// let loads = AtomicUsize::new(0);
    /// let load = || async {
    ///     loads.fetch_add(1, Ordering::SeqCst);
    ///     tokio::task::yield_now().await; // stands for a database round trip
    ///     Ok(100)
    /// };
    /// let (a, b) = tokio::join!(group.run("sku:1", load), group.run("sku:1", load));
    /// assert_eq!((a, b), (Ok(100), Ok(100)));
    /// assert_eq!(loads.load(Ordering::SeqCst), 1);
    /// # }
    /// ```
    pub async fn run<F, Fut>(&self, key: K, make: F) -> Result<V, Error<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        let hash = self.inner.hasher.hash_one(&key);
        let shards = &self.inner.shards;
        match shards.join(hash, key) {
            Role::Leader(call) => lead(Flight { shards, hash, call }, make).await,
            Role::Waiter(call) => wait(Flight { shards, hash, call }, make).await,
        }
    }

    /// Detaches the execution in flight for `key`, if any, so that the next
    /// call for `key` starts a fresh execution even while it runs.
    ///
    /// Callers already waiting on the detached execution still get its
    /// outcome; only new callers are affected. Use it when the data the
    /// execution reads has just changed and its answer would be stale.
    ///
    /// # Examples
    ///
    /// ```
    /// use seckill_singleflight::Group;
    ///
    /// let group: Group<String, u64, ()> = Group::new();
    /// group.forget("sku:1"); // nothing in flight: a no-op
    /// assert!(group.is_empty());
    /// ```
    pub fn forget<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.inner
            .shards
            .forget(self.inner.hasher.hash_one(key), key);
    }

    /// Whether an execution for `key` is in flight.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.inner
            .shards
            .contains(self.inner.hasher.hash_one(key), key)
    }

    /// How many callers are waiting on the execution in flight for `key`
    /// (the leader is not counted); 0 when none is in flight.
    pub fn waiters<Q>(&self, key: &Q) -> usize
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.inner
            .shards
            .waiters(self.inner.hasher.hash_one(key), key)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::future::{Future, pending};
    use std::pin::pin;
    use std::task::{Context, Waker};

    use super::*;

    #[test]
    fn waiters_coming_and_going_on_a_stuck_execution_keep_memory_bounded() {
        let group: Group<u64, u64, ()> = Group::new();
        let mut cx = Context::from_waker(Waker::noop());
        let mut leader = pin!(group.run(1, pending));
        assert!(leader.as_mut().poll(&mut cx).is_pending());
        // 10,000 callers, each waits (registers its waker) and gives up
        // (a timeout), while the leader's load never finishes.
        for _ in 0..10_000 {
            let mut waiter = Box::pin(group.run(1, pending));
            assert!(waiter.as_mut().poll(&mut cx).is_pending());
            assert_eq!(group.waiters(&1), 1);
        }
        assert_eq!(group.waiters(&1), 0);
        let hash = group.inner.hasher.hash_one(1u64);
        let call = group.inner.shards.call(hash, &1).unwrap();
        // One slot, reused by each waiter in turn (it was 10,000 before).
        assert_eq!(call.waker_slots(), 1);

        // 100 waiting at once, then leaving: at most 100 slots, ever.
        let mut waiters: Vec<_> = (0..100).map(|_| Box::pin(group.run(1, pending))).collect();
        for round in 0..50 {
            for waiter in &mut waiters {
                assert!(waiter.as_mut().poll(&mut cx).is_pending());
            }
            assert_eq!(group.waiters(&1), 100, "round {round}");
            waiters = (0..100).map(|_| Box::pin(group.run(1, pending))).collect();
        }
        drop(waiters);
        assert_eq!(call.waker_slots(), 100);
        assert_eq!(group.waiters(&1), 0);
    }
}
