//! Running a caller's closure and polling its future with panics caught, so
//! that the callers waiting on it can be told before the panic resumes.
//!
//! Unwind safety is asserted: a caught payload is resumed on the same task
//! once the waiters are told, so the caller observes the panic as if nothing
//! had caught it.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

/// A caught panic's payload, to hand to `std::panic::resume_unwind`.
pub(crate) type PanicPayload = Box<dyn Any + Send + 'static>;

/// Calls `make`, catching a panic.
pub(crate) fn call_catching<F, Fut>(make: F) -> Result<Fut, PanicPayload>
where
    F: FnOnce() -> Fut,
{
    catch_unwind(AssertUnwindSafe(make))
}

/// Polls `fut` once, catching a panic.
pub(crate) fn poll_catching<Fut: Future>(
    fut: Pin<&mut Fut>,
    cx: &mut Context<'_>,
) -> Poll<Result<Fut::Output, PanicPayload>> {
    match catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
        Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
        Ok(Poll::Pending) => Poll::Pending,
        Err(payload) => Poll::Ready(Err(payload)),
    }
}
