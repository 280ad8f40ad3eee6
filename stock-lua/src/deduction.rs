//! A purchase request and its validation.

use crate::error::InvalidInput;

/// The most items one [`Deduction`] may list (valid: 1 to 64). It bounds
/// the work of one script call: 3 keys and a few commands per item.
pub const MAX_ITEMS: usize = 64;
/// The longest request id, user id, SKU or log entry id accepted, in bytes
/// (valid: 1 to 128).
pub const MAX_ID_LEN: usize = 128;
/// The largest quantity of one item, and the largest per-user limit
/// (valid: 1 to 10^12).
pub const MAX_QUANTITY: u64 = 1_000_000_000_000;
/// The largest stock of one SKU (valid: 0 to 2^53 - 1): Lua numbers are
/// doubles, exact up to 2^53.
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
    /// nothing; reused for a different request it is
    /// [`Error::RequestConflict`](crate::Error::RequestConflict). 1 to
    /// [`MAX_ID_LEN`] bytes.
    pub request_id: String,
    /// The buyer, counted against `per_user_limit`. 1 to [`MAX_ID_LEN`] bytes.
    pub user_id: String,
    /// `(sku, quantity)` pairs: 1 to [`MAX_ITEMS`] pairs, each SKU once,
    /// each quantity 1 to [`MAX_QUANTITY`]. All SKUs are in the store's
    /// namespace. The order does not matter to the fingerprint.
    pub items: Vec<(String, u64)>,
    /// Most units of each SKU this user may own after the deduction, counting
    /// earlier deductions (refunds give units back). `None`: no limit.
    /// Valid: 1 to [`MAX_QUANTITY`]. Not part of the request's fingerprint:
    /// a retry under a changed limit still replays.
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
            check_amount(|| format!("quantity of SKU {sku:?}"), *qty, 1, MAX_QUANTITY)?;
            if self.items.iter().take(i).any(|(earlier, _)| earlier == sku) {
                return Err(InvalidInput::DuplicateSku { sku: sku.clone() });
            }
        }
        if let Some(limit) = self.per_user_limit {
            check_amount(|| "per_user_limit".into(), limit, 1, MAX_QUANTITY)?;
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

/// Refuses anything outside `min..=max`; `field` names the value in the
/// error (built only on failure: this runs on every deduction).
pub(crate) fn check_amount(
    field: impl FnOnce() -> String,
    value: u64,
    min: u64,
    max: u64,
) -> Result<(), InvalidInput> {
    if value < min || value > max {
        return Err(InvalidInput::OutOfRange {
            field: field(),
            value,
            min,
            max,
        });
    }
    Ok(())
}

/// The digest of what makes two requests "the same request": the buyer and
/// the items (each SKU with its quantity), the items in SKU order so the
/// order they were listed in does not matter. The per-user limit is left
/// out on purpose: it is the seller's policy, not part of what the buyer
/// asked for, and a retry must not turn into a conflict because the limit
/// was changed between two attempts.
///
/// Stored in the request record (field `f`) by the deduct and restore
/// scripts and compared there, atomically, with the digest of a repeated
/// request id: 32 hex digits (128 bits of SHA-1), so a record grows by 32 bytes.
pub(crate) fn fingerprint<'a>(
    user_id: &str,
    items: impl Iterator<Item = (&'a str, u64)>,
) -> String {
    let mut items: Vec<(&str, u64)> = items.collect();
    items.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut hash = sha1_smol::Sha1::new();
    hash.update(b"seckill-stock-request-v1\0");
    // Length prefixes keep the encoding unambiguous whatever the ids contain.
    let mut field = |bytes: &[u8]| {
        hash.update(&(bytes.len() as u64).to_le_bytes());
        hash.update(bytes);
    };
    field(user_id.as_bytes());
    for (sku, qty) in items {
        field(sku.as_bytes());
        field(&qty.to_le_bytes());
    }
    let mut hex = hash.digest().to_string();
    hex.truncate(32);
    hex
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
        assert_eq!(
            order(vec![("a", 0)]).validate(),
            Err(InvalidInput::OutOfRange {
                field: "quantity of SKU \"a\"".into(),
                value: 0,
                min: 1,
                max: MAX_QUANTITY
            })
        );
        assert_eq!(
            order(vec![("a", 0)]).validate().unwrap_err().to_string(),
            "quantity of SKU \"a\" must be 1 to 1000000000000, got 0"
        );
        assert!(matches!(
            order(vec![("a", MAX_QUANTITY + 1)]).validate(),
            Err(InvalidInput::OutOfRange { value, .. }) if value == MAX_QUANTITY + 1
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
            Err(InvalidInput::OutOfRange { ref field, value: 0, min: 1, .. }) if field == "per_user_limit"
        ));
        assert_eq!(
            order(vec![("a", 1), ("b", MAX_QUANTITY)]).validate(),
            Ok(())
        );
    }

    fn fp(user: &str, items: &[(&str, u64)]) -> String {
        fingerprint(user, items.iter().copied())
    }

    #[test]
    fn fingerprint_ignores_item_order_and_sees_every_field() {
        let base = fp("u", &[("a", 1), ("b", 2)]);
        assert_eq!(base.len(), 32);
        assert_eq!(base, fp("u", &[("b", 2), ("a", 1)]));
        for other in [
            fp("v", &[("a", 1), ("b", 2)]),
            fp("u", &[("a", 1), ("b", 3)]),
            fp("u", &[("a", 1), ("c", 2)]),
            fp("u", &[("a", 1)]),
            fp("u", &[("a", 1), ("b", 2), ("c", 1)]),
            // Length prefixes: moving bytes between fields changes the digest.
            fp("ua", &[("", 1), ("b", 2)]),
        ] {
            assert_ne!(base, other);
        }
    }
}
