//! A purchase request and its validation.

use crate::error::InvalidInput;

/// The most items one [`Deduction`] may list.
pub const MAX_ITEMS: usize = 64;
/// The longest request id, user id or SKU accepted, in bytes.
pub const MAX_ID_LEN: usize = 128;
/// The largest quantity of one item, and the largest per-user limit.
pub const MAX_QUANTITY: u64 = 1_000_000_000_000;
/// The largest stock of one SKU: Lua numbers are doubles, exact up to 2^53.
pub const MAX_STOCK: u64 = (1 << 53) - 1;

/// One purchase request: who buys what, decided all or nothing.
///
/// # Examples
///
/// ```
/// use seckill_stock_lua::Deduction;
///
/// let order = Deduction {
///     request_id: "4f1c9a".into(),
///     user_id: "user-42".into(),
///     items: vec![("phone".into(), 1), ("case".into(), 2)],
///     per_user_limit: Some(2),
/// };
/// assert!(order.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deduction {
    /// Identifies the request across retries (a uuid from the client is
    /// typical). A repeated id gets the first call's outcome and changes
    /// nothing. At most [`MAX_ID_LEN`] bytes.
    pub request_id: String,
    /// The buyer, counted against `per_user_limit`. At most [`MAX_ID_LEN`] bytes.
    pub user_id: String,
    /// `(sku, quantity)` pairs: each SKU once, each quantity at least 1, at
    /// most [`MAX_ITEMS`] pairs. All SKUs are in the store's namespace.
    pub items: Vec<(String, u64)>,
    /// Most units of each SKU this user may own after the deduction, counting
    /// earlier deductions (refunds give units back). `None`: no limit.
    pub per_user_limit: Option<u64>,
}

impl Deduction {
    /// Checks the request the way [`StockStore::deduct`](crate::StockStore::deduct) does before touching Redis.
    ///
    /// # Errors
    ///
    /// The first problem found: empty or over-long ids, no items, too many
    /// items, a repeated SKU, a zero or too large quantity, a zero limit.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        check_id("request id", &self.request_id)?;
        check_id("user id", &self.user_id)?;
        if self.items.is_empty() {
            return Err(InvalidInput::EmptyItems);
        }
        if self.items.len() > MAX_ITEMS {
            return Err(InvalidInput::TooManyItems {
                count: self.items.len(),
                max: MAX_ITEMS,
            });
        }
        for (i, (sku, qty)) in self.items.iter().enumerate() {
            check_id("SKU", sku)?;
            check_amount(|| format!("quantity of SKU {sku:?}"), *qty, MAX_QUANTITY)?;
            if self.items.iter().take(i).any(|(earlier, _)| earlier == sku) {
                return Err(InvalidInput::DuplicateSku { sku: sku.clone() });
            }
        }
        if let Some(limit) = self.per_user_limit {
            check_amount(|| "per_user_limit".into(), limit, MAX_QUANTITY)?;
        }
        Ok(())
    }
}

/// Refuses an empty id or one longer than [`MAX_ID_LEN`].
pub(crate) fn check_id(field: &'static str, id: &str) -> Result<(), InvalidInput> {
    if id.is_empty() {
        return Err(InvalidInput::EmptyId { field });
    }
    if id.len() > MAX_ID_LEN {
        return Err(InvalidInput::IdTooLong {
            field,
            len: id.len(),
            max: MAX_ID_LEN,
        });
    }
    Ok(())
}

/// Refuses 0 and anything above `max`; `what` names the value in the error
/// (built only on failure: this runs on every deduction).
pub(crate) fn check_amount(
    what: impl FnOnce() -> String,
    value: u64,
    max: u64,
) -> Result<(), InvalidInput> {
    if value == 0 {
        return Err(InvalidInput::Zero { what: what() });
    }
    if value > max {
        return Err(InvalidInput::TooLarge {
            what: what(),
            value,
            max,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(items: Vec<(&str, u64)>) -> Deduction {
        Deduction {
            request_id: "r1".into(),
            user_id: "u1".into(),
            items: items.into_iter().map(|(s, q)| (s.to_owned(), q)).collect(),
            per_user_limit: None,
        }
    }

    #[test]
    fn each_bad_input_has_its_own_error() {
        assert_eq!(order(vec![]).validate(), Err(InvalidInput::EmptyItems));
        assert!(matches!(
            order(vec![("a", 0)]).validate(),
            Err(InvalidInput::Zero { .. })
        ));
        assert!(matches!(
            order(vec![("a", MAX_QUANTITY + 1)]).validate(),
            Err(InvalidInput::TooLarge { .. })
        ));
        assert_eq!(
            order(vec![("a", 1), ("b", 1), ("a", 2)]).validate(),
            Err(InvalidInput::DuplicateSku { sku: "a".into() })
        );
        assert_eq!(
            order(vec![("", 1)]).validate(),
            Err(InvalidInput::EmptyId { field: "SKU" })
        );
        let many: Vec<(String, u64)> = (0..=MAX_ITEMS).map(|i| (i.to_string(), 1)).collect();
        let mut big = order(vec![]);
        big.items = many;
        assert!(matches!(
            big.validate(),
            Err(InvalidInput::TooManyItems { count: 65, max: 64 })
        ));
        let mut long = order(vec![("a", 1)]);
        long.request_id = "x".repeat(MAX_ID_LEN + 1);
        assert!(matches!(
            long.validate(),
            Err(InvalidInput::IdTooLong {
                field: "request id",
                ..
            })
        ));
        let mut no_user = order(vec![("a", 1)]);
        no_user.user_id.clear();
        assert_eq!(
            no_user.validate(),
            Err(InvalidInput::EmptyId { field: "user id" })
        );
        let mut zero_limit = order(vec![("a", 1)]);
        zero_limit.per_user_limit = Some(0);
        assert!(matches!(
            zero_limit.validate(),
            Err(InvalidInput::Zero { .. })
        ));
        assert_eq!(
            order(vec![("a", 1), ("b", MAX_QUANTITY)]).validate(),
            Ok(())
        );
    }
}
