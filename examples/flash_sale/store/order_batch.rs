//! The consumer's transaction: a batch of granted orders becomes rows, in
//! one MySQL transaction, idempotently.
//!
//! 1. Lock the batch's SKU rows in id order (two transactions on the same
//!    SKUs queue up instead of deadlocking); read each SKU's per-user limit.
//! 2. Read what is already decided (request ids in `orders` or
//!    `failed_orders`) and the units each buyer of the batch already holds.
//! 3. Per order: decided before → a duplicate (a refusal stays refused,
//!    even if stock was added since); over the per-user limit
//!    ([`Order::admit`]) → refused; otherwise insert it and take its units
//!    with `WHERE stock >= ?` (no row → refused, out of stock).
//! 4. Refusals go to `failed_orders`.
//!
//! Every refused order, now or by an earlier delivery, is returned so the
//! caller refunds it in Redis after the commit (a refund is idempotent, so a
//! crash between the commit and the refund is healed by the redelivery).
//!
//! The reconciler runs the same transaction fenced by its lease
//! ([`Store::write_orders_fenced`]) for what Kafka did not deliver.

use std::collections::{BTreeSet, HashMap, HashSet};

use sqlx::error::ErrorKind;
use sqlx::{MySql, Transaction};

use super::lease::{Fence, FencedError, check_fence};
use super::{Store, StoreError, placeholders};
use crate::domain::order::{FailReason, Order};
use crate::domain::request_id::RequestId;

/// What one committed transaction did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Written {
    /// New order rows.
    pub created: u64,
    /// Orders decided before (redeliveries, republishes).
    pub duplicate: u64,
    /// New refusals.
    pub failed: u64,
    /// Refused orders to refund in Redis (now or by an earlier delivery), each once.
    pub refunds: Vec<RequestId>,
}

impl Store {
    /// Writes `orders` in one transaction (see the module docs), through
    /// the MySQL breaker and its timeout when the store is guarded.
    ///
    /// # Errors
    ///
    /// The breaker rejected it or MySQL failed: nothing was written. Timed
    /// out: the transaction may have committed (a retry is a no-op for
    /// what it wrote).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future rolls the transaction back, unless its commit
    /// was already sent.
    pub async fn write_orders(&self, orders: &[Order]) -> Result<Written, StoreError> {
        if orders.is_empty() {
            return Ok(Written::default());
        }
        self.guard(|| async {
            let mut tx = self.pool.begin().await?;
            let written = write_batch(&mut tx, orders).await?;
            tx.commit().await?;
            Ok(written)
        })
        .await
    }

    /// [`write_orders`](Self::write_orders) fenced by a lease: the same
    /// transaction, which first locks the lease row and goes on only while
    /// `fence` still holds it (see [`super::lease`]). The reconciler writes
    /// what Kafka did not deliver this way; the consumer's writes are not
    /// fenced (they are idempotent and need no single writer).
    ///
    /// # Errors
    ///
    /// [`FencedError::LeaseLost`] or MySQL fails; nothing was written.
    pub async fn write_orders_fenced(
        &self,
        orders: &[Order],
        fence: &Fence,
    ) -> Result<Written, FencedError> {
        if orders.is_empty() {
            return Ok(Written::default());
        }
        let mut tx = self.pool.begin().await?;
        check_fence(&mut tx, fence).await?;
        let written = write_batch(&mut tx, orders).await?;
        tx.commit().await?;
        Ok(written)
    }

    /// The request ids among `ids` that MySQL refused (in `failed_orders`):
    /// each must be refunded in Redis, which a crash between the commit and
    /// the refund can leave undone (the reconciler checks and heals it).
    ///
    /// # Errors
    ///
    /// MySQL fails.
    pub async fn refused_requests(&self, ids: &[&str]) -> Result<HashSet<String>, sqlx::Error> {
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        let sql = format!(
            "SELECT CAST(request_id AS CHAR) FROM failed_orders WHERE request_id IN ({})",
            placeholders(ids.len())
        );
        let mut query = sqlx::query_scalar::<_, String>(&sql);
        for id in ids {
            query = query.bind(*id);
        }
        Ok(query.fetch_all(&self.pool).await?.into_iter().collect())
    }
}

/// The body of the transaction (steps 1 to 4 of the module docs), on a
/// non-empty batch; the caller commits.
async fn write_batch(
    tx: &mut Transaction<'_, MySql>,
    orders: &[Order],
) -> Result<Written, sqlx::Error> {
    let mut written = Written::default();
    let limits = lock_skus(tx, orders).await?;
    let mut decided = decided(tx, orders).await?;
    let mut held = held_units(tx, orders).await?;
    let mut refunds = BTreeSet::new();
    for order in orders {
        if let Some(refused) = decided.get(&order.request_id) {
            written.duplicate += 1;
            if *refused {
                refunds.insert(order.request_id.clone());
            }
            continue;
        }
        // A SKU with no row: nothing can be sold of it.
        let limit = limits.get(&order.sku_id).copied();
        let holding = held.entry((order.user_id, order.sku_id)).or_default();
        let admitted = match limit {
            None => Err(FailReason::OutOfStock),
            Some(limit) => order.admit(*holding, limit),
        };
        let placed = match admitted {
            Ok(()) => place(tx, order).await?,
            Err(reason) => Placed::Refused(reason),
        };
        match placed {
            Placed::Created => {
                written.created += 1;
                *holding += u64::from(order.quantity);
                decided.insert(order.request_id.clone(), false);
            }
            Placed::Duplicate => {
                written.duplicate += 1;
                decided.insert(order.request_id.clone(), false);
            }
            Placed::Refused(reason) => {
                if record_failure(tx, order, reason).await? {
                    written.failed += 1;
                } else {
                    written.duplicate += 1;
                }
                decided.insert(order.request_id.clone(), true);
                refunds.insert(order.request_id.clone());
            }
        }
    }
    written.refunds = refunds.into_iter().collect();
    Ok(written)
}

/// How MySQL took one order.
enum Placed {
    Created,
    /// The request id is already in `orders`.
    Duplicate,
    Refused(FailReason),
}

/// Locks the batch's SKU rows in id order; their per-user limits.
async fn lock_skus(
    tx: &mut Transaction<'_, MySql>,
    orders: &[Order],
) -> Result<HashMap<u64, u64>, sqlx::Error> {
    let skus: BTreeSet<u64> = orders.iter().map(|o| o.sku_id).collect();
    let sql = format!(
        "SELECT id, per_user_limit FROM skus WHERE id IN ({}) ORDER BY id FOR UPDATE",
        placeholders(skus.len())
    );
    let mut query = sqlx::query_as::<_, (u64, u64)>(&sql);
    for sku in skus {
        query = query.bind(sku);
    }
    Ok(query.fetch_all(&mut **tx).await?.into_iter().collect())
}

/// Request ids of the batch MySQL decided before: `false` for an order
/// row, `true` for a refusal.
async fn decided(
    tx: &mut Transaction<'_, MySql>,
    orders: &[Order],
) -> Result<HashMap<RequestId, bool>, sqlx::Error> {
    let ids: BTreeSet<&str> = orders.iter().map(|o| o.request_id.as_str()).collect();
    let marks = placeholders(ids.len());
    let sql = format!(
        "SELECT CAST(request_id AS CHAR), 0 FROM orders WHERE request_id IN ({marks}) \
         UNION ALL SELECT CAST(request_id AS CHAR), 1 FROM failed_orders WHERE request_id IN ({marks})"
    );
    let mut query = sqlx::query_as::<_, (String, i32)>(&sql);
    for _ in 0..2 {
        for id in &ids {
            query = query.bind(*id);
        }
    }
    let rows = query.fetch_all(&mut **tx).await?;
    Ok(rows
        .into_iter()
        // Ids come from the batch, so they parse; anything else is skipped.
        .filter_map(|(id, refused)| Some((RequestId::parse(id).ok()?, refused != 0)))
        .collect())
}

/// Units each buyer of the batch holds of each SKU of the batch (read under
/// the SKU locks, so no other transaction adds to them meanwhile).
async fn held_units(
    tx: &mut Transaction<'_, MySql>,
    orders: &[Order],
) -> Result<HashMap<(u64, u64), u64>, sqlx::Error> {
    let users: BTreeSet<u64> = orders.iter().map(|o| o.user_id).collect();
    let skus: BTreeSet<u64> = orders.iter().map(|o| o.sku_id).collect();
    let sql = format!(
        "SELECT user_id, sku_id, CAST(SUM(quantity) AS UNSIGNED) FROM orders \
         WHERE user_id IN ({}) AND sku_id IN ({}) GROUP BY user_id, sku_id",
        placeholders(users.len()),
        placeholders(skus.len())
    );
    let mut query = sqlx::query_as::<_, (u64, u64, u64)>(&sql);
    for user in users {
        query = query.bind(user);
    }
    for sku in skus {
        query = query.bind(sku);
    }
    let rows = query.fetch_all(&mut **tx).await?;
    let pairs: HashSet<(u64, u64)> = orders.iter().map(|o| (o.user_id, o.sku_id)).collect();
    Ok(rows
        .into_iter()
        .filter(|(user, sku, _)| pairs.contains(&(*user, *sku)))
        .map(|(user, sku, units)| ((user, sku), units))
        .collect())
}

/// Inserts the order and takes its units.
///
/// Instead of a savepoint per order (two more round trips for every order),
/// the rare out-of-stock case deletes the row it just inserted: inside the
/// transaction nobody else sees it, and the effect is the same.
async fn place(tx: &mut Transaction<'_, MySql>, order: &Order) -> Result<Placed, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO orders (request_id, user_id, sku_id, quantity) VALUES (?, ?, ?, ?)",
    )
    .bind(order.request_id.as_str())
    .bind(order.user_id)
    .bind(order.sku_id)
    .bind(order.quantity)
    .execute(&mut **tx)
    .await;
    // A failed statement is rolled back on its own; the transaction goes on.
    let id = match inserted {
        Ok(done) => done.last_insert_id(),
        // The only unique key left is the request id: a redelivery that
        // raced past the read of decided ids (a second consumer group).
        Err(sqlx::Error::Database(db)) if db.kind() == ErrorKind::UniqueViolation => {
            return Ok(Placed::Duplicate);
        }
        Err(error) => return Err(error),
    };
    let taken = sqlx::query("UPDATE skus SET stock = stock - ? WHERE id = ? AND stock >= ?")
        .bind(order.quantity)
        .bind(order.sku_id)
        .bind(order.quantity)
        .execute(&mut **tx)
        .await?;
    if taken.rows_affected() == 0 {
        sqlx::query("DELETE FROM orders WHERE id = ?")
            .bind(id)
            .execute(&mut **tx)
            .await?;
        return Ok(Placed::Refused(FailReason::OutOfStock));
    }
    Ok(Placed::Created)
}

/// Records a refused order; `false` when it was recorded before.
async fn record_failure(
    tx: &mut Transaction<'_, MySql>,
    order: &Order,
    reason: FailReason,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO failed_orders (request_id, user_id, sku_id, quantity, reason) \
         VALUES (?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE request_id = request_id",
    )
    .bind(order.request_id.as_str())
    .bind(order.user_id)
    .bind(order.sku_id)
    .bind(order.quantity)
    .bind(reason.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() > 0)
}
