//! Lease markers and the guard that gives a lease back when a load is
//! abandoned (error, panic or cancellation), so other processes need not
//! wait for it to expire.

use std::time::Duration;

use rand::Rng;
use seckill_redis::Connection;

use crate::commands;
use crate::entry;

/// A fresh lease marker: the lease tag and 16 random bytes.
pub(crate) fn new_marker() -> Vec<u8> {
    let token: [u8; 16] = rand::rng().random();
    let mut marker = Vec::with_capacity(17);
    marker.push(entry::LEASE);
    marker.extend_from_slice(&token);
    marker
}

/// Releases the lease on drop unless [`LeaseGuard::disarm`] was called.
pub(crate) struct LeaseGuard<B: Connection> {
    conn: B,
    key: String,
    marker: Vec<u8>,
    limit: Duration,
    armed: bool,
}

impl<B: Connection> LeaseGuard<B> {
    pub(crate) fn new(conn: B, key: &str, marker: &[u8], limit: Duration) -> Self {
        LeaseGuard {
            conn,
            key: key.to_owned(),
            marker: marker.to_vec(),
            limit,
            armed: true,
        }
    }

    /// The lease was used or released: nothing to do on drop.
    pub(crate) fn disarm(mut self) {
        self.armed = false;
    }
}

impl<B: Connection> Drop for LeaseGuard<B> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // Best effort: without a runtime the lease simply expires.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let conn = self.conn.clone();
            let key = std::mem::take(&mut self.key);
            let marker = std::mem::take(&mut self.marker);
            let limit = self.limit;
            runtime.spawn(async move {
                let _ =
                    tokio::time::timeout(limit, commands::del_if_equal(&conn, &key, &marker)).await;
            });
        }
    }
}
