//! The consumer group's progress as seen from outside the group: what the
//! stock rebuild asks before it trusts MySQL.

use std::sync::Arc;

use rdkafka::error::KafkaError;

use super::lag;
use crate::kafka::client::Kafka;

/// Messages of `topic` that `group` has not committed yet, summed over
/// every partition. Measured by a client of the group that never joins it
/// (no rebalance for the members), on the blocking pool.
///
/// # Errors
///
/// Kafka did not answer (metadata, committed offsets or watermarks).
pub async fn group_lag(kafka: &Arc<Kafka>, group: &str, topic: &str) -> Result<i64, KafkaError> {
    let probe = kafka.consumer(group)?;
    let topic = topic.to_owned();
    let measured = tokio::task::spawn_blocking(move || {
        let sample = lag::measure(&probe, &topic);
        drop(probe);
        sample
    })
    .await
    .map_err(|_| KafkaError::Canceled)?;
    Ok(measured?.group_lag())
}
