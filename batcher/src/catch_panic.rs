//! Turning a panic in the handler into a failed attempt.

use std::any::Any;
use std::future::{Future, poll_fn};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;

/// Starts the future `start` returns and drives it to completion; a panic
/// while starting or polling it becomes `Err(message)`.
///
/// Unwind safety is asserted: after a panic the future is dropped and only
/// the batch (immutable, behind an `Arc`) is used again.
pub(crate) async fn catching<F, Fut>(start: F) -> Result<Fut::Output, Arc<str>>
where
    F: FnOnce() -> Fut,
    Fut: Future,
{
    let future = catch_unwind(AssertUnwindSafe(start)).map_err(message)?;
    let mut future = pin!(future);
    poll_fn(
        |cx| match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(poll) => poll.map(Ok),
            Err(payload) => Poll::Ready(Err(message(payload))),
        },
    )
    .await
}

/// The text a panic was raised with, when it was a string.
fn message(payload: Box<dyn Any + Send>) -> Arc<str> {
    if let Some(text) = payload.downcast_ref::<&'static str>() {
        Arc::from(*text)
    } else if let Some(text) = payload.downcast_ref::<String>() {
        Arc::from(text.as_str())
    } else {
        Arc::from("a panic with a non-string payload")
    }
}
