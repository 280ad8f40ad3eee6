//! One execution in flight: its phase, its waiters and how they are woken.

use std::sync::Mutex;

use tokio::sync::Notify;

use crate::error::Error;
use crate::lock::lock;

/// The shared state of one execution.
///
/// Lock order, everywhere: a shard's lock before a call's lock, never the
/// reverse. Neither lock is held across an `.await`.
pub(crate) struct Call<V, E> {
    state: Mutex<State<V, E>>,
    /// Woken when the phase leaves `Running`.
    changed: Notify,
}

struct State<V, E> {
    phase: Phase<V, E>,
    /// Callers registered on this call other than its leader.
    waiters: usize,
}

enum Phase<V, E> {
    /// A leader is running its closure.
    Running,
    /// The leader was dropped before finishing; the first waiter to notice
    /// takes over with its own closure.
    Abandoned,
    /// The execution finished with this outcome; waiters clone it.
    Done(Result<V, Error<E>>),
    /// The execution finished and nobody was waiting for the outcome.
    Finished,
}

/// What a waiter found when it looked at the call.
pub(crate) enum Seen<V, E> {
    /// The outcome, cloned for this waiter.
    Outcome(Result<V, Error<E>>),
    /// The leader was dropped; this waiter is now the leader.
    Lead,
    /// Still running; wait for the next change.
    Running,
}

impl<V, E> Call<V, E> {
    pub(crate) fn new() -> Self {
        Call {
            state: Mutex::new(State {
                phase: Phase::Running,
                waiters: 0,
            }),
            changed: Notify::new(),
        }
    }

    /// Registers one more waiter. Called with the call's shard locked.
    pub(crate) fn add_waiter(&self) {
        lock(&self.state).waiters += 1;
    }

    pub(crate) fn waiters(&self) -> usize {
        lock(&self.state).waiters
    }

    pub(crate) fn changed(&self) -> &Notify {
        &self.changed
    }

    /// A registered waiter looks at the phase; if the leader is gone, the
    /// waiter leaves the waiter count and becomes the leader.
    pub(crate) fn look(&self) -> Seen<V, E>
    where
        V: Clone,
        E: Clone,
    {
        let mut state = lock(&self.state);
        match &state.phase {
            Phase::Done(outcome) => Seen::Outcome(outcome.clone()),
            Phase::Abandoned => {
                state.phase = Phase::Running;
                state.waiters = state.waiters.saturating_sub(1);
                Seen::Lead
            }
            // `Finished` is only set when no waiter is registered, so a
            // registered waiter never sees it; treat it as still running.
            Phase::Running | Phase::Finished => Seen::Running,
        }
    }

    /// The leader publishes its outcome. Call only after the call's entry
    /// left the map, so that no waiter can register any more.
    pub(crate) fn finish(&self, outcome: &Result<V, Error<E>>)
    where
        V: Clone,
        E: Clone,
    {
        let wake = {
            let mut state = lock(&self.state);
            if state.waiters == 0 {
                state.phase = Phase::Finished;
                false
            } else {
                state.phase = Phase::Done(outcome.clone());
                true
            }
        };
        if wake {
            self.changed.notify_waiters();
        }
    }

    /// The leader is being dropped unfinished. Called with the call's shard
    /// locked. Returns `true` when nobody waits, so the caller must remove
    /// the entry; otherwise hands the call to the waiters.
    pub(crate) fn abandon(&self) -> bool {
        let nobody_waits = {
            let mut state = lock(&self.state);
            if state.waiters == 0 {
                state.phase = Phase::Finished;
                true
            } else {
                state.phase = Phase::Abandoned;
                false
            }
        };
        if !nobody_waits {
            self.changed.notify_waiters();
        }
        nobody_waits
    }

    /// A waiter is being dropped before it got its outcome. Called with the
    /// call's shard locked. Returns `true` when it was the last waiter of an
    /// abandoned call, so the caller must remove the entry.
    pub(crate) fn leave(&self) -> bool {
        let mut state = lock(&self.state);
        if matches!(state.phase, Phase::Done(_)) {
            return false;
        }
        state.waiters = state.waiters.saturating_sub(1);
        if state.waiters == 0 && matches!(state.phase, Phase::Abandoned) {
            state.phase = Phase::Finished;
            return true;
        }
        false
    }
}
