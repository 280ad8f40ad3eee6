//! The `skus` table.

use super::{Store, StoreError};
use crate::domain::sku::Sku;

#[derive(sqlx::FromRow)]
struct SkuRow {
    id: u64,
    name: String,
    price_cents: u64,
    stock: u64,
    per_user_limit: u64,
}

impl From<SkuRow> for Sku {
    fn from(row: SkuRow) -> Self {
        Sku {
            id: row.id,
            name: row.name,
            price_cents: row.price_cents,
            stock: row.stock,
            per_user_limit: row.per_user_limit,
        }
    }
}

impl Store {
    /// Reads one SKU, through the MySQL breaker and its timeout when the
    /// store is guarded.
    ///
    /// # Errors
    ///
    /// The breaker rejected it, it timed out, or MySQL failed.
    pub async fn load_sku(&self, id: u64) -> Result<Option<Sku>, StoreError> {
        let row = self
            .guard(|| {
                sqlx::query_as::<_, SkuRow>(
                    "SELECT id, name, price_cents, stock, per_user_limit FROM skus WHERE id = ?",
                )
                .bind(id)
                .fetch_optional(&self.pool)
            })
            .await?;
        Ok(row.map(Sku::from))
    }

    /// Creates or replaces a SKU, recording it under this store's sale.
    ///
    /// # Errors
    ///
    /// MySQL fails.
    pub async fn upsert_sku(&self, sku: &Sku) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO skus (id, name, price_cents, stock, per_user_limit, namespace) \
             VALUES (?, ?, ?, ?, ?, ?) \
             ON DUPLICATE KEY UPDATE name = VALUES(name), price_cents = VALUES(price_cents), \
             stock = VALUES(stock), per_user_limit = VALUES(per_user_limit), \
             namespace = VALUES(namespace)",
        )
        .bind(sku.id)
        .bind(&sku.name)
        .bind(sku.price_cents)
        .bind(sku.stock)
        .bind(sku.per_user_limit)
        .bind(&*self.namespace)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Ids of every SKU of this store's sale (the reconciler walks their
    /// deduction logs; the stock rebuild checks their stock keys).
    ///
    /// # Errors
    ///
    /// MySQL fails.
    pub async fn sku_ids(&self) -> Result<Vec<u64>, sqlx::Error> {
        sqlx::query_scalar::<_, u64>("SELECT id FROM skus WHERE namespace = ? ORDER BY id")
            .bind(&*self.namespace)
            .fetch_all(&self.pool)
            .await
    }

    /// Units of `sku` MySQL has not sold (`None`: no such SKU).
    ///
    /// # Errors
    ///
    /// MySQL fails.
    pub async fn units_unsold(&self, sku: u64) -> Result<Option<u64>, sqlx::Error> {
        sqlx::query_scalar::<_, u64>("SELECT stock FROM skus WHERE id = ?")
            .bind(sku)
            .fetch_optional(&self.pool)
            .await
    }
}
