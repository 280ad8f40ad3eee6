//! The miss path, run once per key by the singleflight leader: re-check
//! the key, load, and write back as the [`Backfill`] mode says.

use std::sync::Arc;
use std::time::Duration;

use seckill_redis::Connection;
use tokio::time::Instant;

use crate::cache::Cache;
use crate::codec::Codec;
use crate::commands;
use crate::entry::{self, Entry};
use crate::error::RedisError;
use crate::jitter::jittered_millis;
use crate::lease::{LeaseGuard, new_marker};
use crate::load::Load;
use crate::options::{Backfill, OnRedisError};
use crate::shared::{FlightError, Flown, Shared};
use crate::stats::bump;

/// First pause while polling another process's lease; doubles up to
/// [`MAX_POLL`].
const FIRST_POLL: Duration = Duration::from_millis(2);
const MAX_POLL: Duration = Duration::from_millis(50);

/// What the leader's loader produced, kept typed for the leader itself.
pub(crate) type Slot<V> = Option<Option<V>>;

impl<B: Connection, C: Codec> Cache<B, C> {
    /// The flight's work: returns the entry every caller of the flight gets.
    pub(crate) async fn fill<F: Load>(
        &self,
        read_key: &str,
        degraded: bool,
        load: F,
        slot: &mut Slot<F::Value>,
    ) -> Result<Flown, FlightError> {
        if degraded {
            return self.run_loader(load, slot).await.map(Flown::fresh);
        }
        match self.inner.options.backfill {
            Backfill::Lease => self.fill_under_lease(read_key, load, slot).await,
            _ => self
                .fill_set_nx(read_key, load, slot)
                .await
                .map(Flown::fresh),
        }
    }

    /// Re-check (a flight that just ended may have filled the key), load,
    /// then `SET NX`.
    async fn fill_set_nx<F: Load>(
        &self,
        read_key: &str,
        load: F,
        slot: &mut Slot<F::Value>,
    ) -> Result<Shared, FlightError> {
        let inner = &*self.inner;
        match self.redis(commands::get(&inner.conn, read_key)).await {
            Ok(Some(bytes)) => {
                if let Some(shared) = self.usable(read_key, bytes).await {
                    return Ok(shared);
                }
            }
            Ok(None) => {}
            Err(error) => return self.without_redis(error, load, slot).await,
        }
        let shared = self.run_loader(load, slot).await?;
        let ttl_ms = self.ttl_ms(&shared);
        if let Ok(false) = self
            .redis(commands::set_nx(
                &inner.conn,
                read_key,
                shared.bytes(),
                ttl_ms,
            ))
            .await
        {
            bump(&inner.counters.fills_refused);
        }
        Ok(shared)
    }

    /// Take the lease (or find the entry, or wait for another holder), load
    /// under it, then fill only while the lease is still ours.
    async fn fill_under_lease<F: Load>(
        &self,
        read_key: &str,
        load: F,
        slot: &mut Slot<F::Value>,
    ) -> Result<Flown, FlightError> {
        let inner = &*self.inner;
        let options = &inner.options;
        let started = Instant::now();
        let marker = new_marker();
        let lease_ms = u64::try_from(options.lease_ttl.as_millis()).unwrap_or(u64::MAX);
        let deadline = Instant::now() + options.lease_wait;
        let mut pause = FIRST_POLL;
        let mut waited = false;
        loop {
            let seen = match self
                .redis(commands::take_lease(
                    &inner.conn,
                    read_key,
                    &marker,
                    lease_ms,
                ))
                .await
            {
                Err(error) => {
                    return self
                        .without_redis(error, load, slot)
                        .await
                        .map(Flown::fresh);
                }
                Ok(None) => {
                    return self
                        .load_under_lease(read_key, &marker, started, load, slot)
                        .await;
                }
                Ok(Some(bytes)) => bytes,
            };
            match Entry::parse(&seen) {
                Entry::Lease => {}
                Entry::Unreadable => self.drop_unreadable(read_key, &seen).await,
                Entry::Value(_) | Entry::NotFound => {
                    if let Some(shared) = Shared::from_read(seen) {
                        return Ok(Flown::fresh(shared));
                    }
                    continue;
                }
            }
            if !waited {
                waited = true;
                bump(&inner.counters.lease_waits);
            }
            let now = Instant::now();
            if now >= deadline {
                bump(&inner.counters.lease_busy);
                return Err(FlightError::LeaseBusy(pause.max(MAX_POLL)));
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(MAX_POLL);
        }
    }

    async fn load_under_lease<F: Load>(
        &self,
        read_key: &str,
        marker: &[u8],
        started: Instant,
        load: F,
        slot: &mut Slot<F::Value>,
    ) -> Result<Flown, FlightError> {
        let inner = &*self.inner;
        // Gives the lease back if the load is cancelled or panics.
        let guard = LeaseGuard::new(
            inner.conn.clone(),
            read_key,
            marker,
            inner.options.redis_timeout,
        );
        let loaded = self.run_loader(load, slot).await;
        let outcome = match &loaded {
            Ok(shared) => {
                let ttl_ms = self.ttl_ms(shared);
                self.redis(commands::fill_lease(
                    &inner.conn,
                    read_key,
                    marker,
                    shared.bytes(),
                    ttl_ms,
                ))
                .await
            }
            // Nothing to store: let the next reader take the lease at once.
            Err(_) => self
                .redis(commands::del_if_equal(&inner.conn, read_key, marker))
                .await
                .map(|_| true),
        };
        let revoked = matches!(outcome, Ok(false));
        if revoked {
            bump(&inner.counters.fills_refused);
        }
        guard.disarm();
        loaded.map(|entry| Flown {
            entry,
            revoked_since: revoked.then_some(started),
        })
    }

    /// Redis failed inside the flight: load without it, or fail, as
    /// [`OnRedisError`] says.
    async fn without_redis<F: Load>(
        &self,
        error: RedisError,
        load: F,
        slot: &mut Slot<F::Value>,
    ) -> Result<Shared, FlightError> {
        match self.inner.options.on_redis_error {
            OnRedisError::Fail => Err(FlightError::Redis(error)),
            _ => {
                bump(&self.inner.counters.degraded);
                self.run_loader(load, slot).await
            }
        }
    }

    /// Runs the caller's loader and encodes its answer.
    async fn run_loader<F: Load>(
        &self,
        load: F,
        slot: &mut Slot<F::Value>,
    ) -> Result<Shared, FlightError> {
        let inner = &*self.inner;
        bump(&inner.counters.loads);
        match load().await {
            Ok(Some(value)) => {
                let mut bytes = vec![entry::VALUE];
                inner
                    .codec
                    .encode(&value, &mut bytes)
                    .map_err(FlightError::Codec)?;
                *slot = Some(Some(value));
                Ok(Shared::Value(bytes.into()))
            }
            Ok(None) => {
                *slot = Some(None);
                Ok(Shared::NotFound)
            }
            Err(error) => {
                bump(&inner.counters.load_errors);
                Err(FlightError::Load(Arc::new(error)))
            }
        }
    }

    /// A usable entry from the bytes read; unreadable bytes are deleted, and
    /// so is a lease-shaped entry without a TTL (this crate never writes
    /// one; left in place, it would refuse every `SET NX` forever).
    async fn usable(&self, read_key: &str, bytes: Vec<u8>) -> Option<Shared> {
        match Entry::parse(&bytes) {
            Entry::Unreadable => {
                self.drop_unreadable(read_key, &bytes).await;
                None
            }
            Entry::Lease => {
                let _ = self
                    .redis(commands::del_if_persistent(
                        &self.inner.conn,
                        read_key,
                        &bytes,
                    ))
                    .await;
                None
            }
            Entry::Value(_) | Entry::NotFound => Shared::from_read(bytes),
        }
    }

    /// A jittered TTL for the entry, in milliseconds.
    fn ttl_ms(&self, shared: &Shared) -> u64 {
        let options = &self.inner.options;
        match shared {
            Shared::Value(_) => jittered_millis(options.ttl, options.jitter),
            Shared::NotFound => jittered_millis(options.not_found_ttl, options.jitter),
        }
    }
}
