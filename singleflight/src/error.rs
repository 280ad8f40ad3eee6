//! The error every caller of one execution shares.

/// Why [`Group::run`](crate::Group::run) returned no value.
///
/// Every caller that shared an execution receives the same error: the
/// closure's own error is cloned to each of them, and a panic is reported to
/// the callers that were waiting as [`Error::Panicked`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error<E> {
    /// The one execution for this key returned this error.
    ///
    /// It is not retried: the next call for the key starts a fresh execution.
    #[error("the shared execution failed: {0}")]
    Failed(#[source] E),
    /// The execution for this key panicked while this caller was waiting.
    ///
    /// The caller whose closure panicked sees the panic itself (it is resumed
    /// on its task); the callers waiting on it get this error. The key is free
    /// again, so a retry starts a fresh execution.
    #[error(
        "the shared execution panicked; the key is free again, retry if the work may be repeated"
    )]
    Panicked,
}

impl<E> Error<E> {
    /// The execution's own error, if it returned one.
    pub fn into_failed(self) -> Option<E> {
        match self {
            Error::Failed(e) => Some(e),
            Error::Panicked => None,
        }
    }
}
