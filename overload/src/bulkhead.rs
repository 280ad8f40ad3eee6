//! A bulkhead: a fixed concurrency limit per route or per dependency that
//! rejects at once when full.
//!
//! A [`Bulkhead`] holds at most `max_concurrent` calls in flight. A call that
//! finds it full gets [`BulkheadFull`] straight away: nothing waits, nothing
//! queues, so one slow dependency can take at most its share of the tasks and
//! a rejection costs one atomic compare-and-swap.
//!
//! Two ways to use it, sharing one count:
//! - the handle, around any future (a Redis, MySQL or Kafka call that is not
//!   a tower service): [`Bulkhead::try_acquire`] returns a [`Permit`] that
//!   releases on drop, and [`Bulkhead::run`] wraps a future;
//! - the tower layer, [`BulkheadLayer`], which rejects at `call` with
//!   [`BulkheadError::Rejected`].
//!
//! Compared with tower's `ConcurrencyLimit`, which waits in `poll_ready` for
//! a permit (a queue with no bound but the number of callers), the bulkhead
//! never waits; it is `LoadShed` + `ConcurrencyLimit` in one step, without the
//! semaphore queue behind it.
//!
//! # Examples
//!
//! ```
//! use seckill_overload::bulkhead::{Bulkhead, BulkheadFull};
//!
//! let redis = Bulkhead::new(2)?;
//! let a = redis.try_acquire()?;
//! let _b = redis.try_acquire()?;
//! assert_eq!(redis.try_acquire().unwrap_err(), BulkheadFull { max_concurrent: 2 });
//! drop(a); // a permit releases on drop
//! assert!(redis.try_acquire().is_ok());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

use crate::config::ConfigError;
use crate::layer_error::{Admission, AdmittedFuture, LayerError};

/// The largest `max_concurrent` a bulkhead accepts.
pub const MAX_CONCURRENT_LIMIT: usize = 1_000_000;

/// The bulkhead was full: the call was rejected without running.
///
/// Answer it as overload (HTTP 503, or fail the dependency call fast); retry
/// later or raise `max_concurrent` if the dependency can take more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "bulkhead full: {max_concurrent} calls already in flight; \
     the call was rejected without running, retry later"
)]
pub struct BulkheadFull {
    /// The bulkhead's `max_concurrent`.
    pub max_concurrent: usize,
}

/// A snapshot of a bulkhead's counters, read with [`Bulkhead::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BulkheadStats {
    /// The configured limit.
    pub max_concurrent: usize,
    /// Permits held right now.
    pub in_flight: usize,
    /// Calls admitted since creation.
    pub admitted: u64,
    /// Calls rejected since creation.
    pub rejected: u64,
}

struct Inner {
    max_concurrent: usize,
    in_flight: AtomicUsize,
    admitted: AtomicU64,
    rejected: AtomicU64,
}

/// A fixed concurrency limit that rejects at once when full.
///
/// Cheap to clone: clones share one count (an `Arc` inside).
#[derive(Clone)]
pub struct Bulkhead {
    inner: Arc<Inner>,
}

impl fmt::Debug for Bulkhead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bulkhead")
            .field("stats", &self.stats())
            .finish()
    }
}

impl Bulkhead {
    /// A bulkhead admitting at most `max_concurrent` calls at once.
    ///
    /// `max_concurrent` must be 1 to 1,000,000 ([`MAX_CONCURRENT_LIMIT`]).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when `max_concurrent` is out of range.
    ///
    /// # Panics
    ///
    /// Never.
    pub fn new(max_concurrent: usize) -> Result<Self, ConfigError> {
        if !(1..=MAX_CONCURRENT_LIMIT).contains(&max_concurrent) {
            return Err(ConfigError::new(
                "max_concurrent",
                format!("1 to {MAX_CONCURRENT_LIMIT}"),
                max_concurrent,
            ));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                max_concurrent,
                in_flight: AtomicUsize::new(0),
                admitted: AtomicU64::new(0),
                rejected: AtomicU64::new(0),
            }),
        })
    }

    /// Takes a permit if fewer than `max_concurrent` are held; never waits.
    ///
    /// # Errors
    ///
    /// [`BulkheadFull`] when `max_concurrent` permits are held.
    pub fn try_acquire(&self) -> Result<Permit, BulkheadFull> {
        let inner = &self.inner;
        let max = inner.max_concurrent;
        let taken = inner
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            });
        match taken {
            Ok(_) => {
                inner.admitted.fetch_add(1, Ordering::Relaxed);
                Ok(Permit {
                    inner: Arc::clone(&self.inner),
                })
            }
            Err(_) => {
                inner.rejected.fetch_add(1, Ordering::Relaxed);
                Err(BulkheadFull {
                    max_concurrent: max,
                })
            }
        }
    }

    /// Runs `future` holding a permit, or rejects without polling it.
    ///
    /// The permit is taken when the returned future is first polled and
    /// released when `future` completes or the returned future is dropped.
    ///
    /// # Errors
    ///
    /// [`BulkheadFull`] when the bulkhead is full; `future` is then dropped
    /// unpolled.
    ///
    /// # Cancel safety
    ///
    /// Dropping the returned future releases its permit.
    pub async fn run<F: Future>(&self, future: F) -> Result<F::Output, BulkheadFull> {
        let permit = self.try_acquire()?;
        let output = future.await;
        drop(permit);
        Ok(output)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> BulkheadStats {
        let inner = &self.inner;
        BulkheadStats {
            max_concurrent: inner.max_concurrent,
            in_flight: inner.in_flight.load(Ordering::Acquire),
            admitted: inner.admitted.load(Ordering::Relaxed),
            rejected: inner.rejected.load(Ordering::Relaxed),
        }
    }

    /// The configured limit.
    pub fn max_concurrent(&self) -> usize {
        self.inner.max_concurrent
    }
}

/// One admitted call's slot in a [`Bulkhead`]; released on drop.
#[must_use = "the permit is released as soon as it is dropped"]
pub struct Permit {
    inner: Arc<Inner>,
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("max_concurrent", &self.inner.max_concurrent)
            .finish()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.inner.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The error of a [`BulkheadService`]: [`LayerError::Rejected`] with
/// [`BulkheadFull`] (the inner service was not called), or the inner
/// service's own error.
pub type BulkheadError<E> = LayerError<BulkheadFull, E>;

/// The future of a [`BulkheadService`] call; dropping it releases the permit.
pub type ResponseFuture<F> = AdmittedFuture<F, Permit, BulkheadFull>;

impl Admission for Permit {
    fn finish(self, _ok: bool) {
        drop(self);
    }
}

/// A tower [`Layer`] wrapping services in a [`BulkheadService`].
///
/// Every service the layer builds shares the layer's one [`Bulkhead`], so a
/// layer placed on a route (or on a client for one dependency) limits that
/// route as a whole.
#[derive(Debug, Clone)]
pub struct BulkheadLayer {
    bulkhead: Bulkhead,
}

impl BulkheadLayer {
    /// A layer sharing `bulkhead` (keep a clone to read its `stats()`).
    pub fn new(bulkhead: Bulkhead) -> Self {
        Self { bulkhead }
    }
}

impl<S> Layer<S> for BulkheadLayer {
    type Service = BulkheadService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BulkheadService {
            inner,
            bulkhead: self.bulkhead.clone(),
        }
    }
}

/// A service admitting at most `max_concurrent` calls of its inner service at
/// once, rejecting the rest at `call`.
///
/// # Readiness
///
/// `poll_ready` never waits for a permit: the bulkhead's own capacity is
/// checked in `call`, which answers [`BulkheadError::Rejected`] at once when
/// full. `poll_ready` forwards the inner service's readiness unchanged (its
/// errors as [`BulkheadError::Inner`]), so an inner service's own
/// backpressure still applies; to turn that into rejections as well, put
/// tower's `LoadShedLayer` outside this layer.
#[derive(Debug, Clone)]
pub struct BulkheadService<S> {
    inner: S,
    bulkhead: Bulkhead,
}

impl<S> BulkheadService<S> {
    /// Wraps `inner` in `bulkhead`.
    pub fn new(inner: S, bulkhead: Bulkhead) -> Self {
        Self { inner, bulkhead }
    }

    /// The shared bulkhead.
    pub fn bulkhead(&self) -> &Bulkhead {
        &self.bulkhead
    }
}

impl<S, Req> Service<Req> for BulkheadService<S>
where
    S: Service<Req>,
{
    type Response = S::Response;
    type Error = BulkheadError<S::Error>;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(BulkheadError::Inner)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match self.bulkhead.try_acquire() {
            Ok(permit) => AdmittedFuture::admitted(self.inner.call(req), permit),
            Err(full) => AdmittedFuture::rejected(full),
        }
    }
}
