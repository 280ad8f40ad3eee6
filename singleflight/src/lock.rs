//! Mutex locking that shrugs off poisoning.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, taking the data even if a panic poisoned it.
///
/// Every critical section in this crate leaves its data consistent at each
/// step (the only code that can panic inside one is a user's `Eq` or `Clone`),
/// so a poisoned lock holds usable state and refusing it would turn one
/// panic into a stuck key.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
