//! The order message on Kafka: the orders of one SKU in one batch.
//!
//! The batcher groups orders, and the producer sends one message per SKU of a
//! batch (key = the SKU id, so a SKU's orders stay in one partition and in
//! order): the seed's "aggregate messages before Kafka".
//!
//! Payload: `{"orders": [{"request_id", "user_id", "sku_id", "quantity"}, …]}`.

use serde::{Deserialize, Serialize};

use crate::domain::order::Order;

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

/// Why a payload is not a batch of orders.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON of the right shape, or a request id that breaks the rule.
    #[error("not a batch of orders: {0}")]
    Shape(#[from] serde_json::Error),
    /// An order of no units.
    #[error("order {0} has a quantity of 0")]
    NoUnits(String),
}

/// Encodes orders (all of one SKU) as one message payload.
pub fn encode(orders: &[Order]) -> Vec<u8> {
    // Serializing strings and integers into a Vec cannot fail.
    serde_json::to_vec(&Outgoing { orders }).unwrap_or_default()
}

/// Decodes a message payload. A message with one bad order is refused
/// whole: the producer never writes one, so it is not ours.
///
/// # Errors
///
/// The payload is not a batch of storable orders.
pub fn decode(payload: &[u8]) -> Result<Vec<Order>, DecodeError> {
    let orders = serde_json::from_slice::<Incoming>(payload)?.orders;
    if let Some(empty) = orders.iter().find(|o| o.quantity == 0) {
        return Err(DecodeError::NoUnits(empty.request_id.to_string()));
    }
    Ok(orders)
}

/// The message key of a SKU's orders.
pub fn key(sku_id: u64) -> String {
    sku_id.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::request_id::RequestId;

    #[test]
    fn round_trip() {
        let orders = vec![
            Order {
                request_id: RequestId::parse("a").unwrap(),
                user_id: 1,
                sku_id: 7,
                quantity: 1,
            },
            Order {
                request_id: RequestId::parse("b").unwrap(),
                user_id: 2,
                sku_id: 7,
                quantity: 2,
            },
        ];
        assert_eq!(decode(&encode(&orders)).unwrap(), orders);
        assert!(decode(b"{\"orders\": 3}").is_err());
        assert!(decode(b"not json").is_err());
        let bad_id = br#"{"orders":[{"request_id":"a b","user_id":1,"sku_id":1,"quantity":1}]}"#;
        assert!(matches!(decode(bad_id), Err(DecodeError::Shape(_))));
        let long_id = format!(
            r#"{{"orders":[{{"request_id":"{}","user_id":1,"sku_id":1,"quantity":1}}]}}"#,
            "x".repeat(65)
        );
        assert!(decode(long_id.as_bytes()).is_err());
        let no_units = br#"{"orders":[{"request_id":"a","user_id":1,"sku_id":1,"quantity":0}]}"#;
        assert!(matches!(decode(no_units), Err(DecodeError::NoUnits(_))));
    }
}
