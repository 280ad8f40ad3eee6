//! From granted deductions to Kafka: the batcher groups orders, one message
//! per SKU of a batch goes to the topic, and the batch succeeds when Kafka
//! has acknowledged every message.
//!
//! When Kafka is unreachable the batcher retries with backoff; a batch that
//! still fails is counted and logged, and its orders stay pending: the
//! deductions are in the Redis deduction log, so the reconciler republishes
//! them once Kafka is back. Nothing waits on the HTTP side (the client was
//! answered `queued` as soon as Redis granted the deduction).
//!
//! With the Kafka breaker ([`OrderSink::with_breaker`]), a batch's publish
//! goes through it: while Kafka is failing, the breaker rejects an attempt
//! without sending, and the batcher treats that as a failed attempt (retry
//! with backoff, then the reconciler), so nothing is lost.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::try_join_all;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use seckill::batcher::{Batch, Batcher, BuildError, FailedBatch};

use super::message;
use crate::domain::order::Order;
use crate::domain::ports::OrderQueue;
use crate::metrics::Metrics;
use crate::protection::{Guard, GuardError, any_error};

/// Why a batch was not published: the Kafka breaker rejected it (nothing
/// was sent) or Kafka failed.
pub type PublishError = GuardError<KafkaError>;

/// Sends orders to Kafka in batches.
#[derive(Clone)]
pub struct OrderSink {
    batcher: Batcher<Order, PublishError>,
}

/// How the sink batches.
#[derive(Debug, Clone, Copy)]
pub struct BatchSettings {
    /// Orders per batch.
    pub max_orders: usize,
    /// Longest wait of the first order of a batch.
    pub max_delay: Duration,
}

impl OrderSink {
    /// Starts the batcher's workers on the current runtime.
    ///
    /// # Errors
    ///
    /// Bad batch settings, or no Tokio runtime.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn new(
        producer: FutureProducer,
        topic: String,
        settings: BatchSettings,
        metrics: Arc<Metrics>,
    ) -> Result<Self, BuildError> {
        Self::with_breaker(producer, topic, settings, metrics, None)
    }

    /// [`new`](Self::new), with every batch published through `breaker`
    /// (the Kafka breaker) when there is one.
    ///
    /// # Errors
    ///
    /// Bad batch settings, or no Tokio runtime.
    pub fn with_breaker(
        producer: FutureProducer,
        topic: String,
        settings: BatchSettings,
        metrics: Arc<Metrics>,
        breaker: Option<Guard>,
    ) -> Result<Self, BuildError> {
        let producer = Arc::new(producer);
        let topic: Arc<str> = topic.into();
        let failures = Arc::clone(&metrics);
        let batcher = Batcher::builder()
            .max_batch_size(settings.max_orders)
            .max_delay(settings.max_delay)
            .buckets(4)
            .capacity(8_192)
            .retries(3)
            .backoff(Duration::from_millis(100), Duration::from_secs(2))
            .on_failure(move |batch: FailedBatch<Order, PublishError>| {
                failures.orders_publish_failed.inc_by(batch.len() as u64);
                tracing::warn!(
                    orders = batch.len(),
                    error = %batch.error(),
                    "Kafka did not take a batch of orders; the reconciler will republish them"
                );
            })
            .build(move |batch: Batch<Order>| {
                let (producer, topic, metrics, breaker) = (
                    Arc::clone(&producer),
                    Arc::clone(&topic),
                    Arc::clone(&metrics),
                    breaker.clone(),
                );
                async move {
                    metrics.batch_orders.observe(batch.len() as f64);
                    let send = || publish(&producer, &topic, &batch);
                    match &breaker {
                        Some(breaker) => breaker.call(any_error, send).await?,
                        None => send().await.map_err(GuardError::Failed)?,
                    }
                    metrics.orders_published.inc_by(batch.len() as u64);
                    Ok(())
                }
            })?;
        Ok(Self { batcher })
    }

    /// Stops taking orders and waits until every queued order was handed to
    /// Kafka (or failed after its retries).
    pub async fn shutdown(&self) {
        self.batcher.shutdown().await;
    }
}

impl OrderQueue for OrderSink {
    /// Waits only when the batcher's queue is full (backpressure).
    async fn enqueue(&self, order: Order) -> Result<(), Order> {
        let sku = order.sku_id;
        self.batcher
            .submit(&sku, order)
            .await
            .map_err(|e| e.into_inner())
    }
}

/// Sends `orders` as one message per SKU (key = SKU id) and waits until Kafka
/// acknowledged all of them. Used by the sink and by the reconciler.
///
/// # Errors
///
/// The first message Kafka refused or did not acknowledge in time; others
/// may have been written (the consumer treats repeats as no-ops).
pub async fn publish(
    producer: &FutureProducer,
    topic: &str,
    orders: &[Order],
) -> Result<(), KafkaError> {
    let mut by_sku: BTreeMap<u64, Vec<Order>> = BTreeMap::new();
    for order in orders {
        by_sku.entry(order.sku_id).or_default().push(order.clone());
    }
    let sends = by_sku.into_iter().map(|(sku, orders)| async move {
        let key = message::key(sku);
        let payload = message::encode(&orders);
        let record = FutureRecord::to(topic).key(&key).payload(&payload);
        producer
            .send(record, Duration::from_secs(10))
            .await
            .map(|_| ())
            .map_err(|(error, _)| error)
    });
    try_join_all(sends).await?;
    Ok(())
}
