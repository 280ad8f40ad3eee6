//! Redis losing its data, the sold-out flag's knowledge of every grant, and
//! the calibration, on the real services.

use std::collections::HashSet;

use reqwest::StatusCode;

use super::http::Client;
use super::support::{Broker, TestEnv, mysql_stock, wait_until};
use crate::calibrate::calibrate;
use crate::domain::ports::GrantRecord;
use crate::grants::GrantLog;

async fn orders_of(env: &TestEnv, sku: u64) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE sku_id = ?")
        .bind(sku)
        .fetch_one(env.backends.store.pool())
        .await
        .unwrap()
}

/// A sale of 20 units: 12 sold and in MySQL, then Redis loses everything.
/// The SKU answers 503 `paused` (not 404) until the reconciler has rebuilt
/// it from MySQL; then every granted id is `queued` again, its buyer is at
/// the per-user limit, and the remaining 8 units sell exactly.
async fn redis_data_loss_pauses_and_rebuilds(broker: Broker) {
    let env = TestEnv::with_sale(broker, |s| {
        s.reconcile_every_ms = 100;
        s.reconcile_lease_ms = 2_000;
    })
    .await;
    let running = env.start().await;
    let client = Client::new(&running);
    let sku = 31;
    assert_eq!(client.put_sku(sku, "phone", 20).await.0, StatusCode::OK);
    for user in 1..=12 {
        let (status, _) = client.buy(&format!("before-{user}"), user, sku).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    wait_until("12 orders in MySQL", || async {
        orders_of(&env, sku).await == 12
    })
    .await;
    // What a Redis restarted without persistence holds of the sale: nothing.
    env.delete_redis_keys().await.unwrap();

    // Paused, whoever asks, until the rebuild; an unknown SKU stays 404.
    let (status, body) = client.buy("during", 99, sku).await;
    if status == StatusCode::SERVICE_UNAVAILABLE {
        assert_eq!(body["status"], "paused", "{body}");
    } else {
        // The rebuild was quicker than this request.
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    assert_eq!(
        client.buy("nobody", 1, 999_999).await.0,
        StatusCode::NOT_FOUND
    );
    wait_until("the stock rebuilt", || async {
        env.backends.stock.is_stocked(sku).await.unwrap_or(false)
    })
    .await;
    assert_eq!(running.metrics.stock_rebuilds.get(), 1);

    // Every grant made before the loss answers as before.
    for user in 1..=12 {
        let (status, body) = client.buy(&format!("before-{user}"), user, sku).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    // Its buyer is at the limit (1 unit per user).
    let (_, body) = client.buy("again-1", 1, sku).await;
    assert_eq!(body["status"], "limit_exceeded", "{body}");
    // The rest sells exactly, to new buyers (the request turned away while
    // paused was not decided: its retry is decided now).
    let mut new_grants = 0;
    if client.buy("during", 99, sku).await.0 == StatusCode::ACCEPTED {
        new_grants += 1;
    }
    for user in 100..130 {
        let (status, _) = client.buy(&format!("after-{user}"), user, sku).await;
        if status == StatusCode::ACCEPTED {
            new_grants += 1;
        }
    }
    assert_eq!(new_grants, 8);
    wait_until("20 orders in MySQL", || async {
        orders_of(&env, sku).await == 20
    })
    .await;
    assert_eq!(mysql_stock(env.backends.store.pool(), sku).await, 0);
    assert_eq!(env.backends.stock.units(sku).await.unwrap(), 0);
    let report = calibrate(&env.backends.store, &env.backends.stock)
        .await
        .unwrap();
    assert!(report.iter().all(|c| c.agrees()), "{report:?}");
    running.shutdown().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_data_loss_pauses_and_rebuilds_mock_kafka() {
    redis_data_loss_pauses_and_rebuilds(Broker::Mock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_data_loss_pauses_and_rebuilds_real_kafka() {
    redis_data_loss_pauses_and_rebuilds(Broker::Real).await;
}

/// The grants the sold-out flag loads: the deduction log, and what the
/// reconciler trimmed from it (durable in MySQL). Trimming every entry
/// changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_grant_is_known_after_the_log_is_trimmed() {
    let env = TestEnv::new(Broker::Mock).await;
    let running = env.start().await;
    let client = Client::new(&running);
    let sku = 32;
    assert_eq!(client.put_sku(sku, "watch", 5).await.0, StatusCode::OK);
    let mut granted = HashSet::new();
    for user in 1..=8 {
        let id = format!("g-{user}");
        if client.buy(&id, user, sku).await.0 == StatusCode::ACCEPTED {
            granted.insert(id);
        }
    }
    assert_eq!(granted.len(), 5);
    let grants = GrantLog::new(env.backends.stock.clone(), env.backends.store.clone());
    assert_eq!(grants.granted(sku).await.unwrap(), granted);
    wait_until("5 orders in MySQL", || async {
        orders_of(&env, sku).await == 5
    })
    .await;
    let log = env.backends.stock.log(sku, 0, None, 100).await.unwrap();
    let last = log.last().unwrap().id.clone();
    env.backends.stock.trim_log(sku, 0, &last).await.unwrap();
    env.backends
        .stock
        .trim_log(sku, 0, "18446744073709551615-0")
        .await
        .unwrap();
    assert!(
        env.backends
            .stock
            .log(sku, 0, None, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(grants.granted(sku).await.unwrap(), granted);
    // After the sell-out, each instance answers a grant's retry `queued`
    // from its flag, and a stranger `sold_out`.
    let (_, body) = client.buy("late", 50, sku).await;
    assert_eq!(body["status"], "sold_out");
    for id in &granted {
        let user: u64 = id.trim_start_matches("g-").parse().unwrap();
        let (status, body) = client.buy(id, user, sku).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{id}: {body}");
    }
    running.shutdown().await;
    env.cleanup().await;
}

/// Calibration finds a drift someone wrote into Redis, and a lost key.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn calibration_reports_drift_and_lost_keys() {
    let env = TestEnv::new(Broker::Mock).await;
    let running = env.start().await;
    let client = Client::new(&running);
    assert_eq!(client.put_sku(41, "a", 10).await.0, StatusCode::OK);
    assert_eq!(client.put_sku(42, "b", 10).await.0, StatusCode::OK);
    assert_eq!(client.buy("c-1", 1, 41).await.0, StatusCode::ACCEPTED);
    wait_until("the order in MySQL", || async {
        orders_of(&env, 41).await == 1
    })
    .await;
    let report = calibrate(&env.backends.store, &env.backends.stock)
        .await
        .unwrap();
    assert_eq!(report.len(), 2);
    assert!(report.iter().all(|c| c.agrees()), "{report:?}");
    assert_eq!(report[0].mysql_unsold, 9);
    let mut redis = env.backends.redis.clone();
    let key = format!("seckill:{{{}}}:stock:42", env.services.namespace);
    let _: i64 = redis::cmd("INCRBY")
        .arg(&key)
        .arg(3)
        .query_async(&mut redis)
        .await
        .unwrap();
    let report = calibrate(&env.backends.store, &env.backends.stock)
        .await
        .unwrap();
    assert_eq!(report[1].drift, Some(3));
    let _: i64 = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    let report = calibrate(&env.backends.store, &env.backends.stock)
        .await
        .unwrap();
    assert_eq!((report[1].redis_stock, report[1].drift), (None, None));
    assert!(!report[1].agrees());
    running.shutdown().await;
    env.cleanup().await;
}
