//! [`Batch`]: the items a handler receives, and [`Trigger`]: why they were handed over.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// What made a bucket hand its items to the handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Trigger {
    /// The bucket held `max_batch_size` items.
    Size,
    /// The oldest item had waited `max_delay`.
    Time,
    /// [`Batcher::flush`](crate::Batcher::flush) was called.
    Flush,
    /// The batcher is shutting down ([`Batcher::shutdown`](crate::Batcher::shutdown),
    /// or every handle was dropped), so every queued item is handed over.
    Shutdown,
}

impl Trigger {
    pub(crate) const ALL: [Trigger; 4] = [
        Trigger::Size,
        Trigger::Time,
        Trigger::Flush,
        Trigger::Shutdown,
    ];

    pub(crate) fn index(self) -> usize {
        match self {
            Trigger::Size => 0,
            Trigger::Time => 1,
            Trigger::Flush => 2,
            Trigger::Shutdown => 3,
        }
    }
}

/// A batch of items handed to the handler, in submit order.
///
/// It reads as a slice (`Deref<Target = [T]>`) and is cheap to clone: the
/// batcher keeps one handle so that it can retry the same items, or give
/// them to the failure callback, without requiring `T: Clone`. Use
/// [`Batch::try_into_vec`] (or [`Batch::into_vec`]) where you need ownership.
///
/// # Examples
///
/// ```
/// use seckill_batcher::Batch;
///
/// fn total(batch: &Batch<u64>) -> u64 {
///     batch.iter().sum()
/// }
/// ```
pub struct Batch<T> {
    items: Arc<Vec<T>>,
    bucket: usize,
    trigger: Trigger,
    attempt: u32,
}

impl<T> Batch<T> {
    pub(crate) fn new(items: Arc<Vec<T>>, bucket: usize, trigger: Trigger, attempt: u32) -> Self {
        Batch {
            items,
            bucket,
            trigger,
            attempt,
        }
    }

    /// The bucket these items came from (see [`Batcher::bucket_of`](crate::Batcher::bucket_of)).
    pub fn bucket(&self) -> usize {
        self.bucket
    }

    /// What made the bucket hand these items over.
    pub fn trigger(&self) -> Trigger {
        self.trigger
    }

    /// Which attempt this is: 1 for the first call, 2 for the first retry, …
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The items as a vector, if this is the only handle to them.
    ///
    /// # Errors
    ///
    /// Gives the batch back when another handle exists, e.g. inside the
    /// handler, where the batcher keeps one for retries.
    pub fn try_into_vec(self) -> Result<Vec<T>, Self> {
        let Batch {
            items,
            bucket,
            trigger,
            attempt,
        } = self;
        Arc::try_unwrap(items).map_err(|items| Batch {
            items,
            bucket,
            trigger,
            attempt,
        })
    }

    /// The items as a vector: moved out when this is the only handle,
    /// cloned otherwise (inside the handler the batcher keeps one for
    /// retries; the failure callback gets the items themselves in a
    /// [`FailedBatch`](crate::FailedBatch)).
    pub fn into_vec(self) -> Vec<T>
    where
        T: Clone,
    {
        Arc::unwrap_or_clone(self.items)
    }
}

impl<T> Clone for Batch<T> {
    fn clone(&self) -> Self {
        Batch {
            items: Arc::clone(&self.items),
            bucket: self.bucket,
            trigger: self.trigger,
            attempt: self.attempt,
        }
    }
}

impl<T> Deref for Batch<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        &self.items
    }
}

impl<T> AsRef<[T]> for Batch<T> {
    fn as_ref(&self) -> &[T] {
        &self.items
    }
}

impl<'a, T> IntoIterator for &'a Batch<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

impl<T: fmt::Debug> fmt::Debug for Batch<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batch")
            .field("bucket", &self.bucket)
            .field("trigger", &self.trigger)
            .field("attempt", &self.attempt)
            .field("items", &self.items)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_gives_its_items_back_only_to_the_last_holder() {
        let batch = Batch::new(Arc::new(vec![1, 2, 3]), 0, Trigger::Size, 1);
        let copy = batch.clone();
        let batch = batch.try_into_vec().unwrap_err();
        assert_eq!(&batch[..], [1, 2, 3]);
        assert_eq!(copy.into_vec(), [1, 2, 3]); // cloned: `batch` still holds them
        assert_eq!(batch.try_into_vec().unwrap(), [1, 2, 3]);
    }

    #[test]
    fn handles_and_futures_can_cross_threads() {
        fn send_sync<X: Send + Sync>(_: &X) {}
        fn send<X: Send>(_: &X) {}
        let batch = Batch::new(Arc::new(vec![String::new()]), 0, Trigger::Time, 1);
        send_sync(&batch);
        fn submit_is_send(b: &crate::Batcher<String, std::io::Error>) {
            send(&b.submit(&1u64, String::new()));
            send(&b.submit_and_wait("k", String::new()));
            send(&b.flush());
            send(&b.shutdown());
            send_sync(b);
        }
        let _ = submit_is_send;
    }
}
