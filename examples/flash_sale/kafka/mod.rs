//! Kafka: the clients (real brokers or librdkafka's in-process mock
//! cluster), the message format, the producer behind the batcher, and the
//! consumer loop that hands batches to the [`Store`](crate::store::Store).

pub mod client;
pub mod consumer;
pub mod message;
pub mod producer;
