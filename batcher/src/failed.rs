//! [`FailedBatch`]: what the failure callback receives, owning the items.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use crate::batch::Trigger;
use crate::error::BatchError;

/// A batch that failed its last attempt, handed to the failure callback
/// (see [`Builder::on_failure`](crate::Builder::on_failure)) together with
/// its items, so that they can be dead-lettered or submitted again.
///
/// The batcher lets go of the items before calling the callback: unless the
/// handler kept a clone of its [`Batch`](crate::Batch) past the future it
/// returned, this value is their only owner and
/// [`try_into_items`](FailedBatch::try_into_items) moves them out (no
/// `T: Clone` needed). It reads as a slice of the items in submit order.
///
/// Every [`submit_and_wait`](crate::Batcher::submit_and_wait) caller whose
/// item is in the batch also gets [`error`](FailedBatch::error), after the
/// callback returned.
///
/// # Examples
///
/// ```
/// use seckill_batcher::FailedBatch;
///
/// fn dead_letter(failed: FailedBatch<String, std::io::Error>, store: &mut Vec<(u32, String)>) {
///     let attempts = failed.attempts();
///     match failed.try_into_items() {
///         Ok(items) => store.extend(items.into_iter().map(|item| (attempts, item))),
///         // Only when the handler kept a clone of its batch: the items are shared.
///         Err(failed) => store.extend(failed.iter().map(|item| (attempts, item.clone()))),
///     }
/// }
/// ```
pub struct FailedBatch<T, E> {
    items: Items<T>,
    bucket: usize,
    trigger: Trigger,
    attempts: u32,
    error: BatchError<E>,
}

/// The items: owned, or still shared with a handle the handler kept.
enum Items<T> {
    Owned(Vec<T>),
    Shared(Arc<Vec<T>>),
}

impl<T, E> FailedBatch<T, E> {
    pub(crate) fn new(
        items: Arc<Vec<T>>,
        bucket: usize,
        trigger: Trigger,
        attempts: u32,
        error: BatchError<E>,
    ) -> Self {
        let items = match Arc::try_unwrap(items) {
            Ok(items) => Items::Owned(items),
            Err(shared) => Items::Shared(shared),
        };
        FailedBatch {
            items,
            bucket,
            trigger,
            attempts,
            error,
        }
    }

    /// The bucket the items came from (see
    /// [`Batcher::bucket_of`](crate::Batcher::bucket_of)). A batch holds the
    /// items of every key that maps to this bucket.
    pub fn bucket(&self) -> usize {
        self.bucket
    }

    /// What made the bucket hand these items over.
    pub fn trigger(&self) -> Trigger {
        self.trigger
    }

    /// How many times the handler was called with this batch: 1 plus the
    /// configured [`retries`](crate::Builder::retries).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Why the last attempt failed.
    pub fn error(&self) -> &BatchError<E> {
        &self.error
    }

    /// The items, in submit order.
    pub fn items(&self) -> &[T] {
        match &self.items {
            Items::Owned(items) => items,
            Items::Shared(items) => items,
        }
    }

    /// Whether this value owns the items, so that
    /// [`try_into_items`](FailedBatch::try_into_items) succeeds. False only
    /// when the handler kept a clone of its batch after its future ended.
    pub fn owns_items(&self) -> bool {
        matches!(self.items, Items::Owned(_)) || self.shared_but_unique()
    }

    fn shared_but_unique(&self) -> bool {
        match &self.items {
            Items::Owned(_) => false,
            Items::Shared(items) => Arc::strong_count(items) == 1,
        }
    }

    /// The items, moved out, in submit order.
    ///
    /// # Errors
    ///
    /// Gives the batch back when the handler kept a clone of its
    /// [`Batch`](crate::Batch) after its future ended (the items are still
    /// shared with that clone): read them with [`items`](FailedBatch::items),
    /// or use [`into_items`](FailedBatch::into_items) when `T: Clone`.
    pub fn try_into_items(self) -> Result<Vec<T>, Self> {
        let FailedBatch {
            items,
            bucket,
            trigger,
            attempts,
            error,
        } = self;
        match items {
            Items::Owned(items) => Ok(items),
            Items::Shared(shared) => Arc::try_unwrap(shared).map_err(|shared| FailedBatch {
                items: Items::Shared(shared),
                bucket,
                trigger,
                attempts,
                error,
            }),
        }
    }

    /// The items: moved out when this value owns them (see
    /// [`owns_items`](FailedBatch::owns_items)), cloned otherwise.
    pub fn into_items(self) -> Vec<T>
    where
        T: Clone,
    {
        match self.items {
            Items::Owned(items) => items,
            Items::Shared(shared) => Arc::unwrap_or_clone(shared),
        }
    }
}

impl<T, E> Deref for FailedBatch<T, E> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        self.items()
    }
}

impl<T: fmt::Debug, E: fmt::Debug> fmt::Debug for FailedBatch<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailedBatch")
            .field("bucket", &self.bucket)
            .field("trigger", &self.trigger)
            .field("attempts", &self.attempts)
            .field("error", &self.error)
            .field("items", &self.items())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(items: Arc<Vec<u64>>) -> FailedBatch<u64, String> {
        let error = BatchError::Failed(Arc::new("down".to_string()));
        FailedBatch::new(items, 2, Trigger::Time, 3, error)
    }

    #[test]
    fn an_unshared_batch_gives_its_items_away() {
        let batch = failed(Arc::new(vec![1, 2, 3]));
        assert!(batch.owns_items());
        assert_eq!(
            (batch.bucket(), batch.trigger(), batch.attempts()),
            (2, Trigger::Time, 3)
        );
        assert_eq!(
            batch.error().to_string(),
            "the batch handler failed on its last attempt: down"
        );
        assert_eq!(batch.try_into_items().unwrap(), [1, 2, 3]);
    }

    #[test]
    fn a_batch_still_shared_with_a_kept_clone_is_given_back() {
        let items = Arc::new(vec![4, 5]);
        let kept = Arc::clone(&items);
        let batch = failed(items);
        assert!(!batch.owns_items());
        let batch = batch.try_into_items().unwrap_err();
        assert_eq!(&batch[..], [4, 5]);
        assert_eq!(batch.into_items(), [4, 5]); // cloned
        assert_eq!(*kept, [4, 5]);
    }
}
