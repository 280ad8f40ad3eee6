//! The order message on Kafka: the orders of one SKU in one batch.
//!
//! The batcher groups orders, and the producer sends one message per SKU of a
//! batch (key = the SKU id, so a SKU's orders stay in one partition and in
//! order): the seed's "aggregate messages before Kafka".

use serde::{Deserialize, Serialize};

/// Longest request id, in bytes (`orders.request_id` is `VARCHAR(64)`).
pub const MAX_REQUEST_ID: usize = 64;

/// Whether `id` is a request id the app takes and MySQL stores: 1 to
/// [`MAX_REQUEST_ID`] visible ASCII characters (no spaces).
pub fn is_valid_request_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_REQUEST_ID && id.bytes().all(|b| b.is_ascii_graphic())
}

/// One order: a deduction Redis granted, on its way to MySQL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// The client's request id (unique in MySQL).
    pub request_id: String,
    /// The buyer.
    pub user_id: u64,
    /// The SKU bought.
    pub sku_id: u64,
    /// Units bought.
    pub quantity: u32,
}

/// The payload of one Kafka message, as written.
#[derive(Serialize)]
struct Outgoing<'a> {
    orders: &'a [Order],
}

/// The payload of one Kafka message, as read.
#[derive(Deserialize)]
struct Incoming {
    orders: Vec<Order>,
}

/// Encodes orders (all of one SKU) as one message payload.
pub fn encode(orders: &[Order]) -> Vec<u8> {
    // Serializing strings and integers into a Vec cannot fail.
    serde_json::to_vec(&Outgoing { orders }).unwrap_or_default()
}

/// Decodes a message payload.
///
/// # Errors
///
/// The payload is not a batch of orders.
pub fn decode(payload: &[u8]) -> Result<Vec<Order>, serde_json::Error> {
    Ok(serde_json::from_slice::<Incoming>(payload)?.orders)
}

/// The message key of a SKU's orders.
pub fn key(sku_id: u64) -> String {
    sku_id.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let orders = vec![
            Order {
                request_id: "a".into(),
                user_id: 1,
                sku_id: 7,
                quantity: 1,
            },
            Order {
                request_id: "b".into(),
                user_id: 2,
                sku_id: 7,
                quantity: 2,
            },
        ];
        assert_eq!(decode(&encode(&orders)).unwrap(), orders);
        assert!(decode(b"{\"orders\": 3}").is_err());
        assert!(decode(b"not json").is_err());
    }
}
