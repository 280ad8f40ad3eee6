//! One execution in flight: its phase, its waiters and how they are woken.

use std::mem;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};

use crate::error::Error;
use crate::lock::lock;

/// The shared state of one execution.
///
/// Lock order, everywhere: a shard's lock before a call's lock, never the
/// reverse. Neither lock is held across an `.await`, and wakers are woken
/// after the lock is released.
pub(crate) struct Call<V, E> {
    /// Callers registered on this call other than its leader.
    ///
    /// Raised only with the shard locked (a caller joins through the map),
    /// lowered only with this call locked; every decision that reads it
    /// holds the lock that orders it (see each method). An atomic rather
    /// than a field of `state` so that joining takes one lock, not two.
    waiters: AtomicUsize,
    state: Mutex<State<V, E>>,
}

struct State<V, E> {
    phase: Phase<V, E>,
    /// Wakers of waiters that saw the call running. A cancelled waiter
    /// clears its slot and puts its index on `free`, where the next waiter
    /// takes it: the list never holds more slots than the most waiters
    /// registered at once, however many come and go while one execution
    /// runs. Drained whenever the phase leaves `Running`.
    wakers: Vec<Option<Waker>>,
    /// Indices of cleared slots in `wakers`, for reuse in this generation.
    free: Vec<usize>,
    /// Bumped each time `wakers` is drained, so that old tickets are void.
    generation: u64,
}

enum Phase<V, E> {
    /// A leader is running its closure.
    Running,
    /// The leader was dropped before finishing; the first waiter to notice
    /// takes over with its own closure.
    Abandoned,
    /// The execution finished with this outcome; waiters clone it.
    Done(Result<V, Error<E>>),
    /// The execution ended and nobody was waiting for the outcome.
    Finished,
}

/// Where a waiter's waker sits in the list, while its generation lasts.
#[derive(Clone, Copy)]
pub(crate) struct Ticket {
    generation: u64,
    index: usize,
}

/// What a waiter found when it looked at the call.
pub(crate) enum Seen<V, E> {
    /// The outcome, cloned for this waiter.
    Outcome(Result<V, Error<E>>),
    /// The leader was dropped; this waiter is now the leader.
    Lead,
}

impl<V, E> Call<V, E> {
    pub(crate) fn new() -> Self {
        Call {
            waiters: AtomicUsize::new(0),
            state: Mutex::new(State {
                phase: Phase::Running,
                wakers: Vec::new(),
                free: Vec::new(),
                generation: 0,
            }),
        }
    }

    /// Registers one more waiter. Called with the call's shard locked.
    pub(crate) fn add_waiter(&self) {
        self.waiters.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn waiters(&self) -> usize {
        self.waiters.load(Ordering::Relaxed)
    }

    /// Lowers the waiter count and returns what is left. Called with the
    /// call locked; a read-modify-write because joins may run concurrently.
    fn remove_waiter(&self) -> usize {
        match self
            .waiters
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        {
            Ok(before) => before - 1,
            Err(_) => 0,
        }
    }

    /// A registered waiter looks at the phase: it takes a clone of the
    /// outcome, or becomes the leader if the leader is gone (leaving the
    /// waiter count), or leaves its waker to be woken on the next change.
    pub(crate) fn poll_seen(
        &self,
        ticket: &mut Option<Ticket>,
        cx: &mut Context<'_>,
    ) -> Poll<Seen<V, E>>
    where
        V: Clone,
        E: Clone,
    {
        let mut state = lock(&self.state);
        match &state.phase {
            Phase::Done(outcome) => Poll::Ready(Seen::Outcome(outcome.clone())),
            Phase::Abandoned => {
                state.phase = Phase::Running;
                self.remove_waiter();
                Poll::Ready(Seen::Lead)
            }
            // `Finished` is only set when no waiter is registered, so a
            // registered waiter never sees it; it waits like on `Running`.
            Phase::Running | Phase::Finished => {
                state.register(ticket, cx.waker());
                Poll::Pending
            }
        }
    }

    /// The leader publishes its outcome. Call only after the call's entry
    /// left the map (under the shard lock), so that no waiter can join any
    /// more and every join that happened is visible here.
    ///
    /// # Panics
    ///
    /// When cloning the outcome panics (a user's `Clone`): the waiters are
    /// told [`Error::Panicked`] and woken first, then the panic resumes on
    /// the leader's task.
    pub(crate) fn finish(&self, outcome: &Result<V, Error<E>>)
    where
        V: Clone,
        E: Clone,
    {
        // Nobody joined, or everybody left: there is no one to tell, and
        // nobody can come. The common, uncontended case skips the lock.
        if self.waiters() == 0 {
            return;
        }
        // Cloned outside the lock, with a panic caught: a waiter must never
        // be left on a `Running` call that nobody will finish.
        let shared = catch_unwind(AssertUnwindSafe(|| outcome.clone()));
        let (wakers, panic) = {
            let mut state = lock(&self.state);
            // A panic resumes even when the waiters left meanwhile: it is
            // the user's code panicking, as it would without this crate.
            let (phase, panic) = match shared {
                Ok(_) if self.waiters() == 0 => (Phase::Finished, None),
                Ok(shared) => (Phase::Done(shared), None),
                Err(payload) if self.waiters() == 0 => (Phase::Finished, Some(payload)),
                Err(payload) => (Phase::Done(Err(Error::Panicked)), Some(payload)),
            };
            state.phase = phase;
            (state.drain(), panic)
        };
        wake_all(wakers);
        if let Some(payload) = panic {
            resume_unwind(payload);
        }
    }

    /// The leader is being dropped unfinished. Called with the call's shard
    /// locked. Returns `true` when nobody waits, so the caller must remove
    /// the entry; otherwise hands the call to the waiters.
    pub(crate) fn abandon(&self) -> bool {
        let (nobody_waits, wakers) = {
            let mut state = lock(&self.state);
            let nobody_waits = self.waiters() == 0;
            state.phase = if nobody_waits {
                Phase::Finished
            } else {
                Phase::Abandoned
            };
            (nobody_waits, state.drain())
        };
        wake_all(wakers);
        nobody_waits
    }

    /// A waiter is being dropped before it got its outcome. Called with the
    /// call's shard locked. Returns `true` when it was the last waiter of an
    /// abandoned call, so the caller must remove the entry.
    pub(crate) fn leave(&self, ticket: Option<Ticket>) -> bool {
        let mut state = lock(&self.state);
        if let Some(ticket) = ticket
            && ticket.generation == state.generation
            && let Some(slot) = state.wakers.get_mut(ticket.index)
        {
            *slot = None;
            state.free.push(ticket.index);
        }
        if matches!(state.phase, Phase::Done(_)) {
            return false;
        }
        if self.remove_waiter() == 0 && matches!(state.phase, Phase::Abandoned) {
            state.phase = Phase::Finished;
            return true;
        }
        false
    }
}

impl<V, E> State<V, E> {
    /// Stores `waker` in the waiter's slot, taking a new slot if its ticket
    /// is void.
    fn register(&mut self, ticket: &mut Option<Ticket>, waker: &Waker) {
        if let Some(t) = ticket
            && t.generation == self.generation
            && let Some(slot) = self.wakers.get_mut(t.index)
        {
            match slot {
                Some(old) if old.will_wake(waker) => {}
                _ => *slot = Some(waker.clone()),
            }
            return;
        }
        // A freed index is always in bounds (the list only grows within a
        // generation); `get_mut` keeps that an invariant, not a panic.
        let reused = self.free.pop().and_then(|index| {
            let slot = self.wakers.get_mut(index)?;
            *slot = Some(waker.clone());
            Some(index)
        });
        let index = match reused {
            Some(index) => index,
            None => {
                self.wakers.push(Some(waker.clone()));
                self.wakers.len() - 1
            }
        };
        *ticket = Some(Ticket {
            generation: self.generation,
            index,
        });
    }

    /// Takes every stored waker and voids every ticket.
    fn drain(&mut self) -> Vec<Option<Waker>> {
        self.generation = self.generation.wrapping_add(1);
        self.free.clear();
        mem::take(&mut self.wakers)
    }
}

fn wake_all(wakers: Vec<Option<Waker>>) {
    for waker in wakers.into_iter().flatten() {
        waker.wake();
    }
}

#[cfg(test)]
impl<V, E> Call<V, E> {
    /// Slots in the waker list (live and cleared), for tests.
    pub(crate) fn waker_slots(&self) -> usize {
        lock(&self.state).wakers.len()
    }
}
