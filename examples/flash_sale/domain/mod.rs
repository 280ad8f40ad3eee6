//! The domain: what a flash sale is, with no HTTP, SQL, Kafka or Redis in
//! it. The edges implement its [`ports`]; its rules are unit-tested with
//! in-memory stand-ins.
//!
//! - [`request_id`]: the request-id rule.
//! - [`buyer`]: who buys (an authenticated user, a bound device, an address).
//! - [`blacklist`]: users, addresses and devices refused before any work.
//! - [`purchase`]: a purchase request and its answers.
//! - [`sale`]: the decision chain (limits, sold-out flag, deduction, hand-off).
//! - [`order`]: an order's states, the per-user admission rule, the status lookup.
//! - [`sku`], [`catalog`]: products, their view and the admin's update.
//! - [`ports`]: the traits the edges implement.

pub mod blacklist;
pub mod buyer;
pub mod catalog;
pub mod order;
pub mod ports;
pub mod purchase;
pub mod request_id;
pub mod sale;
pub mod sku;
