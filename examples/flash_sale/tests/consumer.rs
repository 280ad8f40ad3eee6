//! The order consumer against MySQL, Redis and Kafka (mock and real):
//! exact row counts, stock, refunds, redelivery and graceful stop.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use seckill::stock_lua::{Deduction, Outcome};
use sqlx::MySqlPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::support::{Broker, DEADLINE, TestEnv, mysql_stock, wait_until};
use crate::domain::order::{FailReason, Order};
use crate::domain::ports::OrderQueue;
use crate::domain::request_id::RequestId;
use crate::domain::sku::Sku;
use crate::kafka::consumer::{self, ConsumerDeps, ConsumerError};
use crate::kafka::message;
use crate::kafka::producer;
use crate::metrics::Metrics;

/// Puts SKU `id` on sale with `mysql` units in MySQL and `redis` in Redis,
/// one unit per buyer.
pub(super) async fn put_on_sale(env: &TestEnv, id: u64, mysql: u64, redis: u64) {
    put_on_sale_with_limit(env, id, mysql, redis, 1).await;
}

/// [`put_on_sale`] with `limit` units per buyer in MySQL.
pub(super) async fn put_on_sale_with_limit(
    env: &TestEnv,
    id: u64,
    mysql: u64,
    redis: u64,
    limit: u64,
) {
    let sku = Sku {
        id,
        name: format!("sku {id}"),
        price_cents: 100,
        stock: mysql,
        per_user_limit: limit,
    };
    env.backends.store.upsert_sku(&sku).await.unwrap();
    env.backends
        .stock
        .store()
        .set_stock(&id.to_string(), redis)
        .await
        .unwrap();
}

/// One order of one unit per user.
pub(super) fn orders(sku: u64, users: std::ops::Range<u64>) -> Vec<Order> {
    users
        .map(|user| Order {
            request_id: RequestId::parse(format!("req-{sku}-{user}")).unwrap(),
            user_id: user,
            sku_id: sku,
            quantity: 1,
        })
        .collect()
}

/// Deducts `order` in Redis the way a purchase does; `limit` is the per-user limit.
pub(super) async fn deduct(env: &TestEnv, order: &Order, limit: Option<u64>) {
    let deduction = Deduction {
        request_id: order.request_id.to_string(),
        user_id: order.user_id.to_string(),
        items: vec![(order.sku_id.to_string(), u64::from(order.quantity))],
        per_user_limit: limit,
    };
    let decision = env.backends.stock.store().deduct(&deduction).await.unwrap();
    assert_eq!(decision.outcome, Outcome::Deducted, "{order:?}");
}

pub(super) async fn order_count(db: &MySqlPool) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM orders")
        .fetch_one(db)
        .await
        .unwrap()
}

pub(super) async fn order_ids(db: &MySqlPool) -> BTreeSet<String> {
    sqlx::query_scalar::<_, String>("SELECT CAST(request_id AS CHAR) FROM orders")
        .fetch_all(db)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

pub(super) async fn failed_orders(db: &MySqlPool) -> Vec<(String, String)> {
    sqlx::query_as("SELECT CAST(request_id AS CHAR), reason FROM failed_orders ORDER BY request_id")
        .fetch_all(db)
        .await
        .unwrap()
}

pub(super) async fn redis_stock(env: &TestEnv, sku: u64) -> i64 {
    env.backends
        .stock
        .store()
        .stock(&sku.to_string())
        .await
        .unwrap()
}

pub(super) fn producer(env: &TestEnv) -> FutureProducer {
    env.backends.kafka.producer().unwrap()
}

pub(super) async fn publish(env: &TestEnv, producer: &FutureProducer, orders: &[Order]) {
    producer::publish(producer, &env.services.topic, orders)
        .await
        .unwrap();
}

/// A consumer run in its own task.
pub(super) struct Worker {
    stop: CancellationToken,
    task: JoinHandle<Result<(), ConsumerError>>,
}

impl Worker {
    /// Starts a consumer in `group` counting into `metrics`.
    pub(super) fn start(env: &TestEnv, group: &str, metrics: &Arc<Metrics>) -> Self {
        let deps = ConsumerDeps {
            kafka: Arc::clone(&env.backends.kafka),
            group: group.to_owned(),
            topic: env.services.topic.clone(),
            store: env.backends.store.clone(),
            stock: env.backends.stock.clone(),
            metrics: Arc::clone(metrics),
            stuck_after: Duration::from_millis(env.sale.consumer_stuck_after_ms),
        };
        let stop = CancellationToken::new();
        let task = tokio::spawn(consumer::run(deps, stop.clone()));
        Self { stop, task }
    }

    /// The test's own consumer group and metrics.
    pub(super) fn start_default(env: &TestEnv) -> Self {
        Self::start(env, &env.services.group, &env.backends.metrics)
    }

    /// Cancels and waits; the run must end with `Ok`.
    pub(super) async fn stop(self) {
        self.stop.cancel();
        let result = tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("the consumer did not stop")
            .unwrap();
        assert!(result.is_ok(), "{result:?}");
    }
}

/// 2,000 concurrent submissions through the order sink become exactly 2,000
/// rows, and MySQL stock goes down by exactly 2,000 units.
async fn creates_every_order(broker: Broker) {
    let env = TestEnv::new(broker).await;
    let skus = [1, 2, 3, 4];
    for sku in skus {
        put_on_sale(&env, sku, 1_000, 1_000).await;
    }
    let worker = Worker::start_default(&env);
    let sale = env.backends.sale(&env.sale).unwrap();
    let all: Vec<Order> = skus.iter().flat_map(|&s| orders(s, 0..500)).collect();
    let tasks: Vec<_> = all
        .iter()
        .cloned()
        .map(|order| {
            let sink = sale.queue().clone();
            tokio::spawn(async move { sink.enqueue(order).await.is_ok() })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap());
    }
    sale.queue().shutdown().await;
    let metrics = &env.backends.metrics;
    assert_eq!(metrics.orders_published.get(), 2_000);
    let db = env.backends.store.pool();
    wait_until("2,000 orders in MySQL", || async {
        order_count(db).await == 2_000
    })
    .await;
    wait_until("the lag gauge back at 0", || async {
        metrics.consumer_lag.get() == 0
    })
    .await;
    worker.stop().await;
    assert_eq!(order_count(db).await, 2_000);
    let expected: BTreeSet<String> = all.iter().map(|o| o.request_id.to_string()).collect();
    assert_eq!(order_ids(db).await, expected);
    for sku in skus {
        assert_eq!(mysql_stock(db, sku).await, 500);
    }
    assert_eq!(metrics.orders_created.get(), 2_000);
    assert_eq!(metrics.orders_duplicate.get(), 0);
    assert_eq!(metrics.orders_failed.get(), 0);
    assert_eq!(metrics.messages_malformed.get(), 0);
    assert!(failed_orders(db).await.is_empty());
    env.cleanup().await;
}

/// Orders delivered again (the same messages twice, one order three times in
/// one message, a second consumer group replaying the topic) change nothing.
async fn redelivery_is_a_no_op(broker: Broker) {
    let env = TestEnv::new(broker).await;
    put_on_sale(&env, 1, 1_000, 1_000).await;
    put_on_sale(&env, 2, 1_000, 1_000).await;
    let db = env.backends.store.pool();
    let metrics = &env.backends.metrics;
    let worker = Worker::start_default(&env);
    let producer = producer(&env);
    let first: Vec<Order> = orders(1, 0..150)
        .into_iter()
        .chain(orders(2, 0..150))
        .collect();
    publish(&env, &producer, &first).await;
    wait_until("300 orders in MySQL", || async {
        metrics.orders_created.get() == 300
    })
    .await;
    assert_eq!(order_count(db).await, 300);

    publish(&env, &producer, &first).await;
    let repeated = orders(1, 500..501).remove(0);
    publish(
        &env,
        &producer,
        &[repeated.clone(), repeated.clone(), repeated],
    )
    .await;
    wait_until("302 duplicates", || async {
        metrics.orders_duplicate.get() == 302
    })
    .await;
    assert_eq!(metrics.orders_created.get(), 301);
    assert_eq!(order_count(db).await, 301);
    assert_eq!(mysql_stock(db, 1).await, 1_000 - 151);
    assert_eq!(mysql_stock(db, 2).await, 1_000 - 150);

    // Another group replays all 603 orders from the start.
    let replay = Arc::new(Metrics::default());
    let other = Worker::start(&env, &format!("{}-replay", env.services.group), &replay);
    wait_until("the replay to see 603 duplicates", || async {
        replay.orders_duplicate.get() == 603
    })
    .await;
    other.stop().await;
    worker.stop().await;
    assert_eq!(replay.orders_created.get(), 0);
    assert_eq!(replay.orders_failed.get(), 0);
    assert_eq!(metrics.orders_created.get(), 301);
    assert_eq!(metrics.orders_duplicate.get(), 302);
    assert_eq!(order_count(db).await, 301);
    assert_eq!(mysql_stock(db, 1).await, 1_000 - 151);
    assert_eq!(mysql_stock(db, 2).await, 1_000 - 150);
    assert!(failed_orders(db).await.is_empty());
    env.cleanup().await;
}

/// MySQL has fewer units than Redis sold: the extra orders are refused as
/// `out_of_stock` and refunded in Redis; delivered again (even after MySQL
/// got more stock) they stay refused and are not refunded twice.
async fn out_of_stock_orders_are_refunded(broker: Broker) {
    let env = TestEnv::new(broker).await;
    put_on_sale(&env, 1, 5, 8).await;
    let db = env.backends.store.pool();
    let metrics = &env.backends.metrics;
    let sold = orders(1, 1..9);
    for order in &sold {
        deduct(&env, order, Some(1)).await;
    }
    assert_eq!(redis_stock(&env, 1).await, 0);
    let worker = Worker::start_default(&env);
    let producer = producer(&env);
    // One message: the first five take MySQL's five units.
    publish(&env, &producer, &sold).await;
    wait_until("3 refunds in Redis", || async {
        redis_stock(&env, 1).await == 3
    })
    .await;
    assert_eq!(metrics.orders_created.get(), 5);
    assert_eq!(metrics.orders_failed.get(), 3);
    assert_eq!(order_count(db).await, 5);
    assert_eq!(mysql_stock(db, 1).await, 0);
    let refused: Vec<(String, String)> = sold[5..]
        .iter()
        .map(|o| (o.request_id.to_string(), FailReason::OutOfStock.to_string()))
        .collect();
    assert_eq!(failed_orders(db).await, refused);
    for (i, order) in sold.iter().enumerate() {
        let record = env
            .backends
            .stock
            .store()
            .request(order.request_id.as_str())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.refunded, i >= 5, "{order:?}");
    }

    // More units in MySQL, then everything again: nothing changes.
    put_on_sale_with_limit(&env, 1, 10, 3, 1).await;
    publish(&env, &producer, &sold).await;
    wait_until("8 duplicates", || async {
        metrics.orders_duplicate.get() == 8
    })
    .await;
    worker.stop().await;
    assert_eq!(metrics.orders_created.get(), 5);
    assert_eq!(metrics.orders_failed.get(), 3);
    assert_eq!(order_count(db).await, 5);
    assert_eq!(mysql_stock(db, 1).await, 10);
    assert_eq!(failed_orders(db).await, refused);
    assert_eq!(redis_stock(&env, 1).await, 3);
    env.cleanup().await;
}

/// An order that takes a buyer over the SKU's per-user limit in MySQL
/// (Redis lost the first one's count) is refused and refunded.
async fn second_order_of_a_user_is_refused(broker: Broker) {
    let env = TestEnv::new(broker).await;
    put_on_sale_with_limit(&env, 1, 10, 10, 2).await;
    let db = env.backends.store.pool();
    let metrics = &env.backends.metrics;
    let first = Order {
        request_id: RequestId::parse("first").unwrap(),
        user_id: 9,
        sku_id: 1,
        quantity: 2,
    };
    let second = Order {
        request_id: RequestId::parse("second").unwrap(),
        quantity: 3,
        ..first.clone()
    };
    deduct(&env, &first, None).await;
    deduct(&env, &second, None).await;
    assert_eq!(redis_stock(&env, 1).await, 5);
    let worker = Worker::start_default(&env);
    publish(&env, &producer(&env), &[first.clone(), second.clone()]).await;
    wait_until("the second order refunded", || async {
        redis_stock(&env, 1).await == 8
    })
    .await;
    worker.stop().await;
    assert_eq!(metrics.orders_created.get(), 1);
    assert_eq!(metrics.orders_failed.get(), 1);
    assert_eq!(order_ids(db).await, BTreeSet::from(["first".to_owned()]));
    assert_eq!(mysql_stock(db, 1).await, 8);
    assert_eq!(
        failed_orders(db).await,
        vec![("second".to_owned(), FailReason::PerUserLimit.to_string())]
    );
    let record = env
        .backends
        .stock
        .store()
        .request("second")
        .await
        .unwrap()
        .unwrap();
    assert!(record.refunded);
    env.cleanup().await;
}

/// A limit of N is N units across a buyer's orders, also in MySQL: with a
/// limit of 3, orders of 1 + 2 units are created, and the next unit (which
/// Redis, having lost its count, let through) is refused and refunded, in
/// one batch and across batches.
async fn per_user_limit_counts_units_across_orders(broker: Broker) {
    let env = TestEnv::new(broker).await;
    put_on_sale_with_limit(&env, 1, 100, 100, 3).await;
    let db = env.backends.store.pool();
    let metrics = &env.backends.metrics;
    let order = |id: &str, user: u64, quantity: u32| Order {
        request_id: RequestId::parse(id).unwrap(),
        user_id: user,
        sku_id: 1,
        quantity,
    };
    let first = [
        order("a1", 7, 1),
        order("a2", 7, 2),
        order("a3", 7, 1),
        order("b1", 8, 3),
    ];
    for o in &first {
        deduct(&env, o, None).await;
    }
    let worker = Worker::start_default(&env);
    let producer = producer(&env);
    publish(&env, &producer, &first).await;
    wait_until("a3 refunded", || async { metrics.orders_failed.get() == 1 }).await;
    // A later batch: one more unit for each buyer.
    let later = [order("a4", 7, 1), order("b2", 8, 1), order("c1", 9, 3)];
    for o in &later {
        deduct(&env, o, None).await;
    }
    publish(&env, &producer, &later).await;
    wait_until("3 refused", || async { metrics.orders_failed.get() == 3 }).await;
    wait_until("4 created", || async { metrics.orders_created.get() == 4 }).await;
    worker.stop().await;
    assert_eq!(
        order_ids(db).await,
        BTreeSet::from(["a1", "a2", "b1", "c1"].map(str::to_owned))
    );
    let refused: Vec<(String, String)> = ["a3", "a4", "b2"]
        .iter()
        .map(|id| ((*id).to_owned(), FailReason::PerUserLimit.to_string()))
        .collect();
    assert_eq!(failed_orders(db).await, refused);
    // 9 units sold; the 3 refused units are back in Redis.
    assert_eq!(mysql_stock(db, 1).await, 91);
    wait_until("refunds in Redis", || async {
        redis_stock(&env, 1).await == 91
    })
    .await;
    env.cleanup().await;
}

/// Undecodable payloads and unstorable orders are skipped; the orders after
/// them on the same partition are created.
async fn malformed_messages_are_skipped(broker: Broker) {
    let env = TestEnv::new(broker).await;
    put_on_sale(&env, 1, 100, 100).await;
    let metrics = &env.backends.metrics;
    let worker = Worker::start_default(&env);
    let producer = producer(&env);
    // An id the producer could never write, and an order of no units.
    let bad_id =
        br#"{"orders":[{"request_id":"has a space","user_id":1,"sku_id":1,"quantity":1}]}"#;
    let no_units = br#"{"orders":[{"request_id":"z","user_id":1,"sku_id":1,"quantity":0}]}"#;
    let payloads = [b"not json".to_vec(), bad_id.to_vec(), no_units.to_vec()];
    for payload in &payloads {
        let record = FutureRecord::to(&env.services.topic)
            .key("1")
            .payload(payload);
        producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
    publish(&env, &producer, &orders(1, 0..10)).await;
    wait_until("10 orders created", || async {
        metrics.orders_created.get() == 10
    })
    .await;
    worker.stop().await;
    assert_eq!(metrics.messages_malformed.get(), 3);
    assert_eq!(order_count(env.backends.store.pool()).await, 10);
    assert_eq!(mysql_stock(env.backends.store.pool(), 1).await, 90);
    env.cleanup().await;
}

/// Every message of the topic: partition, offset, orders.
async fn read_topic(env: &TestEnv, messages: usize) -> Vec<(i32, i64, Vec<Order>)> {
    let reader: StreamConsumer = env
        .backends
        .kafka
        .consumer(&format!("{}-reader", env.services.group))
        .unwrap();
    let mut list = TopicPartitionList::new();
    for partition in 0..env.services.partitions {
        list.add_partition_offset(&env.services.topic, partition, Offset::Beginning)
            .unwrap();
    }
    reader.assign(&list).unwrap();
    let mut out = Vec::new();
    while out.len() < messages {
        let msg = tokio::time::timeout(DEADLINE, reader.recv())
            .await
            .expect("the topic holds fewer messages than published")
            .unwrap();
        let orders = message::decode(msg.payload().unwrap()).unwrap();
        out.push((msg.partition(), msg.offset(), orders));
    }
    tokio::task::spawn_blocking(move || drop(reader))
        .await
        .unwrap();
    out
}

/// The offsets `group` committed, per partition.
async fn committed(env: &TestEnv, group: &str) -> BTreeMap<i32, i64> {
    let probe: StreamConsumer = env.backends.kafka.consumer(group).unwrap();
    let mut list = TopicPartitionList::new();
    for partition in 0..env.services.partitions {
        list.add_partition(&env.services.topic, partition);
    }
    tokio::task::spawn_blocking(move || {
        let list = probe
            .committed_offsets(list, Duration::from_secs(10))
            .unwrap();
        list.elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.partition(), o)),
                _ => None,
            })
            .collect()
    })
    .await
    .unwrap()
}

/// Stopped mid-stream, the consumer returns `Ok` with exactly the orders of
/// its committed messages in MySQL; a restart in the same group creates the
/// rest, none twice.
async fn graceful_stop_then_restart(broker: Broker) {
    let env = TestEnv::new(broker).await;
    let skus = [1, 2, 3, 4];
    for sku in skus {
        put_on_sale(&env, sku, 1_000, 1_000).await;
    }
    let db = env.backends.store.pool();
    let producer = producer(&env);
    // 20 messages of 100 orders.
    for sku in skus {
        for chunk in 0..5 {
            publish(
                &env,
                &producer,
                &orders(sku, chunk * 100..chunk * 100 + 100),
            )
            .await;
        }
    }
    let first = Arc::new(Metrics::default());
    let worker = Worker::start(&env, &env.services.group, &first);
    wait_until("a first order", || async { first.orders_created.get() > 0 }).await;
    worker.stop().await;
    let offsets = committed(&env, &env.services.group).await;
    let written: BTreeSet<String> = read_topic(&env, 20)
        .await
        .into_iter()
        .filter(|(partition, offset, _)| offsets.get(partition).is_some_and(|c| offset < c))
        .flat_map(|(_, _, orders)| orders.into_iter().map(|o| o.request_id.to_string()))
        .collect();
    assert!(!written.is_empty());
    assert_eq!(order_ids(db).await, written);
    assert_eq!(first.orders_created.get(), written.len() as u64);

    let second = Arc::new(Metrics::default());
    let worker = Worker::start(&env, &env.services.group, &second);
    wait_until("2,000 orders in MySQL", || async {
        order_count(db).await == 2_000
    })
    .await;
    worker.stop().await;
    assert_eq!(
        first.orders_created.get() + second.orders_created.get(),
        2_000
    );
    // The restart starts after the committed offsets: nothing is seen twice.
    assert_eq!(second.orders_duplicate.get(), 0);
    let mut left = 0;
    for sku in skus {
        left += mysql_stock(db, sku).await;
    }
    assert_eq!(left, 4 * 1_000 - 2_000);
    env.cleanup().await;
}

/// MySQL failing (the `orders` table gone): the consumer keeps its batch and
/// commits no offset; stopped meanwhile it returns `Ok`, and once MySQL is
/// back a new consumer in the group creates every order exactly once.
async fn mysql_outage_keeps_the_batch(broker: Broker) {
    let env = TestEnv::new(broker).await;
    put_on_sale(&env, 1, 1_000, 1_000).await;
    let db = env.backends.store.pool();
    let producer = producer(&env);
    let first = Arc::new(Metrics::default());
    let worker = Worker::start(&env, &env.services.group, &first);
    publish(&env, &producer, &orders(1, 0..100)).await;
    wait_until("100 orders in MySQL", || async {
        first.orders_created.get() == 100
    })
    .await;
    let before = committed(&env, &env.services.group).await;
    assert_eq!(before.values().sum::<i64>(), 1, "one message consumed");

    sqlx::query("RENAME TABLE orders TO orders_away")
        .execute(db)
        .await
        .unwrap();
    publish(&env, &producer, &orders(1, 100..200)).await;
    // Let the consumer fetch the message and fail on it a few times.
    tokio::time::sleep(Duration::from_secs(1)).await;
    worker.stop().await;
    assert_eq!(committed(&env, &env.services.group).await, before);
    assert_eq!(first.orders_created.get(), 100);
    sqlx::query("RENAME TABLE orders_away TO orders")
        .execute(db)
        .await
        .unwrap();

    let second = Arc::new(Metrics::default());
    let worker = Worker::start(&env, &env.services.group, &second);
    wait_until("200 orders in MySQL", || async {
        order_count(db).await == 200
    })
    .await;
    worker.stop().await;
    assert_eq!(second.orders_created.get(), 100);
    assert_eq!(second.orders_duplicate.get(), 0);
    assert_eq!(mysql_stock(db, 1).await, 800);
    env.cleanup().await;
}

/// Two consumers in one group (scale out), the second joining mid-stream:
/// the rebalance may hand a message to both, and still every order is
/// created exactly once.
async fn two_consumers_share_a_group(broker: Broker) {
    let env = TestEnv::new(broker).await;
    let skus = [1, 2, 3, 4, 5, 6];
    for sku in skus {
        put_on_sale(&env, sku, 1_000, 1_000).await;
    }
    let db = env.backends.store.pool();
    let producer = producer(&env);
    let (a, b) = (Arc::new(Metrics::default()), Arc::new(Metrics::default()));
    let first = Worker::start(&env, &env.services.group, &a);
    for chunk in 0..5 {
        for sku in skus {
            publish(
                &env,
                &producer,
                &orders(sku, chunk * 100..chunk * 100 + 100),
            )
            .await;
        }
        if chunk == 1 {
            wait_until("a first order", || async { a.orders_created.get() > 0 }).await;
        }
    }
    let second = Worker::start(&env, &env.services.group, &b);
    wait_until("3,000 orders in MySQL", || async {
        order_count(db).await == 3_000
    })
    .await;
    first.stop().await;
    second.stop().await;
    assert_eq!(order_count(db).await, 3_000);
    assert_eq!(a.orders_created.get() + b.orders_created.get(), 3_000);
    assert_eq!(a.orders_failed.get() + b.orders_failed.get(), 0);
    for sku in skus {
        assert_eq!(mysql_stock(db, sku).await, 500);
    }
    env.cleanup().await;
}

/// Each test once on the mock cluster and once on the real broker.
macro_rules! on_both_brokers {
    ($($test:ident),* $(,)?) => {
        mod mock {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    super::$test(super::Broker::Mock).await;
                }
            )*
        }
        mod real {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    super::$test(super::Broker::Real).await;
                }
            )*
        }
    };
}
pub(super) use on_both_brokers;

on_both_brokers!(
    creates_every_order,
    redelivery_is_a_no_op,
    out_of_stock_orders_are_refunded,
    second_order_of_a_user_is_refused,
    per_user_limit_counts_units_across_orders,
    malformed_messages_are_skipped,
    graceful_stop_then_restart,
    mysql_outage_keeps_the_batch,
    two_consumers_share_a_group,
);

/// The stuck-consumer watchdog against a private tansu broker that the tests
/// kill, freeze and restart (the shared broker of the other tests is left
/// alone), and a group member killed with SIGKILL in a child process.
///
/// With the watchdog off (a threshold of 600 s), the frozen-broker and the
/// killed-member tests fail on tansu 0.6: the orders stay in the topic. The
/// kill-and-restart test passes either way (a restarted tansu reloads its
/// groups) and guards the recovery path.
///
/// Debugging: `SECKILL_TANSU_LOG=debug` is tansu's `RUST_LOG`,
/// `SECKILL_KEEP_TANSU=1` keeps its state directory (with `tansu.log`) in
/// the temporary directory; `RUST_LOG` filters the consumer's own logs.
mod stuck {
    use std::io::{BufRead, BufReader, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::time::Instant;

    use super::*;
    use crate::kafka::client::Kafka;

    /// Stuck after this long in these tests (the smallest valid setting is 1 s).
    const STUCK_AFTER_MS: u64 = 3_000;
    /// Longest wait for every order to reach MySQL after a fault.
    const RECOVERY: Duration = Duration::from_secs(90);

    /// The tansu binary: `$TANSU`, on `PATH`, or in cargo's bin directory.
    fn tansu() -> PathBuf {
        if let Some(path) = std::env::var_os("TANSU") {
            return path.into();
        }
        let cargo_home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
            .unwrap_or_default();
        let candidates = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .chain([cargo_home.join("bin")])
            .map(|dir| dir.join("tansu"));
        for candidate in candidates {
            if candidate.is_file() {
                return candidate;
            }
        }
        panic!("no tansu binary: `bash scripts/kafka.sh` installs it (or set TANSU)");
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// A tansu broker of this test only: its own port and sqlite storage.
    struct PrivateBroker {
        addr: SocketAddr,
        dir: PathBuf,
        child: Option<Child>,
    }

    impl PrivateBroker {
        fn start() -> Self {
            let port = free_port();
            let dir = std::env::temp_dir().join(format!(
                "seckill-tansu-{port}-{}",
                uuid::Uuid::new_v4().simple()
            ));
            std::fs::create_dir_all(dir.join("data")).unwrap();
            let mut broker = Self {
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                dir,
                child: None,
            };
            broker.spawn();
            broker
        }

        fn brokers(&self) -> String {
            self.addr.to_string()
        }

        /// Starts tansu (again, on the same port and storage) and waits until
        /// it accepts connections.
        fn spawn(&mut self) {
            let url = format!("tcp://{}", self.addr);
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join("tansu.log"))
                .unwrap();
            // The sqlite path is relative to the working directory (see
            // scripts/kafka.sh).
            let child = Command::new(tansu())
                .current_dir(&self.dir)
                .args(["broker", "--storage-engine"])
                .arg(format!("sqlite://data/tansu-{}.db", self.addr.port()))
                .args(["--listener-url", &url, "--advertised-listener-url", &url])
                .env(
                    "RUST_LOG",
                    std::env::var("SECKILL_TANSU_LOG").unwrap_or_else(|_| "warn".into()),
                )
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            self.child = Some(child);
            let start = Instant::now();
            while TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_err() {
                assert!(
                    start.elapsed() < DEADLINE,
                    "tansu did not listen on {}; its log: {}",
                    self.addr,
                    self.log()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }

        /// SIGKILL, and waits until it is gone.
        fn kill(&mut self) {
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }

        /// Sends `signal` (`STOP`, `CONT`) to the broker.
        fn signal(&self, signal: &str) {
            let pid = self.child.as_ref().unwrap().id().to_string();
            let status = Command::new("kill")
                .args([&format!("-{signal}"), &pid])
                .status()
                .unwrap();
            assert!(status.success(), "kill -{signal} {pid}");
        }

        fn log(&self) -> String {
            std::fs::read_to_string(self.dir.join("tansu.log")).unwrap_or_default()
        }
    }

    impl Drop for PrivateBroker {
        fn drop(&mut self) {
            if let Some(child) = &self.child {
                // A frozen broker does not die of SIGKILL until continued.
                let _ = Command::new("kill")
                    .args(["-CONT", &child.id().to_string()])
                    .status();
            }
            self.kill();
            if std::env::var_os("SECKILL_KEEP_TANSU").is_none() {
                let _ = std::fs::remove_dir_all(&self.dir);
            }
        }
    }

    /// The test's environment (MySQL and Redis; its Kafka is unused) and a
    /// client of the private broker with the test's topic on it.
    async fn setup(broker: &PrivateBroker) -> (TestEnv, Arc<Kafka>) {
        // The consumer's warnings (rejoins) in the test output; RUST_LOG
        // for more.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
        let env = TestEnv::with_sale(Broker::Mock, |sale| {
            sale.consumer_stuck_after_ms = STUCK_AFTER_MS;
        })
        .await;
        let kafka = Kafka::connect(Some(&broker.brokers())).unwrap();
        let start = Instant::now();
        loop {
            match kafka
                .ensure_topic(&env.services.topic, env.services.partitions)
                .await
            {
                Ok(()) => break,
                Err(error) => {
                    assert!(start.elapsed() < DEADLINE, "topic not created: {error}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        (env, Arc::new(kafka))
    }

    /// A consumer of the private broker in the test's group.
    fn worker(env: &TestEnv, kafka: &Arc<Kafka>, metrics: &Arc<Metrics>) -> Worker {
        let deps = ConsumerDeps {
            kafka: Arc::clone(kafka),
            group: env.services.group.clone(),
            topic: env.services.topic.clone(),
            store: env.backends.store.clone(),
            stock: env.backends.stock.clone(),
            metrics: Arc::clone(metrics),
            stuck_after: Duration::from_millis(env.sale.consumer_stuck_after_ms),
        };
        let stop = CancellationToken::new();
        let task = tokio::spawn(consumer::run(deps, stop.clone()));
        Worker { stop, task }
    }

    /// Publishes `orders` to the private broker, each try with a new
    /// producer (an idempotent producer may not survive a broker restart),
    /// until Kafka acknowledged all of them.
    async fn publish_until_acked(kafka: &Kafka, topic: &str, orders: &[Order]) {
        let start = Instant::now();
        loop {
            let producer = kafka.producer().unwrap();
            let sent = producer::publish(&producer, topic, orders).await;
            tokio::task::spawn_blocking(move || drop(producer))
                .await
                .unwrap();
            match sent {
                Ok(()) => return,
                Err(error) => {
                    assert!(start.elapsed() < RECOVERY, "not published: {error}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// Orders of one unit per user for SKUs `skus` (one message per SKU,
    /// keyed by SKU: several SKUs reach every partition).
    fn orders_of(skus: std::ops::RangeInclusive<u64>, users: std::ops::Range<u64>) -> Vec<Order> {
        skus.flat_map(|sku| orders(sku, users.clone())).collect()
    }

    /// Waits until `expected` are exactly the orders in MySQL.
    async fn wait_for_orders(env: &TestEnv, expected: &[Order], what: &str) {
        let db = env.backends.store.pool();
        let want = i64::try_from(expected.len()).unwrap();
        super::super::support::wait_within(what, RECOVERY, || async {
            order_count(db).await >= want
        })
        .await;
        let ids: BTreeSet<String> = expected.iter().map(|o| o.request_id.to_string()).collect();
        assert_eq!(order_ids(db).await, ids);
    }

    /// The broker killed with SIGKILL and restarted on the same storage,
    /// orders published before and after: every order reaches MySQL, each
    /// once, without restarting the consumer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn consumes_on_after_the_broker_is_killed_and_restarted() {
        let mut broker = PrivateBroker::start();
        let (env, kafka) = setup(&broker).await;
        let skus = 1..=6;
        for sku in skus.clone() {
            put_on_sale(&env, sku, 1_000, 1_000).await;
        }
        let metrics = Arc::new(Metrics::default());
        let worker = worker(&env, &kafka, &metrics);
        let before = orders_of(skus.clone(), 0..50);
        publish_until_acked(&kafka, &env.services.topic, &before).await;
        wait_for_orders(&env, &before, "the orders before the kill").await;

        broker.kill();
        tokio::time::sleep(Duration::from_secs(2)).await;
        broker.spawn();
        let after = orders_of(skus.clone(), 50..100);
        publish_until_acked(&kafka, &env.services.topic, &after).await;
        let all: Vec<Order> = before.iter().chain(&after).cloned().collect();
        wait_for_orders(&env, &all, "the orders after the restart").await;
        worker.stop().await;

        let db = env.backends.store.pool();
        assert_eq!(order_count(db).await, 600);
        assert_eq!(metrics.orders_created.get(), 600);
        assert_eq!(metrics.orders_failed.get(), 0);
        for sku in skus {
            assert_eq!(mysql_stock(db, sku).await, 900);
        }
        eprintln!(
            "rejoins: {}, duplicates: {}",
            metrics.consumer_rejoins.get(),
            metrics.orders_duplicate.get()
        );
        env.cleanup().await;
    }

    /// The broker frozen (SIGSTOP) for 12 s, longer than the session timeout:
    /// every session expires at once. Orders published before and after
    /// all reach MySQL, each once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn consumes_on_after_the_broker_was_unreachable() {
        let broker = PrivateBroker::start();
        let (env, kafka) = setup(&broker).await;
        let skus = 1..=6;
        for sku in skus.clone() {
            put_on_sale(&env, sku, 1_000, 1_000).await;
        }
        let metrics = Arc::new(Metrics::default());
        let worker = worker(&env, &kafka, &metrics);
        let before = orders_of(skus.clone(), 0..50);
        publish_until_acked(&kafka, &env.services.topic, &before).await;
        wait_for_orders(&env, &before, "the orders before the freeze").await;

        broker.signal("STOP");
        tokio::time::sleep(Duration::from_secs(12)).await;
        broker.signal("CONT");
        let after = orders_of(skus.clone(), 50..100);
        publish_until_acked(&kafka, &env.services.topic, &after).await;
        let all: Vec<Order> = before.iter().chain(&after).cloned().collect();
        wait_for_orders(&env, &all, "the orders after the freeze").await;
        worker.stop().await;

        let db = env.backends.store.pool();
        assert_eq!(metrics.orders_created.get(), 600);
        assert_eq!(metrics.orders_failed.get(), 0);
        for sku in skus {
            assert_eq!(mysql_stock(db, sku).await, 900);
        }
        eprintln!(
            "rejoins: {}, duplicates: {}",
            metrics.consumer_rejoins.get(),
            metrics.orders_duplicate.get()
        );
        env.cleanup().await;
    }

    /// A child process, killed (SIGKILL) when dropped, also when the test fails.
    struct KillOnDrop(Child);

    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    const CHILD_BROKERS: &str = "SECKILL_TEST_CHILD_BROKERS";
    const CHILD_GROUP: &str = "SECKILL_TEST_CHILD_GROUP";
    const CHILD_TOPIC: &str = "SECKILL_TEST_CHILD_TOPIC";

    /// Not a test: the group member that
    /// [`a_survivor_takes_over_from_a_killed_member`] runs in a child process
    /// (this test binary again) and kills. It joins the group, prints its
    /// assignment, and never commits.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "run by a_survivor_takes_over_from_a_killed_member in a child process"]
    async fn child_group_member() {
        let (Ok(brokers), Ok(group), Ok(topic)) = (
            std::env::var(CHILD_BROKERS),
            std::env::var(CHILD_GROUP),
            std::env::var(CHILD_TOPIC),
        ) else {
            return;
        };
        let kafka = Kafka::connect(Some(&brokers)).unwrap();
        let member = kafka.consumer(&group).unwrap();
        member.subscribe(&[topic.as_str()]).unwrap();
        let mut out = std::io::stdout();
        let mut last = None;
        // Ends by itself should the parent never kill it.
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(300) {
            // Polling serves the group protocol; messages are dropped.
            let _ = tokio::time::timeout(Duration::from_millis(100), member.recv()).await;
            let assigned = member.assignment().map(|a| a.count()).unwrap_or(0);
            if last != Some(assigned) {
                last = Some(assigned);
                // The parent may have stopped reading: never panic (and
                // leave the group cleanly) over that.
                let _ = writeln!(out, "assigned {assigned}");
                let _ = out.flush();
            }
        }
    }

    /// Two members of one group, one of them killed with SIGKILL (it never
    /// leaves the group): the survivor takes its partitions over and writes
    /// every order, each once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_survivor_takes_over_from_a_killed_member() {
        let broker = PrivateBroker::start();
        let (env, kafka) = setup(&broker).await;
        let skus = 1..=12;
        for sku in skus.clone() {
            put_on_sale(&env, sku, 1_000, 1_000).await;
        }
        let metrics = Arc::new(Metrics::default());
        let survivor = worker(&env, &kafka, &metrics);
        let before = orders_of(skus.clone(), 0..10);
        publish_until_acked(&kafka, &env.services.topic, &before).await;
        wait_for_orders(&env, &before, "the orders before the second member").await;

        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "tests::consumer::stuck::child_group_member",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_BROKERS, broker.brokers())
            .env(CHILD_GROUP, &env.services.group)
            .env(CHILD_TOPIC, &env.services.topic)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut child = KillOnDrop(child);
        // Wait (off the async threads) until the child holds partitions.
        let stdout = child.0.stdout.take().unwrap();
        let assigned = tokio::task::spawn_blocking(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .find_map(|line| {
                    line.strip_prefix("assigned ")
                        .and_then(|n| n.parse::<usize>().ok())
                        .filter(|&n| n > 0)
                })
        });
        let assigned = tokio::time::timeout(RECOVERY, assigned)
            .await
            .expect("the second member got no partition")
            .unwrap();
        assert!(assigned.is_some(), "the second member exited");
        child.0.kill().unwrap();
        child.0.wait().unwrap();

        let after = orders_of(skus.clone(), 10..60);
        publish_until_acked(&kafka, &env.services.topic, &after).await;
        let all: Vec<Order> = before.iter().chain(&after).cloned().collect();
        wait_for_orders(&env, &all, "every order after the member was killed").await;
        survivor.stop().await;

        let db = env.backends.store.pool();
        assert_eq!(metrics.orders_created.get(), 720);
        assert_eq!(metrics.orders_failed.get(), 0);
        for sku in skus {
            assert_eq!(mysql_stock(db, sku).await, 940);
        }
        eprintln!(
            "second member had {assigned:?} partitions; rejoins: {}, duplicates: {}",
            metrics.consumer_rejoins.get(),
            metrics.orders_duplicate.get()
        );
        env.cleanup().await;
    }
}
