//! An order: a unit (or several) of one SKU that Redis granted to a buyer,
//! its states, and the rules that move it between them.
//!
//! ```text
//!                 ┌─ MySQL stored it ─────────────▶ created
//!  (Redis grants) │
//!     pending ────┼─ MySQL refused it (no stock, ─▶ failed(out_of_stock | per_user_limit),
//!                 │  the user over the limit)       its units refunded in Redis
//!                 └─ refunded in Redis ───────────▶ failed(refunded)
//!
//!  refused by the sale itself ─────────────────────▶ failed(sold_out | limit_exceeded | cancelled)
//! ```
//!
//! MySQL is the record: once it holds a row in `orders` or `failed_orders`,
//! that is the answer. Before that, Redis's request record tells a granted
//! (pending) request from a refused or refunded one.

use std::fmt;

use super::request_id::RequestId;

/// One order on its way from a Redis grant to a MySQL row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Order {
    /// The client's request id (unique in MySQL).
    pub request_id: RequestId,
    /// The buyer.
    pub user_id: u64,
    /// The SKU bought.
    pub sku_id: u64,
    /// Units bought (at least 1).
    pub quantity: u32,
}

impl Order {
    /// Whether MySQL may store this order for a buyer who already holds
    /// `held` units of the SKU, under a limit of `limit` units per buyer.
    ///
    /// # Errors
    ///
    /// [`FailReason::PerUserLimit`]: the buyer would hold more than `limit`.
    pub fn admit(&self, held: u64, limit: u64) -> Result<(), FailReason> {
        let after = held.checked_add(u64::from(self.quantity));
        if after.is_none_or(|units| units > limit) {
            Err(FailReason::PerUserLimit)
        } else {
            Ok(())
        }
    }
}

/// Why an order did not come to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailReason {
    /// The sale had no units left when it decided.
    SoldOut,
    /// The buyer already held their share when the sale decided.
    LimitExceeded,
    /// A refund of this request id came first; the request was cancelled.
    Cancelled,
    /// MySQL had too few units (Redis granted more than MySQL holds).
    OutOfStock,
    /// MySQL found the buyer over the per-user limit (Redis forgot a purchase).
    PerUserLimit,
    /// Granted, then its units were given back.
    Refunded,
}

impl FailReason {
    /// Every reason.
    pub const ALL: [FailReason; 6] = [
        FailReason::SoldOut,
        FailReason::LimitExceeded,
        FailReason::Cancelled,
        FailReason::OutOfStock,
        FailReason::PerUserLimit,
        FailReason::Refunded,
    ];

    /// The name in the API and in `failed_orders.reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailReason::SoldOut => "sold_out",
            FailReason::LimitExceeded => "limit_exceeded",
            FailReason::Cancelled => "cancelled",
            FailReason::OutOfStock => "out_of_stock",
            FailReason::PerUserLimit => "per_user_limit",
            FailReason::Refunded => "refunded",
        }
    }

    /// The reason named `name`, if any.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

impl fmt::Display for FailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An order row in MySQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOrder {
    /// The order id MySQL gave it.
    pub order_id: u64,
    /// The order.
    pub order: Order,
}

/// What MySQL holds for a request id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ledger {
    /// An order row.
    Created(StoredOrder),
    /// A `failed_orders` row: MySQL refused it and its units were refunded.
    /// `None`: a reason this version does not know (written by a newer one).
    Failed(Option<FailReason>),
    /// Nothing (yet).
    Nothing,
}

/// What the sale decided for a request id, as Redis recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decided {
    /// Units were taken.
    Granted {
        /// They were given back since.
        refunded: bool,
    },
    /// Refused for this reason ([`FailReason::SoldOut`],
    /// [`FailReason::LimitExceeded`] or [`FailReason::Cancelled`]).
    Refused(FailReason),
}

/// Where an order is, as `GET /api/v1/orders/{request_id}` tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderStatus {
    /// In MySQL.
    Created(StoredOrder),
    /// Granted by Redis, not yet in MySQL.
    Pending,
    /// Will not be an order.
    Failed(FailReason),
    /// Nothing is known of this request id.
    NotFound,
}

impl OrderStatus {
    /// The status from MySQL's record and, when MySQL knows nothing,
    /// Redis's (`decided`; `None` when Redis has no record either). A
    /// `failed_orders` row of an unknown reason reads as refunded: its
    /// units went back.
    pub fn of(ledger: Ledger, decided: Option<Decided>) -> Self {
        match ledger {
            Ledger::Created(order) => OrderStatus::Created(order),
            Ledger::Failed(reason) => OrderStatus::Failed(reason.unwrap_or(FailReason::Refunded)),
            Ledger::Nothing => match decided {
                None => OrderStatus::NotFound,
                Some(Decided::Granted { refunded: true }) => {
                    OrderStatus::Failed(FailReason::Refunded)
                }
                Some(Decided::Granted { refunded: false }) => OrderStatus::Pending,
                Some(Decided::Refused(reason)) => OrderStatus::Failed(reason),
            },
        }
    }

    /// Whether Redis must be asked too (`false` once MySQL decided).
    pub fn needs_redis(ledger: &Ledger) -> bool {
        matches!(ledger, Ledger::Nothing)
    }

    /// The `status` field of the answer.
    pub fn name(&self) -> &'static str {
        match self {
            OrderStatus::Created(_) => "created",
            OrderStatus::Pending => "pending",
            OrderStatus::Failed(_) => "failed",
            OrderStatus::NotFound => "not_found",
        }
    }
}

/// Where the order of `request_id` is: MySQL first, then, when MySQL knows
/// nothing yet, the stock ledger's record of the decision.
///
/// # Errors
///
/// MySQL or the stock ledger failed.
pub async fn lookup(
    book: &impl super::ports::OrderBook,
    stock: &impl super::ports::StockLedger,
    request_id: &RequestId,
) -> Result<OrderStatus, super::ports::Unavailable> {
    let ledger = book.ledger(request_id).await?;
    let decided = if OrderStatus::needs_redis(&ledger) {
        stock.decided(request_id).await?
    } else {
        None
    };
    Ok(OrderStatus::of(ledger, decided))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(quantity: u32) -> Order {
        Order {
            request_id: RequestId::parse("r").unwrap(),
            user_id: 1,
            sku_id: 2,
            quantity,
        }
    }

    #[test]
    fn admission_counts_units_across_orders() {
        assert_eq!(order(1).admit(0, 1), Ok(()));
        assert_eq!(order(1).admit(1, 1), Err(FailReason::PerUserLimit));
        assert_eq!(order(2).admit(1, 3), Ok(()));
        assert_eq!(order(3).admit(1, 3), Err(FailReason::PerUserLimit));
        assert_eq!(
            order(1).admit(u64::MAX, u64::MAX),
            Err(FailReason::PerUserLimit)
        );
    }

    #[test]
    fn reasons_round_trip() {
        for reason in FailReason::ALL {
            assert_eq!(FailReason::parse(reason.as_str()), Some(reason));
        }
        assert_eq!(FailReason::parse("nope"), None);
    }

    #[test]
    fn mysql_decides_before_redis() {
        let stored = StoredOrder {
            order_id: 9,
            order: order(1),
        };
        let granted = Some(Decided::Granted { refunded: false });
        assert_eq!(
            OrderStatus::of(Ledger::Created(stored.clone()), granted),
            OrderStatus::Created(stored)
        );
        assert_eq!(
            OrderStatus::of(Ledger::Failed(Some(FailReason::OutOfStock)), granted),
            OrderStatus::Failed(FailReason::OutOfStock)
        );
        assert_eq!(
            OrderStatus::of(Ledger::Failed(None), granted),
            OrderStatus::Failed(FailReason::Refunded)
        );
    }

    #[test]
    fn redis_tells_pending_from_refused_and_refunded() {
        let status = |decided| OrderStatus::of(Ledger::Nothing, decided);
        assert_eq!(status(None), OrderStatus::NotFound);
        assert_eq!(
            status(Some(Decided::Granted { refunded: false })),
            OrderStatus::Pending
        );
        assert_eq!(
            status(Some(Decided::Granted { refunded: true })),
            OrderStatus::Failed(FailReason::Refunded)
        );
        assert_eq!(
            status(Some(Decided::Refused(FailReason::SoldOut))),
            OrderStatus::Failed(FailReason::SoldOut)
        );
        assert!(OrderStatus::needs_redis(&Ledger::Nothing));
        assert!(!OrderStatus::needs_redis(&Ledger::Failed(None)));
    }
}
