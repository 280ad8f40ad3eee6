//! The two roles a caller can take for a key, leader and waiter, each with a
//! drop guard so that a cancelled caller never strands the others.

use std::future::{Future, poll_fn};
use std::hash::Hash;
use std::sync::Arc;

use crate::call::{Call, Seen, Ticket};
use crate::catch_panic::run_catching;
use crate::error::Error;
use crate::shards::{Shards, remove_call};

/// Runs `make` as the leader of `call` and publishes the outcome.
///
/// If the future is dropped before the closure finishes, the waiters are
/// handed the call and one of them takes over. If the closure panics, the
/// waiters get [`Error::Panicked`] and the panic resumes here.
pub(crate) async fn lead<K, V, E, F, Fut>(
    shards: &Shards<K, V, E>,
    hash: u64,
    call: Arc<Call<V, E>>,
    make: F,
) -> Result<V, Error<E>>
where
    K: Eq,
    V: Clone,
    E: Clone,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<V, E>>,
{
    let guard = LeaderGuard {
        shards,
        hash,
        call,
        finished: false,
    };
    match run_catching(make).await {
        Ok(result) => {
            let outcome = result.map_err(Error::Failed);
            guard.finish(&outcome);
            outcome
        }
        Err(payload) => {
            guard.finish(&Err(Error::Panicked));
            std::panic::resume_unwind(payload)
        }
    }
}

/// Waits on `call` as a registered waiter; takes over with `make` if the
/// leader is dropped.
pub(crate) async fn wait<K, V, E, F, Fut>(
    shards: &Shards<K, V, E>,
    hash: u64,
    call: Arc<Call<V, E>>,
    make: F,
) -> Result<V, Error<E>>
where
    K: Eq + Hash,
    V: Clone,
    E: Clone,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<V, E>>,
{
    let mut guard = WaiterGuard {
        shards,
        hash,
        call,
        ticket: None,
        registered: true,
    };
    let seen = poll_fn(|cx| guard.call.poll_seen(&mut guard.ticket, cx)).await;
    // Either way this caller is no longer a registered waiter: `poll_seen`
    // took it off the count when it made it the leader.
    guard.registered = false;
    match seen {
        Seen::Outcome(outcome) => outcome,
        Seen::Lead => lead(shards, hash, Arc::clone(&guard.call), make).await,
    }
}

/// Held by the leader while its closure runs.
struct LeaderGuard<'a, K, V, E> {
    shards: &'a Shards<K, V, E>,
    hash: u64,
    call: Arc<Call<V, E>>,
    finished: bool,
}

impl<K: Eq, V, E> LeaderGuard<'_, K, V, E> {
    /// Frees the key for fresh executions, then hands `outcome` to the waiters.
    fn finish(mut self, outcome: &Result<V, Error<E>>)
    where
        V: Clone,
        E: Clone,
    {
        self.finished = true;
        remove_call(&mut self.shards.lock(self.hash), self.hash, &self.call);
        self.call.finish(outcome);
    }
}

impl<K, V, E> Drop for LeaderGuard<'_, K, V, E> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let mut table = self.shards.lock(self.hash);
        if self.call.abandon() {
            remove_call(&mut table, self.hash, &self.call);
        }
    }
}

/// Held by a waiter until it has its outcome or becomes the leader.
struct WaiterGuard<'a, K, V, E> {
    shards: &'a Shards<K, V, E>,
    hash: u64,
    call: Arc<Call<V, E>>,
    ticket: Option<Ticket>,
    registered: bool,
}

impl<K, V, E> Drop for WaiterGuard<'_, K, V, E> {
    fn drop(&mut self) {
        if !self.registered {
            return;
        }
        let mut table = self.shards.lock(self.hash);
        if self.call.leave(self.ticket) {
            remove_call(&mut table, self.hash, &self.call);
        }
    }
}
