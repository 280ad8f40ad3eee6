//! Why an item was not accepted, or why its batch was not handled.

use std::fmt;
use std::sync::Arc;

/// Why [`Batcher::submit`](crate::Batcher::submit) did not accept an item.
///
/// The item is handed back, so nothing is lost.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError<T> {
    /// The batcher was shut down (or its workers stopped) before the item
    /// was accepted.
    #[error(
        "the batcher is shut down and accepts no more items; the item is handed back in the error"
    )]
    Closed(T),
}

impl<T> SubmitError<T> {
    /// The item that was not accepted.
    pub fn into_inner(self) -> T {
        match self {
            SubmitError::Closed(item) => item,
        }
    }
}

impl<T> fmt::Debug for SubmitError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubmitError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

/// Why [`Batcher::try_submit`](crate::Batcher::try_submit) did not accept an item.
///
/// The item is handed back, so nothing is lost.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrySubmitError<T> {
    /// The item's bucket holds `capacity` items already.
    #[error(
        "the bucket's queue is full; retry later, use `submit` to wait for room, or shed the request"
    )]
    Full(T),
    /// The batcher was shut down (or its workers stopped).
    #[error(
        "the batcher is shut down and accepts no more items; the item is handed back in the error"
    )]
    Closed(T),
}

impl<T> TrySubmitError<T> {
    /// The item that was not accepted.
    pub fn into_inner(self) -> T {
        match self {
            TrySubmitError::Full(item) | TrySubmitError::Closed(item) => item,
        }
    }
}

impl<T> fmt::Debug for TrySubmitError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySubmitError::Full(_) => f.write_str("Full(..)"),
            TrySubmitError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

/// Why a batch was given up on after its last attempt.
///
/// The failure callback receives it beside the batch, and every
/// [`submit_and_wait`](crate::Batcher::submit_and_wait) caller whose item was
/// in the batch receives a clone of it inside [`WaitError`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError<E> {
    /// The handler returned this error on the last attempt.
    #[error("the batch handler failed on its last attempt: {0}")]
    Failed(Arc<E>),
    /// The handler panicked on the last attempt; the text is the panic message.
    #[error("the batch handler panicked on its last attempt: {0}")]
    Panicked(Arc<str>),
}

impl<E> Clone for BatchError<E> {
    fn clone(&self) -> Self {
        match self {
            BatchError::Failed(e) => BatchError::Failed(Arc::clone(e)),
            BatchError::Panicked(m) => BatchError::Panicked(Arc::clone(m)),
        }
    }
}

/// Why [`Batcher::submit_and_wait`](crate::Batcher::submit_and_wait) did not
/// see its item handled.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum WaitError<T, E> {
    /// The batcher was shut down before the item was accepted; the item is
    /// handed back and was never handled.
    #[error(
        "the batcher is shut down and accepts no more items; the item is handed back in the error"
    )]
    Closed(T),
    /// The item was accepted but its batch failed after every retry (it also
    /// went to the failure callback).
    #[error(transparent)]
    Batch(BatchError<E>),
    /// The item was accepted but its worker stopped before handling it: the
    /// Tokio runtime running the batcher shut down. Call
    /// [`Batcher::shutdown`](crate::Batcher::shutdown) before the runtime stops.
    #[error(
        "the batcher's worker stopped (its runtime shut down) before the item's batch was handled; call `shutdown` before stopping the runtime"
    )]
    Abandoned,
}

impl<T, E> fmt::Debug for WaitError<T, E>
where
    E: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitError::Closed(_) => f.write_str("Closed(..)"),
            WaitError::Batch(e) => f.debug_tuple("Batch").field(e).finish(),
            WaitError::Abandoned => f.write_str("Abandoned"),
        }
    }
}

impl<T, E> From<SubmitError<T>> for WaitError<T, E> {
    fn from(e: SubmitError<T>) -> Self {
        WaitError::Closed(e.into_inner())
    }
}

/// Why [`Builder::build`](crate::Builder::build) made no batcher.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A setting is out of its documented range; pass a value inside it.
    #[error("invalid batcher setting: {setting} must be {range}, got {got}")]
    Invalid {
        /// The setting whose value is wrong, named after its builder method
        /// (`backoff.initial` and `backoff.max` for the two values of
        /// [`Builder::backoff`](crate::Builder::backoff)).
        setting: &'static str,
        /// The values it accepts, e.g. `1 to 1048576`.
        range: String,
        /// The value it was given.
        got: String,
    },
    /// `build` was called outside a Tokio runtime, so there is nowhere to
    /// run the bucket workers.
    #[error(
        "no Tokio runtime: call `build` from within a Tokio runtime (e.g. inside #[tokio::main])"
    )]
    NoRuntime,
}
