//! A product on sale, and the rules for changing one.

use seckill::stock_lua::MAX_STOCK;

/// Longest SKU name, in characters.
pub const MAX_NAME: usize = 200;

/// A product on sale, as MySQL records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sku {
    /// The SKU id.
    pub id: u64,
    /// Display name (1 to [`MAX_NAME`] characters).
    pub name: String,
    /// Price in cents (at most `i64::MAX`).
    pub price_cents: u64,
    /// Units not yet sold according to MySQL (at most [`MAX_STOCK`]).
    pub stock: u64,
    /// Units of this SKU one buyer may hold, across all their orders.
    pub per_user_limit: u64,
}

/// Why a SKU update was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SkuError {
    /// The name is empty (after trimming) or too long.
    #[error("name must be 1 to {MAX_NAME} characters")]
    Name,
    /// The price does not fit MySQL's column.
    #[error("price_cents must be at most {}", i64::MAX)]
    Price,
    /// More units than the stock script can count exactly.
    #[error("stock must be at most {MAX_STOCK}")]
    Stock,
}

impl Sku {
    /// A SKU from an admin's update: the name trimmed and every field in range.
    ///
    /// # Errors
    ///
    /// A field out of its range; the error names it.
    pub fn parse(
        id: u64,
        name: &str,
        price_cents: u64,
        stock: u64,
        per_user_limit: u64,
    ) -> Result<Self, SkuError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME {
            return Err(SkuError::Name);
        }
        if i64::try_from(price_cents).is_err() {
            return Err(SkuError::Price);
        }
        if stock > MAX_STOCK {
            return Err(SkuError::Stock);
        }
        Ok(Self {
            id,
            name: name.to_owned(),
            price_cents,
            stock,
            per_user_limit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_in_range() {
        let sku = Sku::parse(1, "  phone ", 1999, 10, 2).unwrap();
        assert_eq!(
            (sku.name.as_str(), sku.stock, sku.per_user_limit),
            ("phone", 10, 2)
        );
        assert_eq!(Sku::parse(1, " ", 1, 1, 1), Err(SkuError::Name));
        assert_eq!(
            Sku::parse(1, &"é".repeat(201), 1, 1, 1),
            Err(SkuError::Name)
        );
        assert!(Sku::parse(1, &"é".repeat(200), 1, 1, 1).is_ok());
        assert_eq!(Sku::parse(1, "x", u64::MAX, 1, 1), Err(SkuError::Price));
        assert_eq!(
            Sku::parse(1, "x", 1, MAX_STOCK + 1, 1),
            Err(SkuError::Stock)
        );
        assert!(Sku::parse(1, "x", i64::MAX as u64, MAX_STOCK, 1).is_ok());
    }
}
