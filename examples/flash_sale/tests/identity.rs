//! Who may buy, over real HTTP on the real Redis and MySQL: bearer tokens,
//! the body that cannot speak for another user, per-device limits, the
//! blacklist shared through Redis, the challenge and the demo's tokens.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, SystemTime};

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::http::Client;
use super::support::{ADMIN_TOKEN, AUTH_SECRET, Broker, TestEnv, token, wait_until};
use crate::domain::blacklist::Blacklist;
use crate::domain::buyer::{Buyer, DeviceId};
use crate::identity::challenge::ProofOfWork;
use crate::identity::token::TokenKeys;
use crate::metrics::Outcome;

fn keys() -> TokenKeys {
    TokenKeys::new(AUTH_SECRET.as_bytes()).unwrap()
}

fn device_token(user: u64, device: &str) -> String {
    keys()
        .mint_for(
            user,
            Some(&DeviceId::parse(device).unwrap()),
            Duration::from_secs(600),
        )
        .unwrap()
}

/// Posts `body` with `authorization` (a whole header value) and extra headers.
async fn post(
    client: &Client,
    authorization: Option<&str>,
    headers: &[(&str, &str)],
    body: Value,
) -> (StatusCode, Value, reqwest::header::HeaderMap) {
    let mut request = client
        .http
        .post(format!("{}/api/v1/seckill", client.base))
        .json(&body);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    (status, response.json().await.unwrap(), headers)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

async fn stock(env: &TestEnv, sku: u64) -> i64 {
    env.backends
        .stock
        .store()
        .stock(&sku.to_string())
        .await
        .unwrap()
}

/// Missing, expired, forged, unsigned and contradicted tokens are 401
/// before any limiter or Redis work; 1,000 forged and 1,000 valid buyers
/// at once for 500 units: exactly the valid ones are decided.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn purchases_need_a_valid_token() {
    // One request per user before the per-user bucket refuses.
    let env = TestEnv::with_sale(Broker::Mock, |s| {
        s.user_rate = 1;
        s.user_burst = 1;
    })
    .await;
    let running = env.start().await;
    let client = Client::new(&running);
    assert_eq!(client.put_sku(1, "phone", 500).await.0, StatusCode::OK);
    let deductions = running.metrics.redis_deductions.get();
    let body = json!({ "request_id": "t-1", "user_id": 1, "sku_id": 1 });
    let expired = keys()
        .mint(1, None, SystemTime::now() - Duration::from_secs(120))
        .unwrap();
    let forged = TokenKeys::new(b"not the service's secret, but long enough")
        .unwrap()
        .mint_for(1, None, Duration::from_secs(600))
        .unwrap();
    let good = token(1);
    let (header, payload) = good.rsplit_once('.').unwrap().0.split_once('.').unwrap();
    let _ = header;
    let unsigned = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
    let bound = device_token(1, "phone-1");
    /// A case: its name, the `Authorization` value, more headers, what the error says.
    type Case<'a> = (&'a str, Option<String>, &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 7] = [
        ("no header", None, &[], "no bearer token"),
        (
            "not bearer",
            Some(format!("Basic {good}")),
            &[],
            "no bearer token",
        ),
        ("expired", Some(bearer(&expired)), &[], "expired"),
        ("forged", Some(bearer(&forged)), &[], "bad signature"),
        ("unsigned", Some(bearer(&unsigned)), &[], "not valid"),
        ("garbage", Some("Bearer a.b.c".into()), &[], "not valid"),
        (
            "another device",
            Some(bearer(&bound)),
            &[("x-device-id", "phone-2")],
            "X-Device-Id",
        ),
    ];
    for (name, authorization, headers, says) in &cases {
        let (status, answer, response_headers) =
            post(&client, authorization.as_deref(), headers, body.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}: {answer}");
        assert_eq!(answer["status"], "unauthorized", "{name}");
        assert!(
            answer["error"].as_str().unwrap().contains(says),
            "{name}: {answer}"
        );
        assert!(
            response_headers["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer"),
            "{name}"
        );
    }
    // Nothing reached Redis, and no limiter was charged: user 1's single
    // request of the second is still there.
    assert_eq!(running.metrics.redis_deductions.get(), deductions);
    assert_eq!(stock(&env, 1).await, 500);
    assert_eq!(
        running.metrics.outcome_count(Outcome::Unauthorized),
        cases.len() as u64
    );
    let (status, answer, _) = post(&client, Some(&bearer(&good)), &[], body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");

    // A crowd: users 1000..2000 forge, users 2000..3000 sign in.
    let answers = join_all((1_000..3_000u64).map(|user| {
        let (http, base) = (client.http.clone(), client.base.clone());
        let token = if user < 2_000 {
            TokenKeys::new(b"an attacker's secret, 32 bytes long")
                .unwrap()
                .mint_for(user, None, Duration::from_secs(600))
                .unwrap()
        } else {
            token(user)
        };
        tokio::spawn(async move {
            let response = http
                .post(format!("{base}/api/v1/seckill"))
                .bearer_auth(token)
                .json(&json!({ "request_id": format!("c-{user}"), "user_id": user, "sku_id": 1 }))
                .send()
                .await
                .unwrap();
            let status = response.status();
            let body: Value = response.json().await.unwrap();
            (user, status, body["status"].as_str().unwrap().to_owned())
        })
    }))
    .await;
    let mut counts = std::collections::BTreeMap::<String, u64>::new();
    for answer in answers {
        let (user, status, outcome) = answer.unwrap();
        if user < 2_000 {
            assert_eq!(
                (status, outcome.as_str()),
                (StatusCode::UNAUTHORIZED, "unauthorized")
            );
        }
        *counts.entry(outcome).or_default() += 1;
    }
    // 499 units were left after user 1's purchase.
    assert_eq!(
        counts,
        std::collections::BTreeMap::from([
            ("queued".to_owned(), 499),
            ("sold_out".to_owned(), 501),
            ("unauthorized".to_owned(), 1_000),
        ])
    );
    assert_eq!(stock(&env, 1).await, 0);
    running.shutdown().await;
    env.cleanup().await;
}

/// The buyer is the token's subject: a body naming another user is 403 and
/// decides nothing, and the per-user limit holds whatever the body says.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_body_cannot_speak_for_another_user() {
    let env = TestEnv::new(Broker::Mock).await;
    let running = env.start().await;
    let client = Client::new(&running);
    assert_eq!(client.put_sku(2, "watch", 10).await.0, StatusCode::OK);
    let me = bearer(&token(1));
    let (status, answer, _) = post(
        &client,
        Some(&me),
        &[],
        json!({ "request_id": "b-1", "sku_id": 2 }),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    // Speaking for user 2 with user 1's token: refused, nothing taken.
    let (status, answer, _) = post(
        &client,
        Some(&me),
        &[],
        json!({ "request_id": "b-2", "user_id": 2, "sku_id": 2 }),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(answer["status"], "forbidden");
    assert_eq!(stock(&env, 2).await, 9);
    // Leaving user_id out does not dodge the per-user limit of 1.
    let (status, answer, _) = post(
        &client,
        Some(&me),
        &[],
        json!({ "request_id": "b-3", "sku_id": 2 }),
    )
    .await;
    assert_eq!(
        (status, &answer["status"]),
        (StatusCode::OK, &json!("limit_exceeded"))
    );
    assert_eq!(stock(&env, 2).await, 9);
    // The order is the token's user's.
    let order = wait_order(&client, "b-1").await;
    assert_eq!(order["user_id"], 1, "{order}");
    running.shutdown().await;
    env.cleanup().await;
}

async fn wait_order(client: &Client, request_id: &str) -> Value {
    let path = format!("/api/v1/orders/{request_id}");
    wait_until(&format!("order {request_id} created"), || async {
        client.get(&path).await.1["status"] == "created"
    })
    .await;
    client.get(&path).await.1
}

/// A device bound into tokens is limited across every user on it; a
/// device header without a bound device is not trusted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bound_device_is_limited_across_its_users() {
    let env = TestEnv::with_sale(Broker::Mock, |s| {
        s.identity.device_rate = 1;
        s.identity.device_burst = 2;
    })
    .await;
    let running = env.start().await;
    let client = Client::new(&running);
    assert_eq!(client.put_sku(3, "tablet", 10).await.0, StatusCode::OK);
    let buy = |id: &str| json!({ "request_id": id, "sku_id": 3 });
    for (user, id) in [(1, "d-1"), (2, "d-2")] {
        let (status, answer, _) = post(
            &client,
            Some(&bearer(&device_token(user, "phone-1"))),
            &[],
            buy(id),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    }
    let (status, answer, _) = post(
        &client,
        Some(&bearer(&device_token(3, "phone-1"))),
        &[],
        buy("d-3"),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{answer}");
    // A fourth user claiming the device in a header only is not limited
    // by it (and could not be: the header is the client's word).
    let (status, answer, _) = post(
        &client,
        Some(&bearer(&token(4))),
        &[("x-device-id", "phone-1")],
        buy("d-4"),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(stock(&env, 3).await, 7);
    running.shutdown().await;
    env.cleanup().await;
}

async fn admin(
    client: &Client,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = client
        .http
        .request(method, format!("{}{path}", client.base));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    (response.status(), response.json().await.unwrap())
}

/// The blacklist: users, addresses and devices, changed at run time
/// through the admin API, answered 403 before any limiter or Redis work,
/// and seen by another instance through Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_blacklist_blocks_and_changes_at_run_time() {
    let env = TestEnv::with_sale(Broker::Mock, |s| {
        s.trust_forwarded_for = true;
        s.per_user_limit = 100;
        s.identity.device_rate = 1_000;
        s.identity.device_burst = 1_000;
    })
    .await;
    let running = env.start().await;
    let client = Client::new(&running);
    assert_eq!(client.put_sku(4, "camera", 100).await.0, StatusCode::OK);
    // Another instance's copy, kept fresh from Redis.
    let other = Blacklist::new();
    let stop = tokio_util::sync::CancellationToken::new();
    let refresher = tokio::spawn(crate::redis::blacklist::keep_fresh(
        env.backends.blacklist_store.clone(),
        other.clone(),
        Duration::from_millis(100),
        stop.clone(),
    ));
    let mut n = 0;
    let mut attempt = |user: u64, headers: Vec<(&'static str, String)>, auth: String| {
        n += 1;
        let client = &client;
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            post(
                client,
                Some(&bearer(&auth)),
                &headers,
                json!({ "request_id": format!("k-{n}"), "user_id": user, "sku_id": 4 }),
            )
            .await
        }
    };
    let ip = |s: &str| vec![("x-forwarded-for", s.to_owned())];
    let path = "/api/v1/admin/blacklist";
    use reqwest::Method;
    // Only the admin may change it; bad lists and values are refused.
    let put = |p: &str| format!("{path}/{p}");
    assert_eq!(
        admin(&client, Method::PUT, &put("users/7"), None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        admin(&client, Method::PUT, &put("cats/7"), Some(ADMIN_TOKEN))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        admin(&client, Method::PUT, &put("users/x"), Some(ADMIN_TOKEN))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        admin(&client, Method::PUT, &put("ips/1.2.3"), Some(ADMIN_TOKEN))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );

    let deductions = running.metrics.redis_deductions.get();
    let (status, answer) = admin(&client, Method::PUT, &put("users/7"), Some(ADMIN_TOKEN)).await;
    assert_eq!(
        (status, answer["added"].clone()),
        (StatusCode::OK, json!(true)),
        "{answer}"
    );
    let (_, answer) = admin(&client, Method::PUT, &put("users/7"), Some(ADMIN_TOKEN)).await;
    assert_eq!(answer["added"], false);
    let (status, answer, _) = attempt(7, ip("10.0.0.1"), token(7)).await;
    assert_eq!(
        (status, &answer["status"]),
        (StatusCode::FORBIDDEN, &json!("blocked")),
        "{answer}"
    );

    assert_eq!(
        admin(
            &client,
            Method::PUT,
            &put("ips/10.0.0.9"),
            Some(ADMIN_TOKEN)
        )
        .await
        .0,
        StatusCode::OK
    );
    let (status, answer, _) = attempt(8, ip("10.0.0.9"), token(8)).await;
    assert_eq!(
        (status, &answer["status"]),
        (StatusCode::FORBIDDEN, &json!("blocked")),
        "{answer}"
    );

    assert_eq!(
        admin(
            &client,
            Method::PUT,
            &put("devices/stolen-1"),
            Some(ADMIN_TOKEN)
        )
        .await
        .0,
        StatusCode::OK
    );
    let (status, answer, _) = attempt(9, ip("10.0.0.1"), device_token(9, "stolen-1")).await;
    assert_eq!(
        (status, &answer["status"]),
        (StatusCode::FORBIDDEN, &json!("blocked")),
        "{answer}"
    );
    // None of them reached Redis.
    assert_eq!(running.metrics.redis_deductions.get(), deductions);
    assert_eq!(stock(&env, 4).await, 100);

    let (status, list) = admin(&client, Method::GET, path, Some(ADMIN_TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        list,
        json!({ "users": [7], "ips": ["10.0.0.9"], "devices": ["stolen-1"] })
    );
    // The other instance sees every change.
    wait_until("the other instance loaded the blacklist", || {
        let other = other.clone();
        async move {
            let entries = other.entries();
            entries.users.contains(&7)
                && entries
                    .ips
                    .contains(&IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9)))
                && entries.devices.contains("stolen-1")
        }
    })
    .await;
    let blocked = other.check(
        &Buyer {
            user_id: 7,
            device: None,
        },
        IpAddr::V4(Ipv4Addr::LOCALHOST),
    );
    assert!(blocked.is_err());

    // Unblocked: buys again, here and there.
    let (status, answer) = admin(&client, Method::DELETE, &put("users/7"), Some(ADMIN_TOKEN)).await;
    assert_eq!(
        (status, answer["removed"].clone()),
        (StatusCode::OK, json!(true)),
        "{answer}"
    );
    let (_, answer) = admin(&client, Method::DELETE, &put("users/7"), Some(ADMIN_TOKEN)).await;
    assert_eq!(answer["removed"], false);
    let (status, answer, _) = attempt(7, ip("10.0.0.1"), token(7)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    wait_until("the other instance unblocked user 7", || {
        let other = other.clone();
        async move { !other.entries().users.contains(&7) }
    })
    .await;
    assert_eq!(running.metrics.outcome_count(Outcome::Forbidden), 3);
    stop.cancel();
    refresher.await.unwrap();
    running.shutdown().await;
    env.cleanup().await;
}

/// With a challenge configured, a purchase carries a solved puzzle bound
/// to its buyer and SKU; without one it is 403 before any Redis work.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_configured_challenge_must_be_solved() {
    let env = TestEnv::with_sale(Broker::Mock, |s| s.identity.challenge_bits = 10).await;
    let running = env.start().await;
    let client = Client::new(&running);
    assert_eq!(client.put_sku(5, "drone", 10).await.0, StatusCode::OK);
    let me = bearer(&token(1));
    let (status, answer, _) = post(
        &client,
        Some(&me),
        &[],
        json!({ "request_id": "p-1", "sku_id": 5 }),
    )
    .await;
    assert_eq!(
        (status, &answer["status"]),
        (StatusCode::FORBIDDEN, &json!("challenge_failed")),
        "{answer}"
    );
    assert_eq!(stock(&env, 5).await, 10);

    // The puzzle needs a token too.
    let url = format!("{}/api/v1/challenge?sku_id=5", client.base);
    let response = client.http.get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let puzzle: Value = client
        .http
        .get(&url)
        .header("authorization", &me)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(puzzle["bits"], 10, "{puzzle}");
    let nonce = ProofOfWork::solve(puzzle["puzzle"].as_str().unwrap(), 10);
    let answer_of = |nonce: u64| json!({ "puzzle": puzzle["puzzle"], "nonce": nonce.to_string() });
    // Solved by user 1 for SKU 5: another user cannot use it.
    let (status, answer, _) = post(
        &client,
        Some(&bearer(&token(2))),
        &[],
        json!({ "request_id": "p-2", "sku_id": 5, "challenge": answer_of(nonce) }),
    )
    .await;
    assert_eq!(
        (status, &answer["status"]),
        (StatusCode::FORBIDDEN, &json!("challenge_failed")),
        "{answer}"
    );
    let (status, answer, _) = post(
        &client,
        Some(&me),
        &[],
        json!({ "request_id": "p-3", "sku_id": 5, "challenge": answer_of(nonce) }),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(stock(&env, 5).await, 9);
    running.shutdown().await;
    env.cleanup().await;

    // Without a challenge, there is no puzzle to fetch.
    let env = TestEnv::new(Broker::Mock).await;
    let running = env.start().await;
    let client = Client::new(&running);
    let response = client
        .http
        .get(format!("{}/api/v1/challenge?sku_id=5", client.base))
        .header("authorization", &me)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    running.shutdown().await;
    env.cleanup().await;
}

/// `--demo-tokens` mints a token that buys; without it the route is 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn demo_tokens_only_when_asked_for() {
    for on in [false, true] {
        let env = TestEnv::with_sale(Broker::Mock, |s| s.identity.demo_tokens = on).await;
        let running = env.start().await;
        let client = Client::new(&running);
        assert_eq!(client.put_sku(6, "lamp", 10).await.0, StatusCode::OK);
        let response = client
            .http
            .post(format!("{}/api/v1/demo/token", client.base))
            .json(&json!({ "user_id": 11, "device_id": "web-11" }))
            .send()
            .await
            .unwrap();
        if !on {
            assert_eq!(response.status(), StatusCode::NOT_FOUND);
        } else {
            assert_eq!(response.status(), StatusCode::OK);
            let minted: Value = response.json().await.unwrap();
            assert_eq!(minted["device_id"], "web-11");
            let (status, answer, _) = post(
                &client,
                Some(&bearer(minted["token"].as_str().unwrap())),
                &[("x-device-id", "web-11")],
                json!({ "request_id": "m-1", "sku_id": 6 }),
            )
            .await;
            assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
            let response = client
                .http
                .post(format!("{}/api/v1/demo/token", client.base))
                .json(&json!({ "user_id": 11, "device_id": "bad device" }))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        }
        running.shutdown().await;
        env.cleanup().await;
    }
}
