//! The purchase decision: limits, the local sold-out flag, the Redis
//! deduction, and the hand-off of a granted order to Kafka.

pub mod answered;
pub mod limits;
pub mod purchase;
pub mod sold_out;

/// Units of one SKU a user may buy. MySQL enforces the same rule with the
/// unique key `(user_id, sku_id)` on `orders`, so it holds even if Redis
/// loses writes in a failover; the two must change together.
pub const PER_USER_LIMIT: u64 = 1;
