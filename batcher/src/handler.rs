//! [`Handler`]: what the batcher hands each batch to.

use std::future::Future;

use crate::batch::Batch;

/// Receives batches from the batcher.
///
/// Implemented for every `Fn(Batch<T>) -> impl Future<Output = Result<(), E>>`
/// closure, so most users pass a closure; implement it on a type of your own
/// when the handler holds state such as a Kafka producer.
///
/// Calls for one bucket never overlap; calls for different buckets run
/// concurrently. A returned error or a panic makes the batch fail; the
/// batcher then retries it as configured and finally gives it to the failure
/// callback.
///
/// # Examples
///
/// ```
/// use seckill_batcher::{Batch, Handler};
///
/// struct Printer;
///
/// impl Handler<String> for Printer {
///     type Error = std::io::Error;
///
///     async fn handle(&self, batch: Batch<String>) -> Result<(), Self::Error> {
///         println!("{} orders: {:?}", batch.len(), &batch[..]);
///         Ok(())
///     }
/// }
/// ```
pub trait Handler<T>: Send + Sync + 'static {
    /// What a failed call returns.
    type Error: Send + Sync + 'static;

    /// Handles one batch. The items stay in submit order (per key).
    fn handle(&self, batch: Batch<T>) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

impl<T, F, Fut, E> Handler<T> for F
where
    F: Fn(Batch<T>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send,
    E: Send + Sync + 'static,
{
    type Error = E;

    fn handle(&self, batch: Batch<T>) -> impl Future<Output = Result<(), E>> + Send {
        self(batch)
    }
}
