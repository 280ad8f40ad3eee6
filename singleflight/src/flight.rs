//! The two roles a caller can take for a key, leader and waiter, each with a
//! drop guard so that a cancelled caller never strands the others.
//!
//! Every caller's future is stored by its executor (often a thousand at a
//! time for one hot key), so these futures are kept small: the handle to
//! the call is passed by value into the guard that owns it, never copied
//! into arguments beside it.

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::Arc;

use crate::call::{Call, Seen, Ticket};
use crate::catch_panic::{call_catching, poll_catching};
use crate::error::Error;
use crate::shards::{Shards, remove_call};

/// A caller's handle on the execution it leads or waits for.
pub(crate) struct Flight<'a, K, V, E> {
    pub(crate) shards: &'a Shards<K, V, E>,
    pub(crate) hash: u64,
    pub(crate) call: Arc<Call<V, E>>,
}

// Not derived: a derive would require `K`, `V` and `E` to be `Clone`.
impl<K, V, E> Clone for Flight<'_, K, V, E> {
    fn clone(&self) -> Self {
        Flight {
            shards: self.shards,
            hash: self.hash,
            call: Arc::clone(&self.call),
        }
    }
}

/// Runs `make` as the leader of the flight and publishes the outcome.
///
/// If the future is dropped before the closure finishes, the waiters are
/// handed the call and one of them takes over. If the closure panics, the
/// waiters get [`Error::Panicked`] and the panic resumes here.
pub(crate) async fn lead<K, V, E, F, Fut>(
    flight: Flight<'_, K, V, E>,
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
        flight,
        finished: false,
    };
    // Written out here rather than as a helper `async fn`: each nested async
    // fn would store its own copy of its arguments in every caller's future.
    let fut = match call_catching(make) {
        Ok(fut) => fut,
        Err(payload) => {
            guard.finish(&Err(Error::Panicked));
            std::panic::resume_unwind(payload)
        }
    };
    let mut fut = pin!(fut);
    match poll_fn(|cx| poll_catching(fut.as_mut(), cx)).await {
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

/// Waits on the flight as a registered waiter; takes over with `make` if
/// the leader is dropped.
pub(crate) async fn wait<K, V, E, F, Fut>(
    flight: Flight<'_, K, V, E>,
    make: F,
) -> Result<V, Error<E>>
where
    K: Eq,
    V: Clone,
    E: Clone,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<V, E>>,
{
    let mut guard = WaiterGuard {
        flight,
        ticket: None,
        registered: true,
    };
    let seen = poll_fn(|cx| guard.flight.call.poll_seen(&mut guard.ticket, cx)).await;
    // Either way this caller is no longer a registered waiter: `poll_seen`
    // took it off the count when it made it the leader.
    guard.registered = false;
    match seen {
        Seen::Outcome(outcome) => outcome,
        // Boxed: taking over is rare, and inlining a second copy of the
        // closure's future would double the size of every caller's future.
        Seen::Lead => Box::pin(lead(guard.flight.clone(), make)).await,
    }
}

/// Held by the leader while its closure runs.
struct LeaderGuard<'a, K, V, E> {
    flight: Flight<'a, K, V, E>,
    finished: bool,
}

impl<K, V, E> LeaderGuard<'_, K, V, E> {
    /// Frees the key for fresh executions, then hands `outcome` to the waiters.
    fn finish(mut self, outcome: &Result<V, Error<E>>)
    where
        V: Clone,
        E: Clone,
    {
        self.finished = true;
        let Flight { shards, hash, call } = &self.flight;
        remove_call(&mut shards.lock(*hash), *hash, call);
        call.finish(outcome);
    }
}

impl<K, V, E> Drop for LeaderGuard<'_, K, V, E> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let Flight { shards, hash, call } = &self.flight;
        let mut table = shards.lock(*hash);
        if call.abandon() {
            remove_call(&mut table, *hash, call);
        }
    }
}

/// Held by a waiter until it has its outcome or becomes the leader.
struct WaiterGuard<'a, K, V, E> {
    flight: Flight<'a, K, V, E>,
    ticket: Option<Ticket>,
    /// Whether the waiter still counts among the call's waiters.
    registered: bool,
}

impl<K, V, E> Drop for WaiterGuard<'_, K, V, E> {
    fn drop(&mut self) {
        if !self.registered {
            return;
        }
        let Flight { shards, hash, call } = &self.flight;
        let mut table = shards.lock(*hash);
        if call.leave(self.ticket) {
            remove_call(&mut table, *hash, call);
        }
    }
}
