//! No call through the layer waits forever: a server killed under a client
//! (fred's default builder keeps such calls waiting for a reconnection that
//! never comes) fails within the per-call timeout.
#![cfg(all(feature = "redis", feature = "fred"))]
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fred::interfaces::ClientLike;
use seckill_redis::{Connection, Error, Script, WithTimeout, command};

/// A redis-server of this test's own on a free port, killed when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (scripts/services.sh installs it)");
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Self { child, port };
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("redis-server on port {port} did not start");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn fails_in_time<C: Connection>(conn: C, server: &mut Server) {
    let conn = WithTimeout::new(conn, Duration::from_millis(500)).unwrap();
    let pong = command(&conn, "PING", &[], &[]).await.unwrap();
    assert_eq!(pong.as_str(), Some("PONG"));
    server.kill();
    // Once the client has seen the connection close, fred's default client
    // queues every later call for a reconnection that never comes: without
    // the layer's timeout these calls never return (checked by hand: a
    // bare `evalsha` was still waiting after 4 s, three times in a row).
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..3 {
        let script = Script::new("return 1");
        let result = script.run(&conn, &["k"], &[]).await;
        match result {
            Err(e @ (Error::Timeout { .. } | Error::Connection { .. })) => {
                assert!(e.is_retryable() && e.may_have_run(), "{e}");
            }
            other => panic!("a call to a killed server answered {other:?}"),
        }
    }
}

/// Regression: fred's default builder (no command timeout, reconnect policy
/// none) left calls waiting forever once Redis was killed.
#[tokio::test]
async fn fred_default_client_fails_after_the_server_dies() {
    let mut server = Server::start();
    let config = fred::types::config::Config::from_url(&server.url()).unwrap();
    let client = fred::clients::Client::new(config, None, None, None);
    client.init().await.unwrap();
    fails_in_time(client, &mut server).await;
}

#[tokio::test]
async fn fred_connect_fails_after_the_server_dies() {
    let mut server = Server::start();
    let client = seckill_redis::fred::connect(&server.url()).await.unwrap();
    fails_in_time(client, &mut server).await;
}

#[tokio::test]
async fn redis_rs_fails_after_the_server_dies() {
    let mut server = Server::start();
    let conn = seckill_redis::redis_rs::connect(&server.url())
        .await
        .unwrap();
    fails_in_time(conn, &mut server).await;
}

#[tokio::test]
async fn bad_timeouts_are_refused() {
    for bad in [
        Duration::ZERO,
        Duration::from_micros(999),
        Duration::from_secs(601),
    ] {
        assert!(
            matches!(WithTimeout::new((), bad), Err(Error::Config(_))),
            "{bad:?}"
        );
    }
    assert!(WithTimeout::new((), Duration::from_millis(1)).is_ok());
    assert!(WithTimeout::new((), Duration::from_secs(600)).is_ok());
}

#[tokio::test]
async fn connect_refuses_bad_urls_before_connecting() {
    for url in ["http://x:1", "redis+sentinel://a:1", "redis+cluster://"] {
        assert!(matches!(
            seckill_redis::redis_rs::connect(url).await,
            Err(Error::Config(_))
        ));
        assert!(matches!(
            seckill_redis::fred::connect(url).await,
            Err(Error::Config(_))
        ));
    }
}
