//! Reading `orders` and `failed_orders`.

use std::collections::HashSet;

use seckill::stock_lua::RestoredGrant;

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
    /// Request ids of every order and every refused order of `sku`: each
    /// was granted in Redis first (only grants reach MySQL).
    ///
    /// # Errors
    ///
    /// MySQL fails.
    pub async fn granted_requests(&self, sku: u64) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT CAST(request_id AS CHAR) FROM orders WHERE sku_id = ? \
             UNION ALL SELECT CAST(request_id AS CHAR) FROM failed_orders WHERE sku_id = ?",
        )
        .bind(sku)
        .bind(sku)
        .fetch_all(&self.pool)
        .await
    }

    /// Every grant of `sku` MySQL holds, as stock-lua writes it back after
    /// Redis lost its data: each order, and each refused order (refunded).
    ///
    /// # Errors
    ///
    /// MySQL fails.
    pub async fn durable_grants(&self, sku: u64) -> Result<Vec<RestoredGrant>, sqlx::Error> {
        let rows = sqlx::query_as::<_, (String, u64, u32, i32)>(
            "SELECT CAST(request_id AS CHAR), user_id, quantity, 0 FROM orders WHERE sku_id = ? \
             UNION ALL SELECT CAST(request_id AS CHAR), user_id, quantity, 1 FROM failed_orders \
             WHERE sku_id = ?",
        )
        .bind(sku)
        .bind(sku)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(request_id, user, quantity, refunded)| RestoredGrant {
                request_id,
                user_id: user.to_string(),
                quantity: u64::from(quantity),
                refunded: refunded != 0,
            })
            .collect())
    }

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
