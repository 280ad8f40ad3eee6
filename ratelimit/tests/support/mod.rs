//! Connections to the real Redis for the tests, and a private `redis-server`.
#![allow(dead_code, unreachable_pub)]

pub mod prop;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fred::prelude::{Builder, ClientLike, Config, ReconnectPolicy};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use seckill_ratelimit::{Fred, RedisRs};

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

fn unreachable(url: &str, error: impl std::fmt::Display) -> ! {
    panic!(
        "Redis at {url} is unreachable ({error}). These tests need a real Redis: \
         start it with `bash scripts/services.sh` or point REDIS_URL at one."
    )
}

/// A fresh namespace for one test's limiter names.
pub fn unique(name: &str) -> String {
    format!("test:{name}:{}", uuid::Uuid::new_v4().simple())
}

pub async fn manager(url: &str) -> ConnectionManager {
    let client = redis::Client::open(url).unwrap_or_else(|e| unreachable(url, e));
    let config = ConnectionManagerConfig::new()
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(10))
        .set_max_delay(Duration::from_millis(100))
        .set_connection_timeout(Some(Duration::from_millis(300)))
        .set_response_timeout(Some(Duration::from_millis(300)));
    ConnectionManager::new_with_config(client, config)
        .await
        .unwrap_or_else(|e| unreachable(url, e))
}

pub async fn redis_rs(url: &str) -> RedisRs {
    RedisRs::new(manager(url).await)
}

pub async fn fred_client(url: &str) -> fred::clients::Client {
    let config = Config::from_url(url).unwrap_or_else(|e| unreachable(url, e));
    let client = Builder::from_config(config)
        .set_policy(ReconnectPolicy::new_constant(0, 50))
        .with_connection_config(|c| {
            c.connection_timeout = Duration::from_millis(300);
        })
        .build()
        .unwrap_or_else(|e| unreachable(url, e));
    tokio::time::timeout(Duration::from_secs(5), client.init())
        .await
        .unwrap_or_else(|e| unreachable(url, e))
        .unwrap_or_else(|e| unreachable(url, e));
    client
}

pub async fn fred(url: &str) -> Fred {
    Fred::new(fred_client(url).await)
}

/// A `redis-server` of this test's own on a spare port, so stopping it
/// touches nobody else's Redis. Killed on drop.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let mut redis = Self { port, child: None };
        redis.restart();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on the same port and waits until it answers.
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): the failover tests need the redis-server \
                     binary on PATH (`bash scripts/services.sh` installs it)"
                )
            });
        self.child = Some(child);
        let client = redis::Client::open(self.url()).unwrap();
        for _ in 0..200 {
            if let Ok(mut conn) = client.get_connection()
                && redis::cmd("PING").query::<String>(&mut conn).is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!(
            "the private redis-server on port {} did not answer",
            self.port
        );
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}
