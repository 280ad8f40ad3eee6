//! The invariants of a sale, read back from MySQL and Redis after the load.

use std::collections::{HashMap, HashSet};

use seckill::stock_lua::ShardedStock;
use sqlx::MySqlPool;

/// One order row of the SKU.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OrderRecord {
    /// The request that created it.
    pub request_id: String,
    /// The buyer.
    pub user_id: u64,
    /// Units.
    pub quantity: u32,
}

/// What MySQL and Redis hold for the SKU after the load.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Readback {
    /// Every order of the SKU.
    pub orders: Vec<OrderRecord>,
    /// Request ids MySQL refused (`failed_orders`) for the SKU.
    pub refused: Vec<String>,
    /// `skus.stock`; `None` when the SKU row is gone.
    pub mysql_stock: Option<u64>,
    /// The Redis stock.
    pub redis_stock: i64,
    /// Units one buyer may hold (`skus.per_user_limit`; 1 when the row is gone).
    pub per_user_limit: u64,
}

/// Why the read-back failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// MySQL failed.
    #[error("MySQL: {0}")]
    Db(#[from] sqlx::Error),
    /// Redis failed.
    #[error("Redis: {0}")]
    Redis(#[from] seckill::stock_lua::Error),
}

impl Readback {
    /// Reads the SKU's orders, refusals and stock from MySQL and Redis.
    ///
    /// # Errors
    ///
    /// MySQL or Redis fails.
    pub async fn read<C: seckill::stock_lua::Connection>(
        db: &MySqlPool,
        stock: &ShardedStock<C>,
        sku: u64,
    ) -> Result<Self, ReadError> {
        let orders = sqlx::query_as::<_, OrderRecord>(
            "SELECT CAST(request_id AS CHAR) AS request_id, user_id, quantity FROM orders WHERE sku_id = ?",
        )
        .bind(sku)
        .fetch_all(db)
        .await?;
        let refused = sqlx::query_scalar(
            "SELECT CAST(request_id AS CHAR) FROM failed_orders WHERE sku_id = ?",
        )
        .bind(sku)
        .fetch_all(db)
        .await?;
        let row: Option<(u64, u64)> =
            sqlx::query_as("SELECT stock, per_user_limit FROM skus WHERE id = ?")
                .bind(sku)
                .fetch_optional(db)
                .await?;
        let (mysql_stock, per_user_limit) = match row {
            Some((stock, limit)) => (Some(stock), limit),
            None => (None, 1),
        };
        let redis_stock = stock.stock(&sku.to_string()).await?;
        Ok(Self {
            orders,
            refused,
            mysql_stock,
            redis_stock,
            per_user_limit,
        })
    }

    /// Units in the SKU's orders.
    pub fn units_sold(&self) -> u64 {
        self.orders.iter().map(|o| u64::from(o.quantity)).sum()
    }
}

/// The invariants; each must be 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Invariants {
    /// Units sold beyond the stock, plus any negative Redis stock.
    pub oversold: u64,
    /// Order rows sharing a request id, and orders of a request the load
    /// never saw queued.
    pub duplicate_orders: u64,
    /// Units buyers hold beyond the SKU's per-user limit, summed.
    pub over_limit: u64,
    /// Requests answered `queued` with no order in MySQL.
    pub lost_orders: u64,
    /// |Redis stock − MySQL stock| + |initial − sold − MySQL stock|.
    pub stock_mismatch: u64,
    /// Retries whose decided answer differed from their request's first one.
    pub inconsistent_retries: u64,
}

impl Invariants {
    /// Checks `read` against a sale of `initial` units in which the load saw
    /// `queued` answered `queued`, could not tell the fate of `unknown`, and
    /// counted `inconsistent_retries`.
    pub fn check(
        initial: u64,
        queued: &HashSet<String>,
        unknown: &HashSet<String>,
        read: &Readback,
        inconsistent_retries: u64,
    ) -> Self {
        let sold = read.units_sold();
        let negative_redis = read.redis_stock.min(0).unsigned_abs();
        let rows = read.orders.len() as u64;
        let ids: HashSet<&str> = read.orders.iter().map(|o| o.request_id.as_str()).collect();
        let mut held: HashMap<u64, u64> = HashMap::new();
        for order in &read.orders {
            *held.entry(order.user_id).or_default() += u64::from(order.quantity);
        }
        let over_limit: u64 = held
            .values()
            .map(|units| units.saturating_sub(read.per_user_limit))
            .sum();
        let phantom = ids
            .iter()
            .filter(|id| !queued.contains(**id) && !unknown.contains(**id))
            .count() as u64;
        let lost = queued
            .iter()
            .filter(|id| !ids.contains(id.as_str()))
            .count() as u64;
        let mysql = i128::from(read.mysql_stock.unwrap_or(0));
        let redis = i128::from(read.redis_stock);
        let expected_mysql = i128::from(initial) - i128::from(sold);
        let mismatch = (redis - mysql).unsigned_abs() + (expected_mysql - mysql).unsigned_abs();
        Self {
            oversold: sold.saturating_sub(initial) + negative_redis,
            duplicate_orders: (rows - ids.len() as u64) + phantom,
            over_limit,
            lost_orders: lost,
            stock_mismatch: u64::try_from(mismatch).unwrap_or(u64::MAX),
            inconsistent_retries,
        }
    }

    /// The invariants by name, in report order.
    pub fn named(&self) -> [(&'static str, u64); 6] {
        [
            ("oversold", self.oversold),
            ("duplicate orders", self.duplicate_orders),
            ("over the per-user limit", self.over_limit),
            ("lost orders", self.lost_orders),
            ("stock mismatch", self.stock_mismatch),
            ("inconsistent retries", self.inconsistent_retries),
        ]
    }

    /// Whether every invariant is 0.
    pub fn hold(&self) -> bool {
        self.named().iter().all(|(_, n)| *n == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(id: &str, user: u64, quantity: u32) -> OrderRecord {
        OrderRecord {
            request_id: id.into(),
            user_id: user,
            quantity,
        }
    }

    fn ids(list: &[&str]) -> HashSet<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_clean_sale_holds() {
        let read = Readback {
            orders: vec![order("a", 1, 1), order("b", 2, 1), order("c", 3, 1)],
            refused: vec![],
            mysql_stock: Some(0),
            redis_stock: 0,
            per_user_limit: 1,
        };
        let inv = Invariants::check(3, &ids(&["a", "b", "c"]), &ids(&[]), &read, 0);
        assert_eq!(inv, Invariants::default());
        assert!(inv.hold());
    }

    #[test]
    fn a_partial_sale_with_stock_left_holds() {
        let read = Readback {
            orders: vec![order("a", 1, 1), order("b", 2, 2)],
            refused: vec!["x".into()],
            mysql_stock: Some(7),
            redis_stock: 7,
            per_user_limit: 2,
        };
        let inv = Invariants::check(10, &ids(&["a", "b"]), &ids(&[]), &read, 0);
        assert!(inv.hold(), "{inv:?}");
    }

    #[test]
    fn overselling_counts_the_extra_units_and_negative_redis_stock() {
        let read = Readback {
            orders: vec![order("a", 1, 1), order("b", 2, 1), order("c", 3, 1)],
            refused: vec![],
            mysql_stock: Some(0),
            redis_stock: -1,
            per_user_limit: 1,
        };
        let inv = Invariants::check(2, &ids(&["a", "b", "c"]), &ids(&[]), &read, 0);
        assert_eq!(inv.oversold, 2);
        // Redis −1 vs MySQL 0, and 2 − 3 − 0 = −1.
        assert_eq!(inv.stock_mismatch, 2);
        assert_eq!(inv.duplicate_orders, 0);
        assert_eq!(inv.lost_orders, 0);
        assert!(!inv.hold());
    }

    #[test]
    fn duplicates_count_extra_rows_per_user_and_phantoms() {
        let read = Readback {
            // User 1 twice; "z" was never queued; "u" had an unknown answer.
            orders: vec![
                order("a", 1, 1),
                order("b", 1, 1),
                order("z", 3, 1),
                order("u", 4, 1),
            ],
            refused: vec![],
            mysql_stock: Some(6),
            redis_stock: 6,
            per_user_limit: 1,
        };
        let inv = Invariants::check(10, &ids(&["a", "b"]), &ids(&["u"]), &read, 0);
        assert_eq!(inv.duplicate_orders, 1);
        assert_eq!(inv.over_limit, 1);
        // With a limit of 2, user 1's two units are within it.
        let within = Readback {
            per_user_limit: 2,
            ..read
        };
        let inv = Invariants::check(10, &ids(&["a", "b"]), &ids(&["u"]), &within, 0);
        assert_eq!((inv.duplicate_orders, inv.over_limit), (1, 0));
        assert_eq!(inv.lost_orders, 0);
        assert_eq!(inv.oversold, 0);
        assert_eq!(inv.stock_mismatch, 0);
    }

    #[test]
    fn lost_orders_are_queued_ids_without_a_row() {
        let read = Readback {
            orders: vec![order("a", 1, 1)],
            refused: vec!["c".into()],
            mysql_stock: Some(2),
            redis_stock: 0,
            per_user_limit: 1,
        };
        let inv = Invariants::check(3, &ids(&["a", "b", "c"]), &ids(&[]), &read, 0);
        assert_eq!(inv.lost_orders, 2);
        // Redis 0 vs MySQL 2; 3 − 1 − 2 = 0.
        assert_eq!(inv.stock_mismatch, 2);
        assert_eq!(inv.oversold, 0);
        assert_eq!(inv.duplicate_orders, 0);
    }

    #[test]
    fn nothing_consumed_shows_every_queued_order_lost() {
        // The load sold everything in Redis, the consumer wrote nothing.
        let read = Readback {
            orders: vec![],
            refused: vec![],
            mysql_stock: Some(3),
            redis_stock: 0,
            per_user_limit: 1,
        };
        let inv = Invariants::check(3, &ids(&["a", "b", "c"]), &ids(&[]), &read, 1);
        assert_eq!(
            inv.named(),
            [
                ("oversold", 0),
                ("duplicate orders", 0),
                ("over the per-user limit", 0),
                ("lost orders", 3),
                ("stock mismatch", 3),
                ("inconsistent retries", 1),
            ]
        );
    }

    #[test]
    fn a_missing_sku_row_counts_as_zero_stock() {
        let read = Readback {
            orders: vec![],
            refused: vec![],
            mysql_stock: None,
            redis_stock: 5,
            per_user_limit: 1,
        };
        let inv = Invariants::check(5, &ids(&[]), &ids(&[]), &read, 0);
        assert_eq!(inv.stock_mismatch, 10);
    }
}
