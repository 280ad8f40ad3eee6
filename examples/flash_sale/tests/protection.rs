//! Overload protection against real services cut or slowed by a TCP proxy
//! written here: the MySQL breaker and the consumer's back-off, the Redis
//! breaker on the buy path, the adaptive limit under a slow Redis.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::support::{ADMIN_TOKEN, Broker, TestEnv, mysql_stock, token, wait_until, wait_within};
use crate::app::{Backends, Running};
use crate::metrics::{Dependency, Outcome};

/// What the proxy does with the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Forward both ways.
    Forward,
    /// Accept connections but move no byte either way (they wait in the
    /// sockets, and flow on when forwarding resumes): a stalled server.
    Hold,
    /// Close every connection, and each new one at once: a dead server.
    Cut,
    /// Forward each chunk after this delay: a slow server or network.
    Delay(Duration),
}

/// A TCP proxy in front of one service, switched between [`Mode`]s, that
/// keeps every byte it forwarded from clients to the server.
struct Proxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    upstream: Arc<Mutex<Vec<u8>>>,
    task: JoinHandle<()>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mode, _) = watch::channel(Mode::Forward);
        let upstream = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let (mode, upstream) = (mode.clone(), Arc::clone(&upstream));
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    if *mode.borrow() == Mode::Cut {
                        continue; // dropped: closed at once
                    }
                    let Ok(server) = TcpStream::connect(target).await else {
                        continue;
                    };
                    let _ = (client.set_nodelay(true), server.set_nodelay(true));
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::spawn(pump(
                        client_read,
                        server_write,
                        mode.subscribe(),
                        Some(Arc::clone(&upstream)),
                    ));
                    tokio::spawn(pump(server_read, client_write, mode.subscribe(), None));
                }
            }
        });
        Self {
            addr,
            mode,
            upstream,
            task,
        }
    }

    fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// Every byte forwarded from clients to the server so far.
    fn sent_to_server(&self) -> Vec<u8> {
        self.upstream.lock().unwrap().clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        // Ends the pumps of open connections.
        self.mode.send_replace(Mode::Cut);
    }
}

/// Copies `from` to `to` as the mode allows; returns (closing both) on a
/// cut or when either side closes. A delay is added to each chunk's trip
/// (reading goes on meanwhile), so it slows the service without capping
/// its throughput.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mode: watch::Receiver<Mode>,
    record: Option<Arc<Mutex<Vec<u8>>>>,
) {
    let (chunks, mut queued) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let mut reading = mode.clone();
    let read = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            if !open(&mut reading).await {
                return;
            }
            let n = tokio::select! {
                read = from.read(&mut buf) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                },
                // Re-check the mode (a hold or a cut) before reading on.
                changed = reading.changed() => match changed {
                    Ok(()) => continue,
                    Err(_) => return,
                },
            };
            let delay = match *reading.borrow() {
                Mode::Delay(delay) => delay,
                _ => Duration::ZERO,
            };
            if chunks
                .send((Instant::now() + delay, buf[..n].to_vec()))
                .is_err()
            {
                return;
            }
        }
    };
    let mut writing = mode;
    let write = async move {
        while let Some((due, chunk)) = queued.recv().await {
            tokio::time::sleep_until(due).await;
            // A chunk read before a hold waits for the hold to end.
            if !open(&mut writing).await {
                return;
            }
            if let Some(record) = &record {
                record.lock().unwrap().extend_from_slice(&chunk);
            }
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
    };
    // The writer drains what was read before the reader stopped; a cut
    // stops both at once.
    tokio::join!(read, write);
}

/// Waits while the proxy holds; `false` when it cuts.
async fn open(mode: &mut watch::Receiver<Mode>) -> bool {
    loop {
        match *mode.borrow_and_update() {
            Mode::Forward | Mode::Delay(_) => return true,
            Mode::Cut => return false,
            Mode::Hold => {}
        }
        if mode.changed().await.is_err() {
            return false;
        }
    }
}

/// Where `url` points (`host:port`, `default_port` when it names none).
async fn target(url: &str, default_port: u16) -> SocketAddr {
    let (_, authority, _) = split_url(url);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:{default_port}")
    };
    tokio::net::lookup_host(host).await.unwrap().next().unwrap()
}

/// `url` pointing at `addr` instead (user, database and options kept).
fn through(url: &str, addr: SocketAddr) -> String {
    let (scheme, authority, rest) = split_url(url);
    let user = authority.rsplit_once('@').map_or("", |(u, _)| u);
    let at = if user.is_empty() { "" } else { "@" };
    format!("{scheme}{user}{at}{addr}{rest}")
}

/// `scheme://`, the authority, and what follows it.
fn split_url(url: &str) -> (&str, &str, &str) {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..]
        .find(['/', '?'])
        .map_or(url.len(), |i| start + i);
    (&url[..start], &url[start..end], &url[end..])
}

#[test]
fn proxied_urls() {
    let addr: SocketAddr = "127.0.0.1:4000".parse().unwrap();
    assert_eq!(
        through("mysql://root@127.0.0.1:3306/db?x=1", addr),
        "mysql://root@127.0.0.1:4000/db?x=1"
    );
    assert_eq!(
        through("redis://127.0.0.1:6379", addr),
        "redis://127.0.0.1:4000"
    );
    assert_eq!(
        through("redis://:pw@h:1/2", addr),
        "redis://:pw@127.0.0.1:4000/2"
    );
}

/// An instance of `env`'s sale whose Redis or MySQL is reached through a
/// proxy, with its backends (its own Kafka mock cluster among them).
async fn start_through(
    env: &TestEnv,
    redis: Option<&Proxy>,
    mysql: Option<&Proxy>,
) -> (Running, Backends) {
    let mut services = env.services.clone();
    if let Some(proxy) = redis {
        services.redis_url = through(&services.redis_url, proxy.addr);
    }
    if let Some(proxy) = mysql {
        services.database_url = through(&services.database_url, proxy.addr);
    }
    let backends = Backends::connect(&services)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = Running::start(&backends, &env.sale, listener).unwrap();
    (running, backends)
}

/// A client of one instance.
#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    base: String,
}

/// One answer of the purchase route.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    retry_after: Option<String>,
    body: Value,
}

impl Answer {
    fn status_field(&self) -> &str {
        self.body["status"].as_str().unwrap_or("")
    }

    fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }
}

impl Client {
    fn new(running: &Running) -> Self {
        Self {
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(4_096)
                .build()
                .unwrap(),
            base: format!("http://{}", running.addr),
        }
    }

    /// The purchase request of `user` (the route wants the buyer's bearer token).
    fn purchase(&self, request_id: &str, user: u64, sku: u64) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}/api/v1/seckill", self.base))
            .bearer_auth(token(user))
            .json(&json!({ "request_id": request_id, "user_id": user, "sku_id": sku }))
    }

    async fn buy(&self, request_id: &str, user: u64, sku: u64) -> Answer {
        let response = self.purchase(request_id, user, sku).send().await.unwrap();
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = response.json().await.unwrap();
        Answer {
            status,
            retry_after,
            body,
        }
    }

    /// Buys until the answer is a decision (not a 503 or a 429), waiting
    /// as a polite client does: `Retry-After` (1 s), doubling on each
    /// refusal up to 8 s, with ±50 % jitter; how many answers were
    /// `overloaded` on the way.
    async fn buy_until_decided(&self, request_id: &str, user: u64, sku: u64) -> (Answer, u64) {
        let mut overloaded = 0;
        let mut attempt = 0u32;
        loop {
            let answer = self.buy(request_id, user, sku).await;
            match answer.status {
                StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {
                    if answer.status_field() == "overloaded" {
                        overloaded += 1;
                    }
                    let wait = 1_000u64 << attempt.min(3);
                    attempt += 1;
                    let jitter = (user * 7_919 + u64::from(attempt) * 104_729) % wait;
                    tokio::time::sleep(Duration::from_millis(wait / 2 + jitter)).await;
                }
                _ => return (answer, overloaded),
            }
        }
    }

    async fn put_sku(&self, sku: u64, stock: u64) -> StatusCode {
        self.http
            .put(format!("{}/api/v1/admin/skus/{sku}", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({ "name": "console", "price_cents": 1999, "stock": stock }))
            .send()
            .await
            .unwrap()
            .status()
    }

    async fn get(&self, path: &str) -> (StatusCode, Option<String>) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        (response.status(), retry_after)
    }
}

/// Request ids of `sku`'s orders in MySQL (read directly, not through the proxy).
async fn order_ids(env: &TestEnv, sku: u64) -> Vec<String> {
    sqlx::query_scalar("SELECT CAST(request_id AS CHAR) FROM orders WHERE sku_id = ?")
        .bind(sku)
        .fetch_all(env.backends.store.pool())
        .await
        .unwrap()
}

async fn failed_count(env: &TestEnv) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM failed_orders")
        .fetch_one(env.backends.store.pool())
        .await
        .unwrap()
}

fn state_line(dependency: Dependency, state: u8) -> String {
    format!("seckill_breaker_state{{dependency=\"{dependency}\"}} {state}\n")
}

/// MySQL cut while purchases go on: the buy path answers from Redis (202
/// queued), the consumer's breaker throttles (visible in the metrics), it
/// writes nothing and commits no offset, SKU loads are answered 503; once
/// MySQL is back every queued order is in MySQL exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn protection_mysql_cut_defers_orders_and_loses_none() {
    let env = TestEnv::with_sale(Broker::Mock, |sale| {
        sale.protection.mysql_timeout_ms = 500;
        // The consumer alone (one attempt per back-off) keeps it throttling.
        sale.protection.breaker_window_ms = 5_000;
        sale.protection.breaker_min_requests = 1;
    })
    .await;
    let mysql = Proxy::start(target(&env.services.database_url, 3306).await).await;
    let (running, backends) = start_through(&env, None, Some(&mysql)).await;
    let client = Client::new(&running);
    let metrics = &running.metrics;
    assert_eq!(client.put_sku(9, 1_000).await, StatusCode::OK);
    let mut queued: HashSet<String> = HashSet::new();
    for user in 0..20u64 {
        let id = format!("mysql-{user:04}");
        let answer = client.buy(&id, user, 9).await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{answer:?}");
        queued.insert(id);
    }
    wait_until("the first orders in MySQL", || async {
        order_ids(&env, 9).await.len() == 20
    })
    .await;

    mysql.set(Mode::Cut);
    let answers = join_all((20..220u64).map(|user| {
        let client = client.clone();
        tokio::spawn(async move {
            let id = format!("mysql-{user:04}");
            (client.buy(&id, user, 9).await, id)
        })
    }))
    .await;
    for answer in answers {
        let (answer, id) = answer.unwrap();
        assert_eq!(
            (answer.status, answer.status_field()),
            (StatusCode::ACCEPTED, "queued"),
            "{answer:?}"
        );
        queued.insert(id);
    }
    wait_until("the MySQL breaker throttles", || async {
        metrics.render().contains(&state_line(Dependency::Mysql, 1))
    })
    .await;
    // From closed, every second change opens it: throttling after an odd count.
    let (state, changes, _) = metrics.breaker(Dependency::Mysql);
    assert_eq!((state, changes % 2), (1, 1));
    // The consumer holds its batch: nothing written, nothing committed.
    wait_until("the orders are in Kafka, uncommitted", || async {
        let lag = crate::kafka::consumer::group_lag(
            &backends.kafka,
            &env.services.group,
            &env.services.topic,
        )
        .await;
        lag.is_ok_and(|lag| lag > 0)
    })
    .await;
    assert_eq!(order_ids(&env, 9).await.len(), 20);
    // SKU loads fail fast: 20 SKUs that only MySQL could tell about.
    let breaker = running.protection.mysql.breaker();
    let rejected = breaker.stats().rejected;
    let gets = join_all((500..520u64).map(|sku| {
        let client = client.clone();
        tokio::spawn(async move { client.get(&format!("/api/v1/skus/{sku}")).await })
    }))
    .await;
    for get in gets {
        assert_eq!(
            get.unwrap(),
            (StatusCode::SERVICE_UNAVAILABLE, Some("1".to_owned()))
        );
    }
    // Of 20 loads at once, one may pass as the bucket's probe and the rest
    // are rejected with probability 0.5 or more (none rejected: about 1 in
    // 500,000).
    assert!(breaker.stats().rejected > rejected);
    assert_eq!(
        metrics.breaker(Dependency::Mysql).2,
        breaker.stats().rejected
    );
    assert_eq!(order_ids(&env, 9).await.len(), 20);

    mysql.set(Mode::Forward);
    wait_within("every order in MySQL", Duration::from_secs(60), || async {
        order_ids(&env, 9).await.len() >= 220
    })
    .await;
    let ids = order_ids(&env, 9).await;
    assert_eq!(ids.len(), 220);
    assert_eq!(ids.into_iter().collect::<HashSet<_>>(), queued);
    assert_eq!(mysql_stock(env.backends.store.pool(), 9).await, 780);
    assert_eq!(failed_count(&env).await, 0);
    wait_until("the offsets are committed", || async {
        crate::kafka::consumer::group_lag(&backends.kafka, &env.services.group, &env.services.topic)
            .await
            .is_ok_and(|lag| lag == 0)
    })
    .await;
    wait_until("the MySQL breaker closes by itself", || async {
        metrics.render().contains(&state_line(Dependency::Mysql, 0))
    })
    .await;
    assert_eq!(metrics.breaker(Dependency::Mysql).1 % 2, 0);
    wait_until("the SKU route answers again", || async {
        client.get("/api/v1/skus/9").await.0 == StatusCode::OK
    })
    .await;
    assert_eq!(order_ids(&env, 9).await.len(), 220);
    running.shutdown().await;
    drop(mysql);
    env.cleanup().await;
}

/// Redis stalled: purchases time out, the Redis breaker throttles, and
/// then most purchases are answered 503 without a byte sent to Redis (each
/// rejection counted, and its request id absent from what reached Redis).
/// Once Redis answers again, every buyer's retry with the same request id
/// is decided, and each grant reaches MySQL exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn protection_redis_stall_rejects_without_sending() {
    let env = TestEnv::with_sale(Broker::Mock, |sale| {
        sale.protection.redis_timeout_ms = 300;
        sale.protection.breaker_window_ms = 2_000;
    })
    .await;
    let redis = Proxy::start(target(&env.services.redis_url, 6379).await).await;
    let (running, _backends) = start_through(&env, Some(&redis), None).await;
    let client = Client::new(&running);
    let breaker = running.protection.redis.breaker();
    assert_eq!(client.put_sku(4, 1_000).await, StatusCode::OK);
    assert_eq!(
        client.buy("stall-0000", 0, 4).await.status,
        StatusCode::ACCEPTED
    );
    let before = breaker.stats();

    redis.set(Mode::Hold);
    let mut answers: Vec<(String, u64, Answer)> = Vec::new();
    let mut user = 0u64;
    while breaker.state() != seckill::overload::breaker::BreakerState::Throttling {
        user += 1;
        assert!(user < 100, "the Redis breaker never opened");
        let id = format!("stall-{user:04}");
        let answer = client.buy(&id, user, 4).await;
        answers.push((id, user, answer));
    }
    let burst = join_all((user + 1..user + 301).map(|user| {
        let client = client.clone();
        tokio::spawn(async move {
            let id = format!("stall-{user:04}");
            let answer = client.buy(&id, user, 4).await;
            (id, user, answer)
        })
    }))
    .await;
    answers.extend(burst.into_iter().map(Result::unwrap));
    assert_eq!(metrics_state(&running, Dependency::Redis), 1);

    // Every answer is 503 with Retry-After; a rejected one says it was not tried.
    let mut not_tried = HashSet::new();
    let mut timed_out = HashSet::new();
    for (id, _, answer) in &answers {
        assert_eq!(
            (answer.status, answer.retry_after.as_deref()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("1")),
            "{answer:?}"
        );
        if answer.error().contains("was not tried") {
            not_tried.insert(id.clone());
        } else {
            assert!(answer.error().contains("unavailable"), "{answer:?}");
            timed_out.insert(id.clone());
        }
    }
    let stats = breaker.stats();
    let rejected = stats.rejected - before.rejected;
    assert!(rejected > 0);
    assert_eq!(not_tried.len() as u64, rejected);
    assert_eq!(timed_out.len() as u64, stats.failures - before.failures);
    assert_eq!(running.metrics.breaker(Dependency::Redis).2, stats.rejected);

    // Back: what was held reaches Redis, where each timed-out deduction runs.
    redis.set(Mode::Forward);
    let store = env.backends.stock.store();
    for id in &timed_out {
        wait_until("a held deduction reaches Redis", || async {
            store.request(id).await.unwrap().is_some()
        })
        .await;
    }
    let sent = String::from_utf8_lossy(&redis.sent_to_server()).into_owned();
    for id in &not_tried {
        assert!(!sent.contains(id.as_str()), "{id} reached Redis");
        assert!(store.request(id).await.unwrap().is_none(), "{id}");
    }
    for id in &timed_out {
        assert!(sent.contains(id.as_str()), "{id} never reached Redis");
    }

    // Every buyer retries with the same request id until decided: queued.
    let retries = join_all(answers.iter().map(|(id, user, _)| {
        let (client, id, user) = (client.clone(), id.clone(), *user);
        tokio::spawn(async move { client.buy_until_decided(&id, user, 4).await.0 })
    }))
    .await;
    for answer in retries {
        let answer = answer.unwrap();
        assert_eq!(
            (answer.status, answer.status_field()),
            (StatusCode::ACCEPTED, "queued"),
            "{answer:?}"
        );
    }
    let granted = answers.len() as i64 + 1;
    assert_eq!(store.stock("4").await.unwrap(), 1_000 - granted);
    // A timed-out grant's retry is a replay, not handed off again: the
    // reconciler publishes it. Either way, each reaches MySQL once.
    wait_within("every grant in MySQL", Duration::from_secs(60), || async {
        order_ids(&env, 4).await.len() as i64 >= granted
    })
    .await;
    let ids = order_ids(&env, 4).await;
    assert_eq!(ids.len() as i64, granted);
    let mut expected: HashSet<String> = answers.iter().map(|(id, _, _)| id.clone()).collect();
    expected.insert("stall-0000".to_owned());
    assert_eq!(ids.into_iter().collect::<HashSet<_>>(), expected);
    running.shutdown().await;
    drop(redis);
    env.cleanup().await;
}

fn metrics_state(running: &Running, dependency: Dependency) -> i64 {
    running.metrics.render();
    running.metrics.breaker(dependency).0
}

/// Redis slowed down, 3,000 buyers at once, the adaptive limit on: it sheds
/// (503 `overloaded`, nothing decided), each buyer retries with the same
/// request id, and every admitted request gets its exact answer: 500
/// queued, 2,500 sold out, 500 orders, each shed counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn protection_adaptive_limit_sheds_under_slow_redis() {
    let env = TestEnv::with_sale(Broker::Mock, |sale| {
        sale.protection.adaptive_limit = true;
        // The latency rule: a slowed Redis is what it reacts to.
        sale.protection.adaptive_algorithm = crate::protection::AdaptiveAlgorithm::Gradient;
        sale.protection.redis_timeout_ms = 10_000;
    })
    .await;
    let redis = Proxy::start(target(&env.services.redis_url, 6379).await).await;
    let (running, _backends) = start_through(&env, Some(&redis), None).await;
    let client = Client::new(&running);
    assert_eq!(client.put_sku(2, 500).await, StatusCode::OK);
    let Some(limit) = running.protection.buy_limit.clone() else {
        panic!("the adaptive limit is off");
    };

    redis.set(Mode::Delay(Duration::from_millis(2)));
    let answers = join_all((0..3_000u64).map(|user| {
        let client = client.clone();
        tokio::spawn(async move {
            let id = format!("slow-{user:04}");
            let (answer, shed) = client.buy_until_decided(&id, user, 2).await;
            (id, answer, shed)
        })
    }))
    .await;
    let mut queued = HashSet::new();
    let mut sold_out = 0;
    let mut shed = 0;
    for answer in answers {
        let (id, answer, overloaded) = answer.unwrap();
        shed += overloaded;
        match (answer.status, answer.status_field()) {
            (StatusCode::ACCEPTED, "queued") => {
                queued.insert(id);
            }
            (StatusCode::OK, "sold_out") => sold_out += 1,
            _ => panic!("{id}: {answer:?}"),
        }
    }
    assert_eq!(
        (queued.len(), sold_out),
        (500, 2_500),
        "Redis stock {:?}, refused by MySQL {}, shed {shed}",
        env.backends.stock.store().stock("2").await,
        running.metrics.orders_failed.get(),
    );
    assert!(shed > 0, "the adaptive limit never shed");
    let stats = limit.limit().stats();
    assert_eq!(stats.rejected, shed);
    assert_eq!(stats.in_flight, 0);
    assert_eq!(running.metrics.adaptive_shed.get(), shed);
    assert_eq!(running.metrics.outcome_count(Outcome::Overloaded), shed);
    running.metrics.render();
    assert_eq!(
        running.metrics.adaptive_limit.get(),
        i64::try_from(stats.limit).unwrap()
    );
    assert!((8..=1_000).contains(&stats.limit), "{stats:?}");
    redis.set(Mode::Forward);
    assert_eq!(env.backends.stock.store().stock("2").await.unwrap(), 0);
    wait_within("every order in MySQL", Duration::from_secs(60), || async {
        order_ids(&env, 2).await.len() >= 500
    })
    .await;
    let ids = order_ids(&env, 2).await;
    assert_eq!(ids.into_iter().collect::<HashSet<_>>(), queued);
    assert_eq!(mysql_stock(env.backends.store.pool(), 2).await, 0);
    running.shutdown().await;
    drop(redis);
    env.cleanup().await;
}
