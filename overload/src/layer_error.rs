//! The one error shape of every layered service in the crate, and the future
//! the bulkhead's and the adaptive limit's services share.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

/// The error of a layered call: rejected by the layer (the inner service or
/// dependency was not called), or the inner service's own error.
///
/// Each part names its instance: [`BulkheadError`](crate::bulkhead::BulkheadError),
/// [`AdaptiveError`](crate::adaptive::AdaptiveError),
/// [`BreakerError`](crate::breaker::BreakerError). Exhaustive on purpose: a
/// caller matches both arms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayerError<R, E> {
    /// Rejected without calling the inner service: answer it as overload
    /// (HTTP 503, or fail the dependency call fast) and retry later.
    #[error(transparent)]
    Rejected(R),
    /// The inner service was called and failed with this error.
    #[error("{0}")]
    Inner(E),
}

impl<R, E> LayerError<R, E> {
    /// The inner service's error, if it was called.
    pub fn into_inner(self) -> Option<E> {
        match self {
            LayerError::Rejected(_) => None,
            LayerError::Inner(e) => Some(e),
        }
    }

    /// Whether the layer rejected the call.
    pub fn is_rejected(&self) -> bool {
        matches!(self, LayerError::Rejected(_))
    }
}

/// What an admitted call holds until its inner future is done (a bulkhead's
/// permit, an adaptive limit's token); dropping it unfinished releases it.
pub(crate) trait Admission {
    /// The inner call ended, with `Ok` (`ok`) or an error.
    fn finish(self, ok: bool);
}

pin_project! {
    /// The future of a [`BulkheadService`](crate::bulkhead::BulkheadService)
    /// or [`AdaptiveService`](crate::adaptive::AdaptiveService) call: ready at
    /// once when rejected, otherwise the inner future holding its admission,
    /// which is released as soon as the inner future is done.
    ///
    /// Dropping it releases the admission (without a sample, for the
    /// adaptive limit).
    pub struct AdmittedFuture<F, A, R> {
        #[pin]
        state: State<F, A, R>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, A, R> {
        Admitted {
            #[pin]
            future: F,
            admission: Option<A>,
        },
        Rejected {
            error: Option<R>,
        },
    }
}

impl<F, A, R> AdmittedFuture<F, A, R> {
    pub(crate) fn admitted(future: F, admission: A) -> Self {
        Self {
            state: State::Admitted {
                future,
                admission: Some(admission),
            },
        }
    }

    pub(crate) fn rejected(error: R) -> Self {
        Self {
            state: State::Rejected { error: Some(error) },
        }
    }
}

impl<F, A, R, T, E> Future for AdmittedFuture<F, A, R>
where
    F: Future<Output = Result<T, E>>,
    A: Admission,
{
    type Output = Result<T, LayerError<R, E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Admitted { future, admission } => {
                let output = std::task::ready!(future.poll(cx));
                if let Some(admission) = admission.take() {
                    admission.finish(output.is_ok());
                }
                Poll::Ready(output.map_err(LayerError::Inner))
            }
            StateProj::Rejected { error } => match error.take() {
                Some(error) => Poll::Ready(Err(LayerError::Rejected(error))),
                // Polled again after it answered: nothing more to give.
                None => Poll::Pending,
            },
        }
    }
}
