//! The consumer lag gauge, measured off the async threads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::Offset;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use tokio::task::JoinHandle;

use super::LAG_EVERY;
use crate::metrics::Metrics;

/// Longest wait for one partition's watermarks.
const WATERMARK_TIMEOUT: Duration = Duration::from_secs(1);

/// Measures the consumer lag at most once per [`LAG_EVERY`], on the blocking
/// pool (watermarks are a broker round trip).
pub struct LagProbe {
    consumer: Arc<StreamConsumer>,
    topic: Arc<str>,
    metrics: Arc<Metrics>,
    last: Option<Instant>,
    task: Option<JoinHandle<()>>,
}

impl LagProbe {
    pub fn new(consumer: Arc<StreamConsumer>, topic: String, metrics: Arc<Metrics>) -> Self {
        Self {
            consumer,
            topic: topic.into(),
            metrics,
            last: None,
            task: None,
        }
    }

    pub fn maybe_measure(&mut self) {
        let due = self.last.is_none_or(|last| last.elapsed() >= LAG_EVERY);
        let idle = self.task.as_ref().is_none_or(JoinHandle::is_finished);
        if !(due && idle) {
            return;
        }
        self.last = Some(Instant::now());
        let (consumer, topic, metrics) = (
            Arc::clone(&self.consumer),
            Arc::clone(&self.topic),
            Arc::clone(&self.metrics),
        );
        self.task = Some(tokio::task::spawn_blocking(move || {
            match lag(&consumer, &topic) {
                Ok(lag) => {
                    metrics.consumer_lag.set(lag);
                }
                Err(error) => tracing::debug!(%error, "could not measure the consumer lag"),
            }
        }));
    }

    /// Waits for a measurement in progress (it holds the consumer).
    pub async fn finish(&mut self) {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// High watermark minus position, summed over the assigned partitions of
/// `topic`. A partition with no position yet (nothing consumed since the
/// assignment) counts from its low watermark.
fn lag(consumer: &StreamConsumer, topic: &str) -> Result<i64, KafkaError> {
    let assignment = consumer.assignment()?;
    let position = consumer.position()?;
    let mut total = 0;
    for element in assignment.elements_for_topic(topic) {
        let partition = element.partition();
        let (low, high) = consumer.fetch_watermarks(topic, partition, WATERMARK_TIMEOUT)?;
        let at = position
            .find_partition(topic, partition)
            .and_then(|p| match p.offset() {
                Offset::Offset(at) => Some(at),
                _ => None,
            })
            .unwrap_or(low);
        total += (high - at).max(0);
    }
    Ok(total)
}
