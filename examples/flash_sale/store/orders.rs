//! Reading `orders` and `failed_orders`.

use std::collections::HashSet;

use super::{Store, placeholders};
use crate::domain::order::{FailReason, Ledger, Order, StoredOrder};
use crate::domain::ports::{OrderBook, Service, Unavailable};
use crate::domain::request_id::RequestId;

#[derive(sqlx::FromRow)]
struct OrderRow {
    id: u64,
    user_id: u64,
    sku_id: u64,
    quantity: u32,
}

impl Store {
    /// What MySQL holds for `request_id`: its order, its refusal, or nothing.
    ///
    /// # Errors
    ///
    /// MySQL fails.
    pub async fn find_order(&self, request_id: &RequestId) -> Result<Ledger, sqlx::Error> {
        let row = sqlx::query_as::<_, OrderRow>(
            "SELECT id, user_id, sku_id, quantity FROM orders WHERE request_id = ?",
        )
        .bind(request_id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = row {
            let order = Order {
                request_id: request_id.clone(),
                user_id: row.user_id,
                sku_id: row.sku_id,
                quantity: row.quantity,
            };
            return Ok(Ledger::Created(StoredOrder {
                order_id: row.id,
                order,
            }));
        }
        let reason = sqlx::query_scalar::<_, String>(
            "SELECT reason FROM failed_orders WHERE request_id = ?",
        )
        .bind(request_id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(match reason {
            Some(reason) => Ledger::Failed(FailReason::parse(&reason)),
            None => Ledger::Nothing,
        })
    }

    /// The request ids among `ids` that MySQL has decided: in `orders` or in
    /// `failed_orders` (one query; the reconciler asks once per log page).
    ///
    /// # Errors
    ///
    /// MySQL fails.
    pub async fn decided_requests(&self, ids: &[&str]) -> Result<HashSet<String>, sqlx::Error> {
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        let marks = placeholders(ids.len());
        let sql = format!(
            "SELECT CAST(request_id AS CHAR) FROM orders WHERE request_id IN ({marks}) \
             UNION SELECT CAST(request_id AS CHAR) FROM failed_orders WHERE request_id IN ({marks})"
        );
        let mut query = sqlx::query_scalar::<_, String>(&sql);
        for _ in 0..2 {
            for id in ids {
                query = query.bind(*id);
            }
        }
        Ok(query.fetch_all(&self.pool).await?.into_iter().collect())
    }
}

impl OrderBook for Store {
    async fn ledger(&self, request_id: &RequestId) -> Result<Ledger, Unavailable> {
        self.find_order(request_id)
            .await
            .map_err(|e| Unavailable::new(Service::Database, e))
    }
}
