//! Keeping the reconciler's lease: acquire, renew every third of its
//! lifetime, give it up when it cannot be renewed in time, release it at a
//! clean stop.
//!
//! The keeper publishes what it holds on a [`watch`] channel (`Some(token)`
//! while held) and in the `reconciler_lease` gauge. It runs beside the
//! passes, not between them, so a long pass neither delays a renewal nor
//! keeps running on a lease that is gone: the pass is dropped as soon as
//! the channel stops saying its token (and its MySQL writes are fenced
//! anyway, see [`crate::store::lease`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::store::Store;
use crate::store::lease::Fence;

/// Longest wait for the release at a clean stop.
const RELEASE_WAIT: Duration = Duration::from_secs(2);

/// One reconciler's claim on a sale's lease.
#[derive(Debug, Clone)]
pub(super) struct Lease {
    store: Store,
    /// The lease's name: the sale's namespace.
    name: String,
    /// This reconciler, unique per process.
    holder: String,
    /// Lifetime of one acquire or renewal.
    ttl: Duration,
}

impl Lease {
    /// A claim on `name` for a new, unique holder id.
    pub(super) fn new(store: Store, name: &str, ttl: Duration) -> Self {
        let holder = format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
        Self {
            store,
            name: name.to_owned(),
            holder,
            ttl,
        }
    }

    /// This reconciler's holder id.
    pub(super) fn holder(&self) -> &str {
        &self.holder
    }

    /// The lease's name.
    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// What a write fenced by `token` carries.
    pub(super) fn fence(&self, token: u64) -> Fence {
        Fence {
            name: self.name.clone(),
            holder: self.holder.clone(),
            token,
        }
    }

    /// Acquires or renews; `Some(token)` when we hold it now.
    pub(super) async fn acquire(&self) -> Result<Option<u64>, sqlx::Error> {
        let state = self
            .store
            .acquire_lease(&self.name, &self.holder, self.ttl)
            .await?;
        Ok(state.held_by(&self.holder))
    }

    /// Expires the lease now if we hold it.
    pub(super) async fn release(&self) -> Result<bool, sqlx::Error> {
        self.store.release_lease(&self.name, &self.holder).await
    }
}

/// Renews [`Lease`] and publishes whether it is held.
pub(super) struct Keeper {
    lease: Lease,
    metrics: Arc<Metrics>,
    held: watch::Sender<Option<u64>>,
}

impl Keeper {
    /// A keeper of `lease`, and the receiving end of what it holds.
    pub(super) fn new(lease: Lease, metrics: Arc<Metrics>) -> (Self, watch::Receiver<Option<u64>>) {
        let (held, receiver) = watch::channel(None);
        metrics.reconciler_lease.set(0);
        let keeper = Self {
            lease,
            metrics,
            held,
        };
        (keeper, receiver)
    }

    /// Acquires and renews every third of the lease's lifetime until
    /// `stop`, then releases it.
    ///
    /// The lease counts as held until `sent + ttl`, `sent` being when the
    /// last successful renewal was sent: MySQL set the expiry later than
    /// that, so nobody else can hold it before then. A renewal that fails
    /// or hangs keeps the lease until that moment, not longer.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future is a crash: nothing is released, and the lease
    /// passes to another reconciler once it expires.
    pub(super) async fn run(self, stop: CancellationToken) {
        let ttl = self.lease.ttl;
        let renew_every = ttl / 3;
        let mut valid_until: Option<Instant> = None;
        loop {
            let sent = Instant::now();
            match tokio::time::timeout(renew_every, self.lease.acquire()).await {
                Ok(Ok(Some(token))) => {
                    valid_until = Some(sent + ttl);
                    self.publish(Some(token));
                }
                Ok(Ok(None)) => {
                    valid_until = None;
                    self.publish(None);
                }
                Ok(Err(error)) => {
                    tracing::warn!(%error, lease = %self.lease.name, "could not acquire or renew the reconciler lease");
                }
                Err(_elapsed) => {
                    tracing::warn!(lease = %self.lease.name, wait = ?renew_every, "acquiring or renewing the reconciler lease timed out");
                }
            }
            let next = sent + renew_every;
            let wake = valid_until.map_or(next, |until| until.min(next));
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep_until(wake) => {}
            }
            if valid_until.is_some_and(|until| Instant::now() >= until) {
                tracing::warn!(lease = %self.lease.name, "the reconciler lease expired before it could be renewed");
                valid_until = None;
                self.publish(None);
            }
        }
        self.publish(None);
        // Also when we think we lost it: a renewal whose answer we did not
        // wait for may have renewed it (the statement only touches our row).
        match tokio::time::timeout(RELEASE_WAIT, self.lease.release()).await {
            Ok(Ok(true)) => {
                tracing::info!(lease = %self.lease.name, "released the reconciler lease")
            }
            Ok(Ok(false)) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, lease = %self.lease.name, "could not release the reconciler lease; it expires on its own");
            }
            Err(_elapsed) => {
                tracing::warn!(lease = %self.lease.name, "releasing the reconciler lease timed out; it expires on its own");
            }
        }
    }

    /// Publishes `held` (when it changed) on the channel and the gauge.
    fn publish(&self, held: Option<u64>) {
        let changed = self.held.send_if_modified(|current| {
            let changed = *current != held;
            *current = held;
            changed
        });
        self.metrics.reconciler_lease.set(i64::from(held.is_some()));
        if changed {
            match held {
                Some(token) => {
                    tracing::info!(lease = %self.lease.name, holder = %self.lease.holder, token, "holding the reconciler lease");
                }
                None => {
                    tracing::info!(lease = %self.lease.name, holder = %self.lease.holder, "not holding the reconciler lease");
                }
            }
        }
    }
}
