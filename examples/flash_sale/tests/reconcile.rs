//! The reconciler against Redis, MySQL and Kafka (mock and real): deductions
//! that never reached MySQL are republished, or written directly when Kafka
//! does not deliver them, and become exactly one order; the lease keeps one
//! reconciler per sale and fences its writes; the log is trimmed to what is
//! not yet durable.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::producer::FutureProducer;
use seckill::stock_lua::{Deduction, LogEntry, LogKind};
use sqlx::MySqlPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::consumer::{
    Worker, deduct, failed_orders, on_both_brokers, order_count, order_ids, orders, put_on_sale,
    redis_stock,
};
use super::support::{Broker, DEADLINE, TestEnv, mysql_stock, wait_until};
use crate::domain::order::Order;
use crate::domain::ports::OrderQueue;
use crate::kafka::client::Kafka;
use crate::kafka::producer::{BatchSettings, OrderSink};
use crate::metrics::Metrics;
use crate::reconcile::{PassReport, ReconcileError, ReconcileSettings, Reconciler};
use crate::store::lease::{Fence, FencedError};

/// No direct completion within a test.
const NEVER: Duration = Duration::from_secs(3_600);

fn settings(grace: Duration) -> ReconcileSettings {
    ReconcileSettings {
        grace,
        every: Duration::from_millis(50),
        direct_after: NEVER,
        lease: Duration::from_secs(10),
    }
}

/// A reconciler of the test's sale with its own producer.
fn reconciler(env: &TestEnv, grace: Duration) -> Reconciler {
    reconciler_with(
        env,
        env.backends.kafka.producer().unwrap(),
        settings(grace),
        Arc::clone(&env.backends.metrics),
    )
}

fn reconciler_with(
    env: &TestEnv,
    producer: FutureProducer,
    settings: ReconcileSettings,
    metrics: Arc<Metrics>,
) -> Reconciler {
    Reconciler::new(
        env.backends.store.clone(),
        env.backends.stock.clone(),
        producer,
        env.services.topic.clone(),
        &env.services.namespace,
        settings,
        metrics,
    )
}

/// A producer whose every send fails: nothing listens on port 1, and a
/// short message timeout fails it fast.
fn dead_producer() -> FutureProducer {
    Kafka::connect(Some("127.0.0.1:1"))
        .unwrap()
        .config()
        .set("message.timeout.ms", "500")
        .create()
        .unwrap()
}

fn report(checked: u64, republished: u64) -> PassReport {
    PassReport {
        checked,
        republished,
        ..PassReport::default()
    }
}

/// Every entry of `sku`'s deduction log.
async fn log(env: &TestEnv, sku: u64) -> Vec<LogEntry> {
    env.backends.stock.store().buckets()[0]
        .deduction_log(&sku.to_string(), None, 10_000)
        .await
        .unwrap()
}

/// Request ids of the deductions in `sku`'s log.
async fn logged_deductions(env: &TestEnv, sku: u64) -> BTreeSet<String> {
    log(env, sku)
        .await
        .into_iter()
        .filter(|e| e.kind == LogKind::Deduction)
        .map(|e| e.request_id)
        .collect()
}

fn ids(orders: &[Order]) -> BTreeSet<String> {
    orders.iter().map(|o| o.request_id.to_string()).collect()
}

/// The lease row of `name`: holder, token, whether live.
async fn lease_row(db: &MySqlPool, name: &str) -> (String, u64, bool) {
    let (holder, token, live) = sqlx::query_as::<_, (String, u64, i64)>(
        "SELECT CAST(holder AS CHAR), token, CAST(expires_at > UTC_TIMESTAMP(6) AS SIGNED) \
         FROM leases WHERE name = ?",
    )
    .bind(name)
    .fetch_one(db)
    .await
    .unwrap();
    (holder, token, live != 0)
}

/// Request ids of `sku` in `orders` and `failed_orders`.
async fn mysql_grants(db: &MySqlPool, sku: u64) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT CAST(request_id AS CHAR) FROM orders WHERE sku_id = ? \
         UNION ALL SELECT CAST(request_id AS CHAR) FROM failed_orders WHERE sku_id = ?",
    )
    .bind(sku)
    .bind(sku)
    .fetch_all(db)
    .await
    .unwrap()
}

/// Units of `sku` in MySQL orders.
async fn ordered_units(db: &MySqlPool, sku: u64) -> u64 {
    sqlx::query_scalar::<_, u64>(
        "SELECT CAST(COALESCE(SUM(quantity), 0) AS UNSIGNED) FROM orders WHERE sku_id = ?",
    )
    .bind(sku)
    .fetch_one(db)
    .await
    .unwrap()
}

/// Deductions never published are republished once past the grace period,
/// and the consumer creates exactly those orders; a refunded deduction is
/// left alone; once all is resolved the log is trimmed and later passes do
/// nothing.
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
    // The lease is the patient one's: another reconciler cannot pass.
    let mut eager = reconciler(&env, Duration::ZERO);
    assert!(matches!(
        eager.pass().await,
        Err(ReconcileError::NotHolder { .. })
    ));
    assert!(patient.release().await.unwrap());

    assert_eq!(eager.pass().await.unwrap(), report(51, 50));
    let worker = Worker::start_default(&env);
    wait_until("50 orders in MySQL", || async {
        order_count(db).await == 50
    })
    .await;
    // Every entry is resolved now: 51 deductions and 1 refund are trimmed.
    assert_eq!(
        eager.pass().await.unwrap(),
        PassReport {
            trimmed: 52,
            ..report(51, 0)
        }
    );
    assert_eq!(eager.pass().await.unwrap(), report(0, 0));
    worker.stop().await;

    assert_eq!(order_ids(db).await, ids(&lost));
    assert!(log(&env, 1).await.is_empty());
    assert_eq!(metrics.reconciler_republished.get(), 50);
    assert_eq!(metrics.reconciler_trimmed.get(), 52);
    assert_eq!(metrics.reconciler_direct.get(), 0);
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
    assert_eq!(
        eager.pass().await.unwrap(),
        PassReport {
            trimmed: 1_200,
            ..report(1_200, 0)
        }
    );
    assert_eq!(eager.pass().await.unwrap(), report(0, 0));
    worker.stop().await;
    assert_eq!(order_ids(db).await, ids(&lost));
    assert!(log(&env, 1).await.is_empty());
    assert_eq!(env.backends.metrics.orders_created.get(), 1_200);
    assert_eq!(mysql_stock(db, 1).await, 800);
    env.cleanup().await;
}

/// Kafka unreachable: the sink's batches fail, and the reconciler (with a
/// working producer) brings every order in exactly once, by republishing.
async fn kafka_down_then_reconciled(broker: Broker) {
    let env = TestEnv::with_sale(broker, |sale| {
        sale.reconcile_grace_ms = 0;
        sale.reconcile_every_ms = 100;
        sale.reconcile_direct_after_ms = 3_600_000;
    })
    .await;
    put_on_sale(&env, 1, 500, 500).await;
    put_on_sale(&env, 2, 500, 500).await;
    let db = env.backends.store.pool();
    let metrics = &env.backends.metrics;
    let sink = OrderSink::new(
        dead_producer(),
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

    let stop = CancellationToken::new();
    let consumer = env.backends.spawn_consumer(&env.sale, stop.clone());
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
    assert_eq!(order_ids(db).await, ids(&sold));
    assert_eq!(metrics.orders_created.get(), 200);
    assert_eq!(metrics.reconciler_direct.get(), 0);
    assert!(metrics.reconciler_republished.get() >= 200);
    assert_eq!(mysql_stock(db, 1).await, 400);
    assert_eq!(mysql_stock(db, 2).await, 400);
    // A clean stop released the lease.
    assert_eq!(metrics.reconciler_lease.get(), 0);
    assert!(!lease_row(db, &env.services.namespace).await.2);
    env.cleanup().await;
}

/// Sells 500 units of each of 4 SKUs through the running app (Redis
/// deduction, then the order sink) and checks every deduction became
/// exactly one order; `direct_after_ms` picks republish or direct writes.
async fn whole_app_never_doubles(broker: Broker, direct_after_ms: u64) -> Arc<Metrics> {
    let env = TestEnv::with_sale(broker, |sale| {
        sale.reconcile_grace_ms = 0;
        sale.reconcile_every_ms = 20;
        sale.reconcile_direct_after_ms = direct_after_ms;
    })
    .await;
    let skus = [1, 2, 3, 4];
    for sku in skus {
        put_on_sale(&env, sku, 500, 500).await;
    }
    let db = env.backends.store.pool();
    let metrics = Arc::clone(&env.backends.metrics);
    let running = env.start().await;
    let sold: Vec<_> = skus.iter().flat_map(|&s| orders(s, 0..500)).collect();
    let tasks: Vec<_> = sold
        .iter()
        .cloned()
        .map(|order| {
            let sale = Arc::clone(&running.sale);
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

    assert_eq!(order_ids(db).await, ids(&sold));
    assert!(failed_orders(db).await.is_empty());
    assert_eq!(
        metrics.orders_created.get() + metrics.reconciler_direct.get(),
        2_000
    );
    assert_eq!(metrics.orders_failed.get(), 0);
    let mut left = 0;
    for sku in skus {
        assert_eq!(mysql_stock(db, sku).await, 0);
        assert_eq!(redis_stock(&env, sku).await, 0);
        let entries = log(&env, sku).await;
        assert!(entries.iter().all(|e| e.kind == LogKind::Deduction));
        left += entries.len() as u64;
        // Every grant: the log read first, then MySQL.
        let mut granted = logged_deductions(&env, sku).await;
        granted.extend(mysql_grants(db, sku).await);
        assert_eq!(granted, ids(&orders(sku, 0..500)));
    }
    // Each of the 2,000 log entries is either trimmed or still there.
    assert_eq!(metrics.reconciler_trimmed.get() + left, 2_000);
    env.cleanup().await;
    metrics
}

/// The whole app with a zero grace period: the reconciler republishes
/// orders the consumer is still working through, and every deduction still
/// becomes exactly one order.
async fn eager_reconciler_never_doubles(broker: Broker) {
    let metrics = whole_app_never_doubles(broker, 3_600_000).await;
    assert_eq!(metrics.orders_created.get(), 2_000);
    assert_eq!(metrics.reconciler_direct.get(), 0);
}

/// The whole app with zero grace and zero direct-after: the reconciler
/// writes every deduction straight to MySQL while the consumer writes the
/// same orders from Kafka; each still becomes exactly one order.
async fn direct_writes_race_the_consumer(broker: Broker) {
    whole_app_never_doubles(broker, 0).await;
}

on_both_brokers!(
    republishes_lost_deductions,
    republishes_across_pages,
    kafka_down_then_reconciled,
    eager_reconciler_never_doubles,
    direct_writes_race_the_consumer,
);

/// The lease on its own: one holder at a time, renewals keep the token, a
/// takeover after expiry or a release raises it; a fenced write with a
/// stale token, an expired lease or no lease is refused and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lease_takeover_and_fencing() {
    let env = TestEnv::new(Broker::Mock).await;
    let store = &env.backends.store;
    let db = store.pool();
    let long = Duration::from_secs(30);
    let name = "lease-test";
    let a = store.acquire_lease(name, "a", long).await.unwrap();
    assert_eq!(a.held_by("a"), Some(1));
    assert_eq!(
        store
            .acquire_lease(name, "a", long)
            .await
            .unwrap()
            .held_by("a"),
        Some(1)
    );
    let b = store.acquire_lease(name, "b", long).await.unwrap();
    assert_eq!((b.holder.as_str(), b.token, b.held_by("b")), ("a", 1, None));

    // a renews for a millisecond only: b takes over once it runs out.
    store
        .acquire_lease(name, "a", Duration::from_millis(1))
        .await
        .unwrap();
    wait_until("b takes the expired lease over", || async {
        store
            .acquire_lease(name, "b", long)
            .await
            .unwrap()
            .held_by("b")
            .is_some()
    })
    .await;
    assert_eq!(lease_row(db, name).await, ("b".to_owned(), 2, true));
    assert_eq!(
        store
            .acquire_lease(name, "a", long)
            .await
            .unwrap()
            .held_by("a"),
        None
    );

    put_on_sale(&env, 1, 10, 10).await;
    let order = orders(1, 0..1);
    deduct(&env, &order[0], Some(1)).await;
    let fence = |holder: &str, token| Fence {
        name: name.to_owned(),
        holder: holder.to_owned(),
        token,
    };
    for stale in [fence("a", 1), fence("b", 1), fence("a", 2)] {
        let refused = store.write_orders_fenced(&order, &stale).await;
        assert!(
            matches!(refused, Err(FencedError::LeaseLost { .. })),
            "{stale:?}: {refused:?}"
        );
    }
    let missing = Fence {
        name: "no-such-lease".to_owned(),
        ..fence("b", 2)
    };
    assert!(matches!(
        store.write_orders_fenced(&order, &missing).await,
        Err(FencedError::LeaseLost { .. })
    ));
    assert_eq!(order_count(db).await, 0);
    assert!(failed_orders(db).await.is_empty());
    assert_eq!(mysql_stock(db, 1).await, 10);

    let written = store
        .write_orders_fenced(&order, &fence("b", 2))
        .await
        .unwrap();
    assert_eq!(written.created, 1);
    assert_eq!(order_ids(db).await, ids(&order));
    assert_eq!(mysql_stock(db, 1).await, 9);

    // A release hands over at once; the next holder's token is larger.
    assert!(!store.release_lease(name, "a").await.unwrap());
    assert!(store.release_lease(name, "b").await.unwrap());
    assert!(!lease_row(db, name).await.2);
    assert_eq!(
        store
            .acquire_lease(name, "a", long)
            .await
            .unwrap()
            .held_by("a"),
        Some(3)
    );
    // Our own lease, expired: refused as well.
    store
        .acquire_lease(name, "a", Duration::from_millis(1))
        .await
        .unwrap();
    wait_until("a's lease runs out", || async {
        !lease_row(db, name).await.2
    })
    .await;
    let second = orders(1, 1..2);
    assert!(matches!(
        store.write_orders_fenced(&second, &fence("a", 3)).await,
        Err(FencedError::LeaseLost { .. })
    ));
    assert_eq!(order_ids(db).await, ids(&order));
    assert_eq!(mysql_stock(db, 1).await, 9);
    env.cleanup().await;
}

/// A running reconciler with its own metrics.
struct Running {
    holder: String,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Running {
    fn start(env: &TestEnv, settings: ReconcileSettings) -> Self {
        let metrics = Arc::new(Metrics::default());
        let reconciler = reconciler_with(
            env,
            env.backends.kafka.producer().unwrap(),
            settings,
            Arc::clone(&metrics),
        );
        let holder = reconciler.holder().to_owned();
        let stop = CancellationToken::new();
        let task = tokio::spawn(reconciler.run(stop.clone()));
        Self {
            holder,
            metrics,
            stop,
            task,
        }
    }

    fn holds(&self) -> bool {
        self.metrics.reconciler_lease.get() == 1
    }

    /// A clean stop.
    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("the reconciler did not stop")
            .unwrap();
    }
}

/// Two reconcilers of one sale: exactly one holds the lease, renewal after
/// renewal. The holder killed, the other takes over after the expiry with
/// a larger token; stopped cleanly, it releases the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_reconciler_per_sale() {
    let env = TestEnv::new(Broker::Mock).await;
    let db = env.backends.store.pool();
    let name = env.services.namespace.clone();
    let settings = ReconcileSettings {
        lease: Duration::from_secs(2),
        ..settings(Duration::ZERO)
    };
    let first = Running::start(&env, settings);
    let second = Running::start(&env, settings);
    wait_until("one reconciler holds the lease", || async {
        first.holds() || second.holds()
    })
    .await;
    // Several renewals (every third of the lease) later, still exactly one.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(first.holds() != second.holds());
    }
    let (holder, survivor) = if first.holds() {
        (first, second)
    } else {
        (second, first)
    };
    let (row_holder, token, live) = lease_row(db, &name).await;
    assert_eq!(row_holder, holder.holder);
    assert!(live);

    // Killed: nothing released, the lease runs out, the survivor takes it.
    holder.task.abort();
    assert!(holder.task.await.unwrap_err().is_cancelled());
    wait_until("the survivor takes the lease over", || async {
        survivor.holds()
    })
    .await;
    let (row_holder, new_token, live) = lease_row(db, &name).await;
    assert_eq!(row_holder, survivor.holder);
    assert_eq!(new_token, token + 1);
    assert!(live);

    // Stopped cleanly: released at once.
    let survivor_holder = survivor.holder.clone();
    let metrics = Arc::clone(&survivor.metrics);
    survivor.stop().await;
    assert_eq!(metrics.reconciler_lease.get(), 0);
    assert_eq!(
        lease_row(db, &name).await,
        (survivor_holder, new_token, false)
    );
    let third = Running::start(&env, settings);
    wait_until("a new reconciler takes the released lease", || async {
        third.holds()
    })
    .await;
    assert_eq!(lease_row(db, &name).await.1, new_token + 1);
    third.stop().await;
    env.cleanup().await;
}

/// Kafka unusable for the reconciler and no consumer: deductions past the
/// grace period are first due for a republish (which fails), then written
/// straight to MySQL, each exactly once; what MySQL refuses is refunded in
/// Redis; units are conserved and the log ends up trimmed to nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn direct_completion_without_kafka() {
    let env = TestEnv::new(Broker::Mock).await;
    let db = env.backends.store.pool();
    // SKU 1: Redis sells 40 of its 50, MySQL has 30: the last 10 are refused.
    put_on_sale(&env, 1, 30, 50).await;
    put_on_sale(&env, 2, 20, 20).await;
    let sku1 = orders(1, 0..40);
    let sku2 = orders(2, 0..20);
    for order in sku1.iter().chain(&sku2) {
        deduct(&env, order, Some(1)).await;
    }
    let metrics = Arc::new(Metrics::default());
    let reconciler = reconciler_with(
        &env,
        dead_producer(),
        ReconcileSettings {
            grace: Duration::ZERO,
            every: Duration::from_millis(50),
            direct_after: Duration::from_millis(300),
            lease: Duration::from_secs(1),
        },
        Arc::clone(&metrics),
    );
    let stop = CancellationToken::new();
    let task = tokio::spawn(reconciler.run(stop.clone()));
    wait_until(
        "every deduction decided in MySQL, refunds done, logs trimmed",
        || async {
            order_count(db).await == 50
                && failed_orders(db).await.len() == 10
                && redis_stock(&env, 1).await == 20
                && log(&env, 1).await.is_empty()
                && log(&env, 2).await.is_empty()
        },
    )
    .await;
    stop.cancel();
    task.await.unwrap();

    let created: Vec<_> = sku1[..30].iter().chain(&sku2).cloned().collect();
    assert_eq!(order_ids(db).await, ids(&created));
    let refused: Vec<(String, String)> = sku1[30..]
        .iter()
        .map(|o| (o.request_id.to_string(), "out_of_stock".to_owned()))
        .collect();
    assert_eq!(failed_orders(db).await, refused);
    // 50 orders and 10 refusals written directly; nothing went through Kafka.
    assert_eq!(metrics.reconciler_direct.get(), 60);
    assert_eq!(metrics.reconciler_republished.get(), 0);
    assert_eq!(metrics.orders_created.get(), 0);
    // 60 deductions and the 10 refunds that followed.
    assert_eq!(metrics.reconciler_trimmed.get(), 70);
    // Units: Redis stock + units in orders = what Redis started with;
    // MySQL stock + units in orders = what MySQL started with.
    assert_eq!(redis_stock(&env, 1).await, 20);
    assert_eq!(ordered_units(db, 1).await, 30);
    assert_eq!(mysql_stock(db, 1).await, 0);
    assert_eq!(redis_stock(&env, 2).await, 0);
    assert_eq!(ordered_units(db, 2).await, 20);
    assert_eq!(mysql_stock(db, 2).await, 0);
    env.cleanup().await;
}

/// With direct_after 0 a deduction past the grace period is written at its
/// first sighting, no republish; the log is trimmed to exactly the entries
/// not yet past the grace period, which a later pass completes in turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trims_to_the_unresolved_suffix() {
    let env = TestEnv::new(Broker::Mock).await;
    let db = env.backends.store.pool();
    put_on_sale(&env, 1, 100, 100).await;
    let grace = Duration::from_secs(3);
    let old = orders(1, 0..20);
    for order in &old {
        deduct(&env, order, Some(1)).await;
    }
    let grace_ms = u64::try_from(grace.as_millis()).unwrap();
    let past_grace = |entries: Vec<LogEntry>| {
        let now = u64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap();
        entries
            .iter()
            .all(|e| now.saturating_sub(e.time_ms) >= grace_ms)
    };
    wait_until("the first deductions are past the grace period", || async {
        past_grace(log(&env, 1).await)
    })
    .await;
    let young = orders(1, 20..30);
    for order in &young {
        deduct(&env, order, Some(1)).await;
    }
    let metrics = Arc::new(Metrics::default());
    let mut reconciler = reconciler_with(
        &env,
        dead_producer(),
        ReconcileSettings {
            direct_after: Duration::ZERO,
            ..settings(grace)
        },
        Arc::clone(&metrics),
    );
    assert_eq!(
        reconciler.pass().await.unwrap(),
        PassReport {
            checked: 20,
            direct: 20,
            trimmed: 20,
            ..PassReport::default()
        }
    );
    assert_eq!(order_ids(db).await, ids(&old));
    assert_eq!(logged_deductions(&env, 1).await, ids(&young));
    assert_eq!(log(&env, 1).await.len(), 10);
    assert_eq!(reconciler.pass().await.unwrap(), PassReport::default());

    wait_until("the last deductions are past the grace period", || async {
        past_grace(log(&env, 1).await)
    })
    .await;
    assert_eq!(
        reconciler.pass().await.unwrap(),
        PassReport {
            checked: 10,
            direct: 10,
            trimmed: 10,
            ..PassReport::default()
        }
    );
    let all: Vec<_> = old.iter().chain(&young).cloned().collect();
    assert_eq!(order_ids(db).await, ids(&all));
    assert!(log(&env, 1).await.is_empty());
    assert_eq!(metrics.reconciler_direct.get(), 30);
    assert_eq!(metrics.reconciler_trimmed.get(), 30);
    assert_eq!(metrics.reconciler_republished.get(), 0);
    assert_eq!(mysql_stock(db, 1).await, 70);
    assert_eq!(redis_stock(&env, 1).await, 70);
    env.cleanup().await;
}

/// A refusal committed in MySQL whose refund never happened (a crash in
/// between) is refunded by the reconciler before its entry is trimmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn heals_a_refund_lost_after_the_commit() {
    let env = TestEnv::new(Broker::Mock).await;
    let db = env.backends.store.pool();
    // MySQL has no unit left: the order is refused there.
    put_on_sale(&env, 1, 0, 10).await;
    let order = orders(1, 0..1);
    deduct(&env, &order[0], Some(1)).await;
    // The consumer's transaction, and then the crash: no refund.
    let written = env.backends.store.write_orders(&order).await.unwrap();
    assert_eq!(written.failed, 1);
    assert_eq!(redis_stock(&env, 1).await, 9);

    let mut reconciler = reconciler(&env, Duration::ZERO);
    let first = reconciler.pass().await.unwrap();
    assert_eq!(
        first,
        PassReport {
            trimmed: 1,
            ..report(1, 0)
        }
    );
    assert_eq!(redis_stock(&env, 1).await, 10);
    // The refund's own entry is resolved and trimmed by the next pass.
    assert_eq!(
        reconciler.pass().await.unwrap(),
        PassReport {
            trimmed: 1,
            ..PassReport::default()
        }
    );
    assert!(log(&env, 1).await.is_empty());
    assert_eq!(order_count(db).await, 0);
    assert_eq!(failed_orders(db).await.len(), 1);
    assert_eq!(redis_stock(&env, 1).await, 10);
    env.cleanup().await;
}
