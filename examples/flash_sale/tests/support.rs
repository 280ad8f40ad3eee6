//! A private environment per test: its own MySQL database, Redis namespace,
//! Kafka topic and consumer group, on the real services (Kafka: the broker
//! at `KAFKA_BROKERS`, default 127.0.0.1:9092, or the in-process mock cluster).

use std::future::Future;
use std::time::{Duration, Instant};

use sqlx::mysql::MySqlConnection;
use sqlx::{Connection, MySqlPool};
use tokio::net::TcpListener;

use crate::app::{Backends, Running};
use crate::config::{SaleSettings, Services};

/// Longest wait for an outcome before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `check` until it holds; fails the test after [`DEADLINE`].
pub async fn wait_until<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_within(what, DEADLINE, check).await;
}

/// Polls `check` until it holds; fails the test after `limit`.
pub async fn wait_within<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "waited {limit:?} for: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Units of `sku` left in MySQL.
pub async fn mysql_stock(db: &MySqlPool, sku: u64) -> u64 {
    sqlx::query_scalar("SELECT stock FROM skus WHERE id = ?")
        .bind(sku)
        .fetch_one(db)
        .await
        .unwrap()
}

/// Which Kafka a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broker {
    /// librdkafka's in-process mock cluster.
    Mock,
    /// The Kafka-protocol broker at `KAFKA_BROKERS` (tansu in CI).
    Real,
}

/// The admin token of test instances.
pub const ADMIN_TOKEN: &str = "test-admin-token";

/// The buyers' token secret of test instances.
pub const AUTH_SECRET: &str = "test-auth-secret-32-bytes-or-longer";

/// A bearer token for `user` on test instances, valid for an hour.
pub fn token(user: u64) -> String {
    crate::identity::token::TokenKeys::new(AUTH_SECRET.as_bytes())
        .unwrap()
        .mint_for(user, None, Duration::from_secs(3_600))
        .unwrap()
}

/// The real broker's address; fails the test with a hint when it is down.
pub fn real_brokers() -> String {
    let brokers = std::env::var("KAFKA_BROKERS")
        .ok()
        .filter(|b| !b.trim().is_empty())
        .unwrap_or_else(|| "127.0.0.1:9092".to_owned());
    let first = brokers
        .split(',')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    if std::net::TcpStream::connect_timeout(
        &first
            .parse()
            .unwrap_or_else(|e| panic!("KAFKA_BROKERS {first:?}: {e}")),
        Duration::from_secs(2),
    )
    .is_err()
    {
        panic!(
            "no Kafka broker at {first}: start one with `bash scripts/kafka.sh` \
             (installs and starts tansu), or set KAFKA_BROKERS"
        );
    }
    brokers
}

fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_owned())
}

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// The local Redis Cluster `scripts/redis-topologies.sh` starts.
pub fn redis_cluster_url() -> String {
    std::env::var("REDIS_CLUSTER_URL").unwrap_or_else(|_| {
        "redis+cluster://127.0.0.1:17001,127.0.0.1:17002,127.0.0.1:17003".to_owned()
    })
}

/// The local Sentinel group `scripts/redis-topologies.sh` starts.
pub fn redis_sentinel_url() -> String {
    std::env::var("REDIS_SENTINEL_URL").unwrap_or_else(|_| {
        "redis+sentinel://127.0.0.1:17111,127.0.0.1:17112,127.0.0.1:17113/seckill".to_owned()
    })
}

/// `url` with its database name replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{db}", &base[..host_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// One test's services and settings.
pub struct TestEnv {
    /// Addresses, namespace, topic and group of this test.
    pub services: Services,
    /// Sale settings (the defaults, with generous rate limits).
    pub sale: SaleSettings,
    /// Connected backends.
    pub backends: Backends,
    database: String,
}

impl TestEnv {
    /// A fresh environment on `broker`.
    pub async fn new(broker: Broker) -> Self {
        Self::with_sale(broker, |_| {}).await
    }

    /// A fresh environment on `broker`, with sale settings adjusted by `adjust`.
    pub async fn with_sale(broker: Broker, adjust: impl FnOnce(&mut SaleSettings)) -> Self {
        Self::on_redis(broker, &redis_url(), 1, adjust).await
    }

    /// A fresh environment on `broker` and the Redis `redis_url` names (a
    /// single server, a Cluster or a Sentinel group), each SKU's stock over
    /// `stock_buckets` buckets.
    pub async fn on_redis(
        broker: Broker,
        redis_url: &str,
        stock_buckets: u16,
        adjust: impl FnOnce(&mut SaleSettings),
    ) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let id = &id[..12];
        let database = format!("flash_sale_test_{id}");
        let admin_url = database_url();
        let mut conn = MySqlConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| {
                panic!("MySQL at {admin_url}: {e}; start it with `bash scripts/services.sh`")
            });
        sqlx::query(&format!("CREATE DATABASE `{database}`"))
            .execute(&mut conn)
            .await
            .unwrap();
        let services = Services {
            redis_url: redis_url.to_owned(),
            database_url: with_database(&admin_url, &database),
            kafka_brokers: match broker {
                Broker::Mock => None,
                Broker::Real => Some(real_brokers()),
            },
            listen: "127.0.0.1:0".parse().unwrap(),
            admin_token: Some(ADMIN_TOKEN.to_owned()),
            auth_secret: Some(AUTH_SECRET.to_owned()),
            topic: format!("orders-{id}"),
            partitions: 3,
            group: format!("group-{id}"),
            namespace: format!("test-{id}"),
            stock_buckets,
            sku_cache_replicas: stock_buckets,
        };
        let mut sale = SaleSettings::defaults().unwrap();
        sale.ip_rate = 1_000_000;
        sale.ip_burst = 1_000_000;
        sale.user_rate = 1_000;
        sale.user_burst = 1_000;
        sale.reconcile_grace_ms = 2_000;
        sale.reconcile_every_ms = 500;
        adjust(&mut sale);
        let backends = Backends::connect(&services)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        Self {
            services,
            sale,
            backends,
            database,
        }
    }

    /// Starts HTTP, consumer and reconciler on an ephemeral port.
    pub async fn start(&self) -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Running::start(&self.backends, &self.sale, listener).unwrap()
    }

    /// Drops the test's database and Redis keys.
    pub async fn cleanup(self) {
        let url = database_url();
        if let Ok(mut conn) = MySqlConnection::connect(&url).await {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS `{}`", self.database))
                .execute(&mut conn)
                .await;
        }
        let _ = self.delete_redis_keys().await;
    }

    /// Deletes every Redis key of this test's namespace (what a Redis that
    /// restarted empty would hold of it: nothing).
    ///
    /// # Errors
    ///
    /// Redis failed.
    pub async fn delete_redis_keys(&self) -> Result<(), redis::RedisError> {
        let mut redis = self.backends.redis.clone();
        // The stock's buckets are namespaces `<namespace>~k`. KEYS reaches
        // every primary of a cluster; keys of several slots go one DEL each.
        for pattern in ["seckill:{%}:*", "seckill:{%~*}:*", "flash-sale:{%}:*"] {
            let pattern = pattern.replace('%', &self.services.namespace);
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(&pattern)
                .query_async(&mut redis)
                .await?;
            for key in keys {
                let () = redis::cmd("DEL").arg(&key).query_async(&mut redis).await?;
            }
        }
        Ok(())
    }
}

#[test]
fn database_urls() {
    assert_eq!(
        with_database("mysql://root@127.0.0.1:3306/test", "x"),
        "mysql://root@127.0.0.1:3306/x"
    );
    assert_eq!(
        with_database("mysql://u:p@h/test?ssl-mode=disabled", "x"),
        "mysql://u:p@h/x?ssl-mode=disabled"
    );
    assert_eq!(with_database("mysql://h:1", "x"), "mysql://h:1/x");
}
