//! The whole demo in process: service, consumer and a small load run over
//! real HTTP, then every invariant read back from MySQL and Redis.
//!
//! The invariants hold only with the real order consumer (it writes the
//! orders) and with retries of decided requests answered from Redis even
//! after the SKU sold out.

use super::support::{ADMIN_TOKEN, Broker, TestEnv, redis_cluster_url, redis_sentinel_url};
use crate::config::LoadSettings;
use crate::load::{self, generator::Outcome};

fn small_load(report: std::path::PathBuf) -> LoadSettings {
    let mut settings = LoadSettings::defaults().unwrap();
    settings.requests = 600;
    settings.users = 200;
    settings.client_ips = 40;
    settings.stock = 50;
    settings.concurrency = 50;
    settings.retry_ratio = 0.2;
    settings.report = report;
    settings.drain_timeout_s = 30;
    settings.drain_idle_s = 30;
    settings.quiet = true;
    settings
}

async fn demo_keeps_every_invariant(broker: Broker) {
    demo_keeps_every_invariant_on(TestEnv::new(broker).await).await;
}

async fn demo_keeps_every_invariant_on(env: TestEnv) {
    let running = env.start().await;
    let dir = std::env::temp_dir().join(format!("flash-sale-demo-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let html = dir.join("report.html");
    let settings = small_load(html.clone());

    let report = load::run(
        &format!("http://{}", running.addr),
        &settings,
        &env.services,
        ADMIN_TOKEN,
    )
    .await;
    running.shutdown().await;
    let page = std::fs::read_to_string(&html);
    // Clean up before asserting, so a failure leaves no database behind.
    let _ = std::fs::remove_dir_all(&dir);
    env.cleanup().await;
    let report = report.unwrap();
    print!("{}", report.render_text());

    // Every attempt got exactly one recorded answer.
    assert_eq!(report.attempts, 600);
    assert_eq!(report.outcomes.values().sum::<u64>(), 600);
    // Nothing failed on the way: every answer is a decision of the sale.
    for (outcome, n) in &report.outcomes {
        assert!(
            outcome.is_decided() || *outcome == Outcome::RateLimited,
            "{n} × {}",
            outcome.label()
        );
    }
    assert_eq!(report.unknown_requests, 0);
    // All 50 units sold, each to a distinct request, and each is an order.
    assert_eq!(report.queued_requests, 50);
    assert_eq!(report.readback.orders.len(), 50);
    assert_eq!(report.readback.units_sold(), 50);
    assert_eq!(report.readback.mysql_stock, Some(0));
    assert_eq!(report.readback.redis_stock, 0);
    assert!(report.readback.refused.is_empty());
    assert_eq!(report.drain.settled, 50);
    for (name, n) in report.invariants.named() {
        assert_eq!(n, 0, "{name}");
    }
    assert!(report.invariants_hold());

    let page = page.unwrap();
    assert_eq!(report.html.as_deref(), Some(html.as_path()));
    assert!(page.contains("every invariant holds"));
    assert_eq!(page.matches("<svg ").count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn demo_keeps_every_invariant_on_the_mock_cluster() {
    demo_keeps_every_invariant(Broker::Mock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn demo_keeps_every_invariant_on_the_real_broker() {
    demo_keeps_every_invariant(Broker::Real).await;
}

/// The demo on the local Redis Cluster, each SKU's stock over 3 buckets
/// (one per primary).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn demo_keeps_every_invariant_on_the_redis_cluster_with_3_stock_buckets() {
    let env = TestEnv::on_redis(Broker::Mock, &redis_cluster_url(), 3, |_| {}).await;
    demo_keeps_every_invariant_on(env).await;
}

/// The demo on the local Sentinel group's primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn demo_keeps_every_invariant_on_the_sentinel_group() {
    let env = TestEnv::on_redis(Broker::Mock, &redis_sentinel_url(), 1, |_| {}).await;
    demo_keeps_every_invariant_on(env).await;
}

#[tokio::test]
async fn load_without_an_admin_token_says_what_to_do() {
    let env = TestEnv::new(Broker::Mock).await;
    let settings = small_load(std::env::temp_dir().join("never-written.html"));
    let result = load::run("http://127.0.0.1:9", &settings, &env.services, "").await;
    env.cleanup().await;
    let err = result.unwrap_err();
    assert!(matches!(err, load::LoadError::NoAdminToken), "{err}");
    assert!(err.to_string().contains("SECKILL_ADMIN_TOKEN"));
}

/// The open loop sends every attempt on its schedule (n / rate seconds
/// after the start, whatever the earlier answers did) and the sale keeps
/// every invariant.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_open_loop_run_keeps_its_schedule_and_every_invariant() {
    let env = TestEnv::new(Broker::Mock).await;
    let running = env.start().await;
    let dir = std::env::temp_dir().join(format!("flash-sale-open-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut settings = small_load(dir.join("report.html"));
    settings.open_loop = true;
    settings.rate = 400;
    settings.concurrency = 1_000;
    let report = load::run(
        &format!("http://{}", running.addr),
        &settings,
        &env.services,
        ADMIN_TOKEN,
    )
    .await;
    running.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    env.cleanup().await;
    let report = report.unwrap();
    assert_eq!(report.attempts, 600);
    assert_eq!(report.outcomes.values().sum::<u64>(), 600);
    // The last of 600 attempts at 400/s is due 599/400 s after the start.
    assert!(
        report.elapsed >= std::time::Duration::from_millis(1_497),
        "{:?}",
        report.elapsed
    );
    assert_eq!(report.queued_requests, 50);
    assert_eq!(report.readback.orders.len(), 50);
    assert!(report.invariants_hold());
    let summary = report.summary();
    assert!(summary["outcomes"]["queued"].as_u64().unwrap() >= 50);
    assert!(summary["admitted_p99_ms"].as_f64().unwrap() > 0.0);
}

#[tokio::test]
async fn load_settings_and_secrets_are_checked_first() {
    let env = TestEnv::new(Broker::Mock).await;
    let mut settings = small_load(std::env::temp_dir().join("never-written.html"));
    settings.open_loop = true;
    let result = load::run("http://127.0.0.1:9", &settings, &env.services, ADMIN_TOKEN).await;
    let err = result.unwrap_err();
    assert!(
        err.to_string().contains("--open-loop needs --rate"),
        "{err}"
    );
    settings.open_loop = false;
    let mut services = env.services.clone();
    services.auth_secret = None;
    let result = load::run("http://127.0.0.1:9", &settings, &services, ADMIN_TOKEN).await;
    env.cleanup().await;
    let err = result.unwrap_err();
    assert!(matches!(err, load::LoadError::NoAuthSecret(_)), "{err}");
    assert!(err.to_string().contains("SECKILL_AUTH_SECRET"), "{err}");
}
