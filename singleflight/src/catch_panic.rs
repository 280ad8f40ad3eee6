//! Running a caller's closure and future with panics caught, so that the
//! callers waiting on it can be told before the panic resumes.

use std::any::Any;
use std::future::{Future, poll_fn};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::task::Poll;

/// A caught panic's payload, to hand to `std::panic::resume_unwind`.
pub(crate) type PanicPayload = Box<dyn Any + Send + 'static>;

/// Calls `make` and drives the future it returns, turning a panic in either
/// into `Err(payload)`.
///
/// Unwind safety is asserted: the payload is resumed on the same task once the
/// waiters are told, so the caller observes the panic as if nothing had caught it.
pub(crate) async fn run_catching<F, Fut, T>(make: F) -> Result<T, PanicPayload>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = T>,
{
    let fut = catch_unwind(AssertUnwindSafe(make))?;
    let mut fut = pin!(fut);
    poll_fn(
        |cx| match catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(payload)),
        },
    )
    .await
}
