//! The HTTP API over real HTTP, on the real Redis, MySQL and Kafka.

use std::time::{Duration, Instant};

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::support::{ADMIN_TOKEN, Broker, TestEnv, mysql_stock, token, wait_within};
use crate::app::Running;

/// A client for one running instance.
pub(super) struct Client {
    pub(super) http: reqwest::Client,
    pub(super) base: String,
}

impl Client {
    pub(super) fn new(running: &Running) -> Self {
        Self {
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .unwrap(),
            base: format!("http://{}", running.addr),
        }
    }

    pub(super) async fn put_sku(&self, sku: u64, name: &str, stock: u64) -> (StatusCode, Value) {
        let response = self
            .http
            .put(format!("{}/api/v1/admin/skus/{sku}", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({ "name": name, "price_cents": 1999, "stock": stock }))
            .send()
            .await
            .unwrap();
        (response.status(), response.json().await.unwrap())
    }

    pub(super) async fn buy(&self, request_id: &str, user: u64, sku: u64) -> (StatusCode, Value) {
        self.post_json(json!({ "request_id": request_id, "user_id": user, "sku_id": sku }))
            .await
    }

    /// Posts a purchase as the body's `user_id` (signed in with a token of
    /// that user).
    async fn post_json(&self, body: Value) -> (StatusCode, Value) {
        let user = body["user_id"].as_u64().unwrap_or(0);
        let response = self
            .http
            .post(format!("{}/api/v1/seckill", self.base))
            .bearer_auth(token(user))
            .json(&body)
            .send()
            .await
            .unwrap();
        (response.status(), response.json().await.unwrap())
    }

    pub(super) async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Polls an order until its status is `want`, for up to 30 s.
    async fn wait_order(&self, request_id: &str, want: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, body) = self.get(&format!("/api/v1/orders/{request_id}")).await;
            if body["status"] == want {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "order {request_id} still {body} after 30 s, expected {want}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn order_count(env: &TestEnv, sku: u64) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE sku_id = ?")
        .bind(sku)
        .fetch_one(env.backends.store.pool())
        .await
        .unwrap()
}

/// Every answer of the purchase endpoint, the order status and the SKU view.
async fn purchase_outcomes(broker: Broker) {
    let env = TestEnv::new(broker).await;
    let running = env.start().await;
    let client = Client::new(&running);
    let (status, sku) = client.put_sku(7, "phone", 3).await;
    assert_eq!(status, StatusCode::OK, "{sku}");

    let (status, body) = client.buy("r-1", 1, 7).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body, json!({ "status": "queued", "request_id": "r-1" }));
    // The same request id again: the first answer, nothing taken twice.
    let (status, body) = client.buy("r-1", 1, 7).await;
    assert_eq!(
        (status, body["status"].clone()),
        (StatusCode::ACCEPTED, json!("queued"))
    );
    assert_eq!(env.backends.stock.store().stock("7").await.unwrap(), 2);
    // The same request id for another buyer: a client bug, refused with 409;
    // nothing is taken and the first answer stands.
    let (status, body) = client.buy("r-1", 5, 7).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("new request_id"),
        "{body}"
    );
    assert_eq!(env.backends.stock.store().stock("7").await.unwrap(), 2);
    // The same user again with a new id: over the per-user limit.
    let (status, body) = client.buy("r-2", 1, 7).await;
    assert_eq!(
        (status, body["status"].clone()),
        (StatusCode::OK, json!("limit_exceeded"))
    );
    // More than one unit is over the limit of one too.
    let (status, body) = client
        .post_json(json!({ "request_id": "r-3", "user_id": 9, "sku_id": 7, "quantity": 2 }))
        .await;
    assert_eq!(
        (status, body["status"].clone()),
        (StatusCode::OK, json!("limit_exceeded"))
    );

    // Request ids are case-sensitive, in Redis and in MySQL.
    for (id, user) in [("r-4", 2), ("R-4", 3)] {
        assert_eq!(client.buy(id, user, 7).await.0, StatusCode::ACCEPTED);
    }
    let deductions = running.metrics.redis_deductions.get();
    let (status, body) = client.buy("r-6", 4, 7).await;
    assert_eq!(
        (status, body["status"].clone()),
        (StatusCode::OK, json!("sold_out"))
    );
    assert_eq!(running.metrics.redis_deductions.get(), deductions + 1);
    // Redis said sold out: once the flag has loaded the SKU's grants, the
    // next answer comes from it.
    super::support::wait_until("the sold-out flag knows the grants", || async {
        running.sale.answers_sold_out_locally(7)
    })
    .await;
    let (status, body) = client.buy("r-7", 5, 7).await;
    assert_eq!(
        (status, body["status"].clone()),
        (StatusCode::OK, json!("sold_out"))
    );
    assert_eq!(running.metrics.redis_deductions.get(), deductions + 1);
    assert_eq!(running.metrics.sold_out_local.get(), 1);

    // Unknown SKU.
    let (status, body) = client.buy("r-8", 6, 999).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].as_str().unwrap().contains("999"), "{body}");

    // Order status: created once the consumer wrote it.
    for (id, user) in [("r-1", 1), ("r-4", 2), ("R-4", 3)] {
        let order = client.wait_order(id, "created").await;
        assert_eq!(order["user_id"], user);
        assert_eq!(order["sku_id"], 7);
        assert_eq!(order["quantity"], 1);
    }
    let (_, body) = client.get("/api/v1/orders/r-6").await;
    assert_eq!(
        body,
        json!({ "status": "failed", "request_id": "r-6", "reason": "sold_out" })
    );
    let (_, body) = client.get("/api/v1/orders/r-2").await;
    assert_eq!(body["reason"], "limit_exceeded");
    let (_, body) = client.get("/api/v1/orders/nobody").await;
    assert_eq!(
        body,
        json!({ "status": "not_found", "request_id": "nobody" })
    );
    assert_eq!(order_count(&env, 7).await, 3);
    assert_eq!(mysql_stock(env.backends.store.pool(), 7).await, 0);

    // The SKU through the cache, with the live stock.
    let (status, body) = client.get("/api/v1/skus/7").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({ "sku_id": 7, "name": "phone", "price_cents": 1999, "stock": 0 })
    );
    assert_eq!(client.get("/api/v1/skus/8").await.0, StatusCode::NOT_FOUND);
    // Once more: a hit, counted once.
    assert_eq!(client.get("/api/v1/skus/7").await.0, StatusCode::OK);

    // The consumer counts an order after its transaction commits, so the
    // rows can be visible a moment before the counter moves: wait for it.
    wait_within("3 orders counted", Duration::from_secs(30), || async {
        running.metrics.orders_created.get() >= 3
    })
    .await;
    let (status, text) = client.get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    let text = text.as_str().unwrap().to_owned();
    for line in [
        "seckill_requests_total{outcome=\"queued\"} 4\n",
        "seckill_requests_total{outcome=\"sold_out\"} 2\n",
        "seckill_requests_total{outcome=\"limit_exceeded\"} 2\n",
        "seckill_requests_total{outcome=\"not_found\"} 1\n",
        "seckill_requests_total{outcome=\"conflict\"} 1\n",
        "seckill_orders_created_total 3\n",
        "seckill_request_duration_seconds_count 10\n",
        // SKU 7, SKU 8, and SKU 999 (an unknown SKU's purchase asks the
        // catalog whether its sale is paused or it does not exist).
        "seckill_cache_loads_total 3\n",
        "seckill_cache_hits_total 1\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert_eq!(client.get("/healthz").await.0, StatusCode::OK);
    running.shutdown().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn purchase_outcomes_mock_kafka() {
    purchase_outcomes(Broker::Mock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn purchase_outcomes_real_kafka() {
    purchase_outcomes(Broker::Real).await;
}

/// 3,000 buyers at once for 500 units: exactly 500 queued and 500 orders.
async fn crowd_never_oversells(broker: Broker) {
    let env = TestEnv::new(broker).await;
    let running = env.start().await;
    let client = Client::new(&running);
    assert_eq!(client.put_sku(1, "console", 500).await.0, StatusCode::OK);
    let answers = join_all((0..3_000u64).map(|user| {
        let (http, base) = (client.http.clone(), client.base.clone());
        tokio::spawn(async move {
            let response = http
                .post(format!("{base}/api/v1/seckill"))
                .bearer_auth(token(user))
                .json(
                    &json!({ "request_id": format!("crowd-{user}"), "user_id": user, "sku_id": 1 }),
                )
                .send()
                .await
                .unwrap();
            let body: Value = response.json().await.unwrap();
            body["status"]
                .as_str()
                .unwrap_or_else(|| panic!("{body}"))
                .to_owned()
        })
    }))
    .await;
    let queued = answers
        .iter()
        .filter(|a| a.as_ref().unwrap() == "queued")
        .count();
    let sold_out = answers
        .iter()
        .filter(|a| a.as_ref().unwrap() == "sold_out")
        .count();
    assert_eq!((queued, sold_out), (500, 2_500));
    wait_within("orders in MySQL", Duration::from_secs(60), || async {
        order_count(&env, 1).await >= 500
    })
    .await;
    assert_eq!(order_count(&env, 1).await, 500);
    assert_eq!(mysql_stock(env.backends.store.pool(), 1).await, 0);
    assert_eq!(env.backends.stock.store().stock("1").await.unwrap(), 0);
    running.shutdown().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crowd_never_oversells_mock_kafka() {
    crowd_never_oversells(Broker::Mock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crowd_never_oversells_real_kafka() {
    crowd_never_oversells(Broker::Real).await;
}

/// `--max-in-flight`: a purchase beyond it is answered 503 `overloaded` at
/// once and decides nothing; a retry with the same id is decided as usual.
/// Then 600 concurrent buyers against a bulkhead of 4, each retrying its own
/// request id on 503: exactly the stock is queued, nothing lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overload_is_refused_before_any_work() {
    let env = TestEnv::with_sale(Broker::Mock, |sale| sale.max_in_flight = 4).await;
    let running = env.start().await;
    let client = Client::new(&running);
    assert_eq!(client.put_sku(3, "console", 100).await.0, StatusCode::OK);
    // Hold every place: the next purchase is refused, Redis untouched.
    let held: Vec<_> = (0..4)
        .map(|_| running.bulkhead.try_acquire().unwrap())
        .collect();
    let deductions = running.metrics.redis_deductions.get();
    let response = client
        .http
        .post(format!("{}/api/v1/seckill", client.base))
        .bearer_auth(token(1))
        .json(&json!({ "request_id": "o-1", "user_id": 1, "sku_id": 3 }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "overloaded", "{body}");
    assert_eq!(running.metrics.redis_deductions.get(), deductions);
    assert_eq!(env.backends.stock.store().stock("3").await.unwrap(), 100);
    drop(held);
    let (status, body) = client.buy("o-1", 1, 3).await;
    assert_eq!(
        (status, body["status"].clone()),
        (StatusCode::ACCEPTED, json!("queued"))
    );

    let answers = join_all((2..602u64).map(|user| {
        let (http, base) = (client.http.clone(), client.base.clone());
        tokio::spawn(async move {
            let mut refused = 0u32;
            loop {
                let response = http
                    .post(format!("{base}/api/v1/seckill"))
                    .bearer_auth(token(user))
                    .json(
                        &json!({ "request_id": format!("o-{user}"), "user_id": user, "sku_id": 3 }),
                    )
                    .send()
                    .await
                    .unwrap();
                let body: Value = response.json().await.unwrap();
                match body["status"].as_str().unwrap() {
                    "overloaded" => {
                        refused += 1;
                        tokio::task::yield_now().await;
                    }
                    answer => return (answer.to_owned(), refused),
                }
            }
        })
    }))
    .await;
    let answers: Vec<(String, u32)> = answers.into_iter().map(Result::unwrap).collect();
    let queued = answers.iter().filter(|(a, _)| a == "queued").count();
    let sold_out = answers.iter().filter(|(a, _)| a == "sold_out").count();
    assert_eq!((queued, sold_out), (99, 501));
    let refused: u64 = answers.iter().map(|(_, r)| u64::from(*r)).sum();
    assert_eq!(
        running
            .metrics
            .outcome_count(crate::metrics::Outcome::Overloaded),
        refused + 1
    );
    assert_eq!(running.bulkhead.stats().in_flight, 0);
    wait_within("orders in MySQL", Duration::from_secs(60), || async {
        order_count(&env, 3).await >= 100
    })
    .await;
    assert_eq!(order_count(&env, 3).await, 100);
    assert_eq!(mysql_stock(env.backends.store.pool(), 3).await, 0);
    assert_eq!(env.backends.stock.store().stock("3").await.unwrap(), 0);
    running.shutdown().await;
    env.cleanup().await;
}

/// Malformed bodies get 400 (413 when too large), never a 500, and the
/// service keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_input_is_refused() {
    let env = TestEnv::new(Broker::Mock).await;
    let running = env.start().await;
    let client = Client::new(&running);
    assert_eq!(client.put_sku(1, "tv", 10).await.0, StatusCode::OK);
    let huge = format!(
        "{{\"request_id\":\"{}\",\"user_id\":1,\"sku_id\":1}}",
        "x".repeat(1 << 20)
    );
    let long_id = "a".repeat(65);
    let cases: Vec<(&str, String, &str, StatusCode)> = vec![
        (
            "empty object",
            "{}".into(),
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            "missing sku_id",
            r#"{"request_id":"a","user_id":1}"#.into(),
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            "user_id not a number",
            r#"{"request_id":"a","user_id":"1","sku_id":1}"#.into(),
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            "missing request_id",
            r#"{"user_id":1,"sku_id":1}"#.into(),
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            "number as id",
            r#"{"request_id":5,"user_id":1,"sku_id":1}"#.into(),
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            "string user",
            r#"{"request_id":"a","user_id":"1","sku_id":1}"#.into(),
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            "float sku",
            r#"{"request_id":"a","user_id":1,"sku_id":1.5}"#.into(),
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            "negative user",
            r#"{"request_id":"a","user_id":-1,"sku_id":1}"#.into(),
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            "user beyond u64",
            r#"{"request_id":"a","user_id":18446744073709551616,"sku_id":1}"#.into(),
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            "huge exponent",
            r#"{"request_id":"a","user_id":1e400,"sku_id":1}"#.into(),
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            "quantity 0",
            r#"{"request_id":"a","user_id":1,"sku_id":1,"quantity":0}"#.into(),
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            "quantity beyond u32",
            r#"{"request_id":"a","user_id":1,"sku_id":1,"quantity":4294967296}"#.into(),
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            "quantity over the maximum",
            r#"{"request_id":"a","user_id":1,"sku_id":1,"quantity":11}"#.into(),
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            "null quantity",
            r#"{"request_id":"a","user_id":1,"sku_id":1,"quantity":null}"#.into(),
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            "empty id",
            r#"{"request_id":"","user_id":1,"sku_id":1}"#.into(),
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            "65-character id",
            format!(r#"{{"request_id":"{long_id}","user_id":1,"sku_id":1}}"#),
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            "id with a space",
            r#"{"request_id":"a b","user_id":1,"sku_id":1}"#.into(),
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            "non-ASCII id",
            r#"{"request_id":"订单","user_id":1,"sku_id":1}"#.into(),
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            "not JSON",
            "{".into(),
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            "empty body",
            String::new(),
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            "array",
            "[1,2]".into(),
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            "null",
            "null".into(),
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            "text/plain",
            r#"{"request_id":"a","user_id":1,"sku_id":1}"#.into(),
            "text/plain",
            StatusCode::BAD_REQUEST,
        ),
        (
            "form",
            "request_id=a&user_id=1&sku_id=1".into(),
            "application/x-www-form-urlencoded",
            StatusCode::BAD_REQUEST,
        ),
        (
            "1 MB body",
            huge,
            "application/json",
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (name, body, content_type, want) in &cases {
        let response = client
            .http
            .post(format!("{}/api/v1/seckill", client.base))
            .bearer_auth(token(1))
            .header("content-type", *content_type)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let status = response.status();
        let answer: Value = response
            .json()
            .await
            .unwrap_or_else(|e| panic!("{name}: the answer is not JSON: {e}"));
        assert_eq!(status, *want, "{name}: {answer}");
        assert!(answer["error"].is_string(), "{name}: {answer}");
    }
    // A body declared far over the drain limit is refused at once, before
    // the client sends it (raw TCP: the headers, then read the answer).
    let answer = raw_exchange(
        &client.base,
        &format!(
            "POST /api/v1/seckill HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            token(1),
            100 << 20
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"error\""), "{answer}");
    // Nothing was decided, and the service still serves.
    assert_eq!(env.backends.stock.store().stock("1").await.unwrap(), 10);
    assert_eq!(
        running
            .metrics
            .outcome_count(crate::metrics::Outcome::BadRequest),
        cases.len() as u64 + 1
    );
    let (status, body) = client.buy("fine", 1, 1).await;
    assert_eq!(
        (status, body["status"].clone()),
        (StatusCode::ACCEPTED, json!("queued"))
    );
    // Bad paths and bad admin bodies.
    let (status, body) = client.get("/api/v1/skus/abc").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("sku_id"), "{body}");
    let (status, body) = client.get("/api/v1/skus/18446744073709551616").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].is_string(), "{body}");
    let response = client
        .http
        .put(format!("{}/api/v1/admin/skus/1", client.base))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "name": "", "price_cents": 1, "stock": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let response = client
        .http
        .put(format!("{}/api/v1/admin/skus/1", client.base))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "name": "tv", "price_cents": 1, "stock": -1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    running.shutdown().await;
    env.cleanup().await;
}

/// Writes `request` to the server at `base` (`http://host:port`) over a
/// plain TCP connection and reads the answer until the server closes it.
async fn raw_exchange(base: &str, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

/// `--per-user-limit 3`: a buyer may hold three units across requests, no
/// more, end to end (Redis decides, the SKU row records the limit, MySQL
/// holds the orders).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn per_user_limit_of_n_units() {
    let env = TestEnv::with_sale(Broker::Mock, |sale| sale.per_user_limit = 3).await;
    let running = env.start().await;
    let client = Client::new(&running);
    let (status, sku) = client.put_sku(4, "shoes", 100).await;
    assert_eq!(
        (status, sku["per_user_limit"].clone()),
        (StatusCode::OK, json!(3))
    );
    let buy = |id: &str, user: u64, quantity: u32| json!({ "request_id": id, "user_id": user, "sku_id": 4, "quantity": quantity });
    for (body, want) in [
        (buy("a", 1, 1), "queued"),
        (buy("b", 1, 2), "queued"),
        (buy("c", 1, 1), "limit_exceeded"),
        (buy("d", 2, 4), "limit_exceeded"),
        (buy("e", 2, 3), "queued"),
        (buy("f", 2, 1), "limit_exceeded"),
    ] {
        let (_, answer) = client.post_json(body.clone()).await;
        assert_eq!(answer["status"], want, "{body}");
    }
    for id in ["a", "b", "e"] {
        client.wait_order(id, "created").await;
    }
    let held: Vec<(u64, u64)> = sqlx::query_as(
        "SELECT user_id, CAST(SUM(quantity) AS UNSIGNED) FROM orders WHERE sku_id = 4 \
         GROUP BY user_id ORDER BY user_id",
    )
    .fetch_all(env.backends.store.pool())
    .await
    .unwrap();
    assert_eq!(held, vec![(1, 3), (2, 3)]);
    assert_eq!(mysql_stock(env.backends.store.pool(), 4).await, 94);
    let (_, body) = client.get("/api/v1/orders/c").await;
    assert_eq!(body["reason"], "limit_exceeded");
    running.shutdown().await;
    env.cleanup().await;
}

/// Per-user and per-IP token buckets answer 429 with Retry-After.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_limits_answer_429() {
    let env = TestEnv::with_sale(Broker::Mock, |sale| {
        sale.user_rate = 1;
        sale.user_burst = 1;
        sale.ip_rate = 1;
        sale.ip_burst = 3;
    })
    .await;
    let running = env.start().await;
    let client = Client::new(&running);
    assert_eq!(client.put_sku(1, "tv", 10).await.0, StatusCode::OK);
    assert_eq!(client.buy("a-1", 1, 1).await.0, StatusCode::ACCEPTED);
    let response = client
        .http
        .post(format!("{}/api/v1/seckill", client.base))
        .bearer_auth(token(1))
        .json(&json!({ "request_id": "a-2", "user_id": 1, "sku_id": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    // The IETF draft's headers name the limit that refused it: the user's
    // bucket of 1, refilled in 1 s.
    assert_eq!(
        response.headers()["ratelimit-policy"],
        "\"per-user\";q=1;w=1"
    );
    assert_eq!(
        response.headers()["ratelimit"],
        format!("\"per-user\";r=0;t={retry_after}").as_str()
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({ "status": "rate_limited", "request_id": "a-2" })
    );
    // Other users from the same IP: the IP's burst of 3 is used up after two more.
    assert_eq!(client.buy("b-1", 2, 1).await.0, StatusCode::ACCEPTED);
    let refused = client
        .http
        .post(format!("{}/api/v1/seckill", client.base))
        .bearer_auth(token(3))
        .json(&json!({ "request_id": "c-1", "user_id": 3, "sku_id": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()["ratelimit-policy"], "\"per-ip\";q=3;w=3");
    // Rate-limited requests were never decided: only two units are gone.
    assert_eq!(env.backends.stock.store().stock("1").await.unwrap(), 8);
    assert_eq!(
        running
            .metrics
            .outcome_count(crate::metrics::Outcome::RateLimited),
        2
    );
    running.shutdown().await;
    env.cleanup().await;
}

/// The admin route: bearer token, MySQL, cache invalidation, Redis stock.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_updates_sku_and_cache() {
    let env = TestEnv::new(Broker::Mock).await;
    let running = env.start().await;
    let client = Client::new(&running);
    let url = format!("{}/api/v1/admin/skus/5", client.base);
    let body = json!({ "name": "watch", "price_cents": 500, "stock": 4 });
    // A miss is cached as "not found"...
    assert_eq!(client.get("/api/v1/skus/5").await.0, StatusCode::NOT_FOUND);
    let response = client.http.put(&url).json(&body).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let response = client
        .http
        .put(&url)
        .bearer_auth("wrong-token")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(client.get("/api/v1/skus/5").await.0, StatusCode::NOT_FOUND);
    // ... and the update invalidates it.
    assert_eq!(client.put_sku(5, "watch", 4).await.0, StatusCode::OK);
    let (status, sku) = client.get("/api/v1/skus/5").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sku["name"], "watch");
    assert_eq!(sku["stock"], 4);
    assert_eq!(client.put_sku(5, "watch II", 6).await.0, StatusCode::OK);
    let (_, sku) = client.get("/api/v1/skus/5").await;
    assert_eq!(
        (sku["name"].clone(), sku["stock"].clone()),
        (json!("watch II"), json!(6))
    );
    assert_eq!(mysql_stock(env.backends.store.pool(), 5).await, 6);
    assert_eq!(env.backends.stock.store().stock("5").await.unwrap(), 6);
    running.shutdown().await;

    // Without a token the admin route does not exist.
    let mut services = env.services.clone();
    services.admin_token = None;
    let backends = crate::app::Backends::connect(&services).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = Running::start(&backends, &env.sale, listener).unwrap();
    let client = Client::new(&running);
    let response = client
        .http
        .put(format!("{}/api/v1/admin/skus/5", client.base))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    running.shutdown().await;
    env.cleanup().await;
}

/// Graceful shutdown: every queued order reaches Kafka before the process
/// stops, and a consumer started later creates each exactly once.
async fn shutdown_loses_nothing(broker: Broker) {
    let env = TestEnv::new(broker).await;
    let running = env.start().await;
    let client = Client::new(&running);
    assert_eq!(client.put_sku(3, "bike", 400).await.0, StatusCode::OK);
    let answers = join_all((0..400u64).map(|user| {
        let (http, base) = (client.http.clone(), client.base.clone());
        tokio::spawn(async move {
            http.post(format!("{base}/api/v1/seckill"))
                .bearer_auth(token(user))
                .json(&json!({ "request_id": format!("s-{user}"), "user_id": user, "sku_id": 3 }))
                .send()
                .await
                .unwrap()
                .status()
        })
    }))
    .await;
    assert!(
        answers
            .iter()
            .all(|s| *s.as_ref().unwrap() == StatusCode::ACCEPTED)
    );
    let metrics = std::sync::Arc::clone(&running.metrics);
    running.shutdown().await;
    assert_eq!(metrics.orders_published.get(), 400);
    assert_eq!(metrics.orders_publish_failed.get(), 0);
    // The rest of the orders are consumed after a restart, none twice.
    let stop = tokio_util::sync::CancellationToken::new();
    let consumer = env.backends.spawn_consumer(&env.sale, stop.clone());
    wait_within("orders in MySQL", Duration::from_secs(60), || async {
        order_count(&env, 3).await >= 400
    })
    .await;
    stop.cancel();
    consumer.await.unwrap();
    assert_eq!(order_count(&env, 3).await, 400);
    assert_eq!(mysql_stock(env.backends.store.pool(), 3).await, 0);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_loses_nothing_mock_kafka() {
    shutdown_loses_nothing(Broker::Mock).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_loses_nothing_real_kafka() {
    shutdown_loses_nothing(Broker::Real).await;
}

/// `serve` stops on SIGTERM: HTTP closes, queued orders are flushed to
/// Kafka, and it returns success. (nextest runs each test in its own
/// process, so the signal reaches only this test.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serve_stops_cleanly_on_sigterm() {
    let env = TestEnv::new(Broker::Real).await;
    let mut services = env.services.clone();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    services.listen = format!("127.0.0.1:{port}").parse().unwrap();
    let sale = env.sale.clone();
    let serve = tokio::spawn(async move {
        crate::serve(&services, &sale)
            .await
            .map_err(|e| e.to_string())
    });
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "serve did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let response = http
        .put(format!("{base}/api/v1/admin/skus/1"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "name": "tv", "price_cents": 1, "stock": 5 }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    for user in 0..5u64 {
        let response = http
            .post(format!("{base}/api/v1/seckill"))
            .bearer_auth(token(user))
            .json(&json!({ "request_id": format!("t-{user}"), "user_id": user, "sku_id": 1 }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }
    let status = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(60), serve)
        .await
        .expect("serve did not stop within 60 s of SIGTERM")
        .unwrap()
        .unwrap();
    assert_eq!(exit, std::process::ExitCode::SUCCESS);
    assert!(http.get(format!("{base}/healthz")).send().await.is_err());
    // Everything queued reached Kafka: a consumer creates all five orders.
    let stop = tokio_util::sync::CancellationToken::new();
    let consumer = env.backends.spawn_consumer(&env.sale, stop.clone());
    wait_within("orders in MySQL", Duration::from_secs(60), || async {
        order_count(&env, 1).await >= 5
    })
    .await;
    stop.cancel();
    consumer.await.unwrap();
    assert_eq!(order_count(&env, 1).await, 5);
    env.cleanup().await;
}
