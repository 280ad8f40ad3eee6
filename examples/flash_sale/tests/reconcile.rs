//! The reconciler against Redis, MySQL and Kafka (mock and real): deductions
//! that never reached MySQL are republished, and become exactly one order.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::producer::FutureProducer;
use seckill::stock_lua::{Deduction, LogKind};

use super::consumer::{
    Worker, deduct, on_both_brokers, order_count, order_ids, orders, put_on_sale, redis_stock,
};
use super::support::{Broker, TestEnv, mysql_stock, wait_until};
use crate::domain::ports::OrderQueue;
use crate::kafka::client::Kafka;
use crate::kafka::producer::{BatchSettings, OrderSink};
use crate::reconcile::{PassReport, Reconciler};

fn reconciler(env: &TestEnv, grace: Duration) -> Reconciler {
    Reconciler::new(
        env.backends.store.clone(),
        env.backends.stock.clone(),
        env.backends.kafka.producer().unwrap(),
        env.services.topic.clone(),
        grace,
        Arc::clone(&env.backends.metrics),
    )
}

fn report(checked: u64, republished: u64) -> PassReport {
    PassReport {
        checked,
        republished,
    }
}

/// Deductions never published are republished once past the grace period,
/// and the consumer creates exactly those orders; a refunded deduction is
/// left alone; later passes republish nothing.
async fn republishes_lost_deductions(broker: Broker) {
    let env = TestEnv::new(broker).await;
    put_on_sale(&env, 1, 100, 100).await;
    let db = env.backends.store.pool();
    let metrics = &env.backends.metrics;
    let lost = orders(1, 0..50);
    for order in &lost {
        deduct(&env, order, Some(1)).await;
    }
    let refunded = orders(1, 50..51).remove(0);
    deduct(&env, &refunded, Some(1)).await;
    env.backends
        .stock
        .refund(&refunded.request_id)
        .await
        .unwrap();
    assert_eq!(redis_stock(&env, 1).await, 50);

    // Nothing is a minute old yet.
    let mut patient = reconciler(&env, Duration::from_secs(60));
    assert_eq!(patient.pass().await.unwrap(), report(0, 0));
    assert_eq!(metrics.reconciler_republished.get(), 0);

    let mut eager = reconciler(&env, Duration::ZERO);
    assert_eq!(eager.pass().await.unwrap(), report(51, 50));
    let worker = Worker::start_default(&env);
    wait_until("50 orders in MySQL", || async {
        order_count(db).await == 50
    })
    .await;
    // The unresolved entries are checked again once, then passed over.
    assert_eq!(eager.pass().await.unwrap(), report(51, 0));
    assert_eq!(eager.pass().await.unwrap(), report(0, 0));
    worker.stop().await;

    let expected: BTreeSet<String> = lost.iter().map(|o| o.request_id.to_string()).collect();
    assert_eq!(order_ids(db).await, expected);
    assert_eq!(metrics.reconciler_republished.get(), 50);
    assert_eq!(metrics.orders_created.get(), 50);
    assert_eq!(metrics.orders_duplicate.get(), 0);
    assert_eq!(mysql_stock(db, 1).await, 50);
    assert_eq!(redis_stock(&env, 1).await, 50);
    env.cleanup().await;
}

/// A log longer than a page: 1,200 lost deductions (made by 1,200
/// concurrent tasks) are republished in one pass and become 1,200 orders.
async fn republishes_across_pages(broker: Broker) {
    let env = TestEnv::new(broker).await;
    put_on_sale(&env, 1, 2_000, 2_000).await;
    let db = env.backends.store.pool();
    let lost = orders(1, 0..1_200);
    let tasks: Vec<_> = lost
        .iter()
        .map(|order| {
            let stock = env.backends.stock.clone();
            let deduction = Deduction {
                request_id: order.request_id.to_string(),
                user_id: order.user_id.to_string(),
                items: vec![("1".to_owned(), 1)],
                per_user_limit: Some(1),
            };
            tokio::spawn(async move { stock.store().deduct(&deduction).await.unwrap().outcome })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap().is_deducted());
    }
    let mut eager = reconciler(&env, Duration::ZERO);
    assert_eq!(eager.pass().await.unwrap(), report(1_200, 1_200));
    let worker = Worker::start_default(&env);
    wait_until("1,200 orders in MySQL", || async {
        order_count(db).await == 1_200
    })
    .await;
    assert_eq!(eager.pass().await.unwrap(), report(1_200, 0));
    assert_eq!(eager.pass().await.unwrap(), report(0, 0));
    worker.stop().await;
    let expected: BTreeSet<String> = lost.iter().map(|o| o.request_id.to_string()).collect();
    assert_eq!(order_ids(db).await, expected);
    assert_eq!(env.backends.metrics.orders_created.get(), 1_200);
    assert_eq!(mysql_stock(db, 1).await, 800);
    env.cleanup().await;
}

/// Kafka unreachable: the sink's batches fail, and the reconciler (with a
/// working producer) brings every order in exactly once.
async fn kafka_down_then_reconciled(broker: Broker) {
    let env = TestEnv::with_sale(broker, |sale| {
        sale.reconcile_grace_ms = 0;
        sale.reconcile_every_ms = 100;
    })
    .await;
    put_on_sale(&env, 1, 500, 500).await;
    put_on_sale(&env, 2, 500, 500).await;
    let db = env.backends.store.pool();
    let metrics = &env.backends.metrics;
    // Nothing listens on port 1; a short message timeout fails batches fast.
    let dead: FutureProducer = Kafka::connect(Some("127.0.0.1:1"))
        .unwrap()
        .config()
        .set("message.timeout.ms", "500")
        .create()
        .unwrap();
    let sink = OrderSink::new(
        dead,
        env.services.topic.clone(),
        BatchSettings {
            max_orders: 256,
            max_delay: Duration::from_millis(5),
        },
        Arc::clone(metrics),
    )
    .unwrap();
    let sold: Vec<_> = orders(1, 0..100)
        .into_iter()
        .chain(orders(2, 0..100))
        .collect();
    for order in &sold {
        deduct(&env, order, Some(1)).await;
        sink.enqueue(order.clone()).await.unwrap();
    }
    sink.shutdown().await;
    assert_eq!(metrics.orders_publish_failed.get(), 200);
    assert_eq!(metrics.orders_published.get(), 0);

    let stop = tokio_util::sync::CancellationToken::new();
    let consumer = env.backends.spawn_consumer(stop.clone());
    let reconciler = env
        .backends
        .spawn_reconciler(&env.sale, stop.clone())
        .unwrap();
    wait_until("200 orders in MySQL", || async {
        order_count(db).await == 200
    })
    .await;
    stop.cancel();
    consumer.await.unwrap();
    reconciler.await.unwrap();
    let expected: BTreeSet<String> = sold.iter().map(|o| o.request_id.to_string()).collect();
    assert_eq!(order_ids(db).await, expected);
    assert_eq!(metrics.orders_created.get(), 200);
    assert!(metrics.reconciler_republished.get() >= 200);
    assert_eq!(mysql_stock(db, 1).await, 400);
    assert_eq!(mysql_stock(db, 2).await, 400);
    env.cleanup().await;
}

/// The whole app with a zero grace period: the reconciler republishes
/// orders the consumer is still working through, and every deduction still
/// becomes exactly one order.
async fn eager_reconciler_never_doubles(broker: Broker) {
    let env = TestEnv::with_sale(broker, |sale| {
        sale.reconcile_grace_ms = 0;
        sale.reconcile_every_ms = 20;
    })
    .await;
    let skus = [1, 2, 3, 4];
    for sku in skus {
        put_on_sale(&env, sku, 500, 500).await;
    }
    let db = env.backends.store.pool();
    let metrics = &env.backends.metrics;
    let running = env.start().await;
    let sold: Vec<_> = skus.iter().flat_map(|&s| orders(s, 0..500)).collect();
    let tasks: Vec<_> = sold
        .iter()
        .cloned()
        .map(|order| {
            let sale = std::sync::Arc::clone(&running.sale);
            tokio::spawn(async move {
                let deduction = Deduction {
                    request_id: order.request_id.to_string(),
                    user_id: order.user_id.to_string(),
                    items: vec![(order.sku_id.to_string(), 1)],
                    per_user_limit: Some(1),
                };
                let decided = sale.stock().store().deduct(&deduction).await.unwrap();
                assert!(decided.outcome.is_deducted());
                sale.queue().enqueue(order).await.is_ok()
            })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap());
    }
    wait_until("2,000 orders in MySQL", || async {
        order_count(db).await == 2_000
    })
    .await;
    running.shutdown().await;

    let expected: BTreeSet<String> = sold.iter().map(|o| o.request_id.to_string()).collect();
    assert_eq!(order_ids(db).await, expected);
    assert_eq!(metrics.orders_created.get(), 2_000);
    assert_eq!(metrics.orders_failed.get(), 0);
    let mut deductions = 0;
    for sku in skus {
        assert_eq!(mysql_stock(db, sku).await, 0);
        assert_eq!(redis_stock(&env, sku).await, 0);
        let log = env
            .backends
            .stock
            .store()
            .deduction_log(&sku.to_string(), None, 1_000)
            .await
            .unwrap();
        deductions += log.iter().filter(|e| e.kind == LogKind::Deduction).count();
    }
    assert_eq!(deductions, 2_000);
    env.cleanup().await;
}

on_both_brokers!(
    republishes_lost_deductions,
    republishes_across_pages,
    kafka_down_then_reconciled,
    eager_reconciler_never_doubles,
);
