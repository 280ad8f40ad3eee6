//! The `leases` table: one holder per name at a time, on MySQL's clock, with
//! a fencing token.
//!
//! - [`Store::acquire_lease`] takes or renews a lease in one upsert: the
//!   row is ours when it was ours already or had expired; otherwise it is
//!   left alone. The token grows by one exactly when the holder changes,
//!   so a holder that lost the lease (paused, partitioned, slow) and comes
//!   back still carries a token smaller than the current one.
//! - [`Store::release_lease`] expires our row at once (a clean stop hands
//!   over without the others waiting for the expiry).
//! - A write *fenced* by a [`Fence`] locks the lease row inside its own
//!   transaction (`SELECT … FOR UPDATE`) and goes on only while the row
//!   still names our holder and token and has not expired; the lock keeps
//!   anyone from taking the lease over until that transaction ends, so the
//!   write lands entirely inside our tenure or not at all.
//!
//! Every comparison uses `UTC_TIMESTAMP(6)` of the MySQL server, never the
//! clocks of the instances (nor the session time zone, whose daylight
//! saving shifts would move expiries by an hour).

use std::time::Duration;

use sqlx::{MySql, Transaction};

use super::Store;

/// A lease row as it stands after an acquire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseState {
    /// Who holds it.
    pub holder: String,
    /// The fencing token of the current holder.
    pub token: u64,
    /// Whether it is still before `expires_at`.
    pub live: bool,
}

impl LeaseState {
    /// The token, when `holder` holds the lease and it has not expired.
    pub fn held_by(&self, holder: &str) -> Option<u64> {
        (self.live && self.holder == holder).then_some(self.token)
    }
}

/// What a fenced write proves it holds: the lease `name`, held by
/// `holder` with fencing token `token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The lease.
    pub name: String,
    /// Our holder id.
    pub holder: String,
    /// The token we acquired it with.
    pub token: u64,
}

/// Why a fenced write wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum FencedError {
    /// MySQL failed; nothing was written.
    #[error("MySQL: {0}")]
    Db(#[from] sqlx::Error),
    /// The lease is not ours any more (or never was); nothing was written.
    #[error(
        "lease {name:?} lost: {found}, we are {holder:?} with token {token}; nothing was written"
    )]
    LeaseLost {
        /// The lease.
        name: String,
        /// Our holder id.
        holder: String,
        /// Our token.
        token: u64,
        /// What the row says instead.
        found: String,
    },
}

impl Store {
    /// Takes the lease `name` for `holder` for `ttl`, or renews it when
    /// `holder` has it; leaves it alone when another holder's lease is
    /// live. One atomic upsert, then a read of the row: the answer says who
    /// holds it now.
    ///
    /// # Errors
    ///
    /// MySQL fails.
    pub async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<LeaseState, sqlx::Error> {
        let ttl_us = u64::try_from(ttl.as_micros()).unwrap_or(u64::MAX);
        // The assignments run left to right and each one sees the columns
        // assigned before it: `token` is computed from the old holder and
        // expiry, `holder` from the old expiry, `expires_at` from the new
        // holder (ours exactly when we held it or took it over).
        sqlx::query(
            "INSERT INTO leases (name, holder, token, expires_at) \
             VALUES (?, ?, 1, UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND) \
             ON DUPLICATE KEY UPDATE \
             token = IF(holder <> ? AND expires_at <= UTC_TIMESTAMP(6), token + 1, token), \
             holder = IF(holder = ? OR expires_at <= UTC_TIMESTAMP(6), ?, holder), \
             expires_at = IF(holder = ?, UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND, expires_at)",
        )
        .bind(name)
        .bind(holder)
        .bind(ttl_us)
        .bind(holder)
        .bind(holder)
        .bind(holder)
        .bind(holder)
        .bind(ttl_us)
        .execute(&self.pool)
        .await?;
        let (holder, token, live) = sqlx::query_as::<_, (String, u64, i64)>(
            "SELECT CAST(holder AS CHAR), token, CAST(expires_at > UTC_TIMESTAMP(6) AS SIGNED) \
             FROM leases WHERE name = ?",
        )
        .bind(name)
        .fetch_one(&self.pool)
        .await?;
        Ok(LeaseState {
            holder,
            token,
            live: live != 0,
        })
    }

    /// Expires the lease `name` now if `holder` holds it (its token stays,
    /// so the next holder's is larger); `false` when it was not ours.
    ///
    /// # Errors
    ///
    /// MySQL fails.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE leases SET expires_at = UTC_TIMESTAMP(6) - INTERVAL 1 SECOND \
             WHERE name = ? AND holder = ? AND expires_at > UTC_TIMESTAMP(6)",
        )
        .bind(name)
        .bind(holder)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }
}

/// Locks the lease row of `fence` in `tx` and checks it is still ours and
/// live; run it first in a fenced transaction.
///
/// # Errors
///
/// [`FencedError::LeaseLost`] when the row names another holder or token,
/// has expired, or is missing; MySQL failures.
pub(super) async fn check_fence(
    tx: &mut Transaction<'_, MySql>,
    fence: &Fence,
) -> Result<(), FencedError> {
    let row = sqlx::query_as::<_, (String, u64, i64)>(
        "SELECT CAST(holder AS CHAR), token, CAST(expires_at > UTC_TIMESTAMP(6) AS SIGNED) \
         FROM leases WHERE name = ? FOR UPDATE",
    )
    .bind(&fence.name)
    .fetch_optional(&mut **tx)
    .await?;
    let found = match row {
        Some((holder, token, live)) if holder == fence.holder && token == fence.token => {
            if live != 0 {
                return Ok(());
            }
            "our lease expired".to_owned()
        }
        Some((holder, token, live)) => {
            let state = if live != 0 { "live" } else { "expired" };
            format!("held by {holder:?} with token {token} ({state})")
        }
        None => "no lease row".to_owned(),
    };
    Err(FencedError::LeaseLost {
        name: fence.name.clone(),
        holder: fence.holder.clone(),
        token: fence.token,
        found,
    })
}
