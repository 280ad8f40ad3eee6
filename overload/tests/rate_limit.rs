//! The keyed rate-limit layer through real tower services and an axum
//! `Router`: exact admissions per key under thousands of concurrent
//! requests, exact refusal headers, independent keys, the missing-key
//! policy, refusals that never reach (or wait for) the inner service.
#![cfg(feature = "http")]
// Helpers outside `#[test]` functions unwrap too: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::ConnectInfo;
use futures::FutureExt;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use proptest::prelude::*;
use seckill_overload::ConfigError;
use seckill_overload::rate_limit::{
    ClientIp, HeaderKey, OnMissing, Policy, RateLimitStats, RateLimiter, RoutePath,
};
use seckill_ratelimit::{Clock, FixedWindow, Keyed, ManualClock, TokenBucket, TokioClock};
use tower::{Layer, Service, ServiceExt, service_fn};

const DEVICE: HeaderName = HeaderName::from_static("x-device-id");

/// An inner service answering 200 and counting its calls.
fn counting_ok(
    calls: Arc<AtomicU64>,
) -> impl Service<Request<()>, Response = Response<String>, Error = Infallible, Future: Send> + Clone
{
    service_fn(move |_req: Request<()>| {
        calls.fetch_add(1, Ordering::Relaxed);
        async { Ok::<_, Infallible>(Response::new("ok".to_string())) }
    })
}

fn device_request(device: &str) -> Request<()> {
    Request::builder()
        .uri("/buy")
        .header(DEVICE, device)
        .body(())
        .unwrap()
}

/// Asserts the exact headers of a 429 refusal.
fn assert_refusal<B>(response: &Response<B>, policy: &str, name: &str, secs: u64) {
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let h = response.headers();
    assert_eq!(h["retry-after"], secs.to_string().as_str());
    assert_eq!(h["ratelimit-policy"], policy);
    assert_eq!(h["ratelimit"], format!("\"{name}\";r=0;t={secs}").as_str());
    // Each once, and nothing else (axum adds its own `content-length: 0`).
    let mut names: Vec<&str> = h.keys().map(|n| n.as_str()).collect();
    names.sort_unstable();
    names.retain(|n| *n != "content-length");
    assert_eq!(
        names,
        ["ratelimit", "ratelimit-policy", "retry-after"],
        "{h:?}"
    );
    assert_eq!(h.len(), h.keys_len(), "a header sent twice: {h:?}");
}

/// 4 devices × 1,000 concurrent requests on a multi-threaded runtime, the
/// clock standing still: exactly `burst` per device reach the inner service,
/// every other one is a 429 with the exact headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exactly_the_burst_per_key_under_4000_concurrent_requests() {
    const BURST: u32 = 37;
    const KEYS: usize = 4;
    const PER_KEY: usize = 1_000;
    let clock = ManualClock::new();
    let keyed: Keyed<HeaderValue, _> = Keyed::new(TokenBucket::with_clock(1, BURST, clock));
    let policy = Policy::try_new("per-device", u64::from(BURST), u64::from(BURST)).unwrap();
    let limiter = RateLimiter::builder(keyed, HeaderKey::new(DEVICE), policy).build();
    let calls = Arc::new(AtomicU64::new(0));
    let service = tower::ServiceBuilder::new()
        .layer(limiter.layer())
        .service(counting_ok(calls.clone()));

    let mut tasks = Vec::with_capacity(KEYS * PER_KEY);
    for i in 0..KEYS * PER_KEY {
        let device = format!("device-{}", i % KEYS);
        let service = service.clone();
        tasks.push(tokio::spawn(async move {
            let response = service.oneshot(device_request(&device)).await.unwrap();
            (device, response)
        }));
    }
    let mut admitted: HashMap<String, u32> = HashMap::new();
    let mut refused: HashMap<String, u32> = HashMap::new();
    for task in tasks {
        let (device, response) = task.await.unwrap();
        match response.status() {
            StatusCode::OK => {
                assert_eq!(
                    response.headers()["ratelimit-policy"],
                    "\"per-device\";q=37;w=37"
                );
                assert!(response.headers().get("ratelimit").is_none());
                *admitted.entry(device).or_default() += 1;
            }
            _ => {
                // The next token is 1 s away: Retry-After 1, t=1.
                assert_refusal(&response, "\"per-device\";q=37;w=37", "per-device", 1);
                *refused.entry(device).or_default() += 1;
            }
        }
    }
    for k in 0..KEYS {
        let device = format!("device-{k}");
        assert_eq!(admitted[&device], BURST, "{device}");
        assert_eq!(refused[&device], PER_KEY as u32 - BURST, "{device}");
    }
    assert_eq!(
        calls.load(Ordering::Relaxed),
        u64::from(BURST) * KEYS as u64
    );
    let total = (KEYS * PER_KEY) as u64;
    let mut expected = RateLimitStats::default();
    expected.admitted = u64::from(BURST) * KEYS as u64;
    expected.limited = total - expected.admitted;
    expected.keys = KEYS;
    assert_eq!(limiter.stats(), expected);
}

/// The same through an axum `Router` keyed by client IP from axum's
/// `ConnectInfo`: 2,000 concurrent `oneshot`s from 4 IPs, then a request
/// without `ConnectInfo` passes (the default policy).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn axum_router_keyed_by_connect_info() {
    const BURST: u32 = 5;
    let clock = ManualClock::new();
    let keyed: Keyed<IpAddr, _> = Keyed::new(TokenBucket::with_clock(2, BURST, clock.clone()));
    let limiter = RateLimiter::builder(
        keyed,
        ClientIp::from_extension(|c: &ConnectInfo<SocketAddr>| c.0),
        Policy::try_new("per-ip", 5, 3).unwrap(),
    )
    .build();
    let hits = Arc::new(AtomicU64::new(0));
    let counter = hits.clone();
    let app = axum::Router::new()
        .route(
            "/buy",
            axum::routing::post(move || {
                counter.fetch_add(1, Ordering::Relaxed);
                async { "queued" }
            }),
        )
        .layer(limiter.layer());

    let ips: Vec<SocketAddr> = (1..=4)
        .map(|i| format!("203.0.113.{i}:4000{i}").parse().unwrap())
        .collect();
    let mut tasks = Vec::new();
    for i in 0..2_000 {
        let app = app.clone();
        let addr = ips[i % ips.len()];
        tasks.push(tokio::spawn(async move {
            let mut req = Request::post("/buy")
                .body(axum::body::Body::empty())
                .unwrap();
            req.extensions_mut().insert(ConnectInfo(addr));
            let response = app.oneshot(req).await.unwrap();
            (addr.ip(), response)
        }));
    }
    let mut admitted: HashMap<IpAddr, u32> = HashMap::new();
    for task in tasks {
        let (ip, response) = task.await.unwrap();
        if response.status() == StatusCode::OK {
            *admitted.entry(ip).or_default() += 1;
        } else {
            // One token per 500 ms: Retry-After rounds 0.5 s up to 1.
            assert_refusal(&response, "\"per-ip\";q=5;w=3", "per-ip", 1);
            let body = axum::body::to_bytes(response.into_body(), 1024)
                .await
                .unwrap();
            assert!(body.is_empty());
        }
    }
    assert_eq!(admitted.len(), 4);
    assert!(admitted.values().all(|&n| n == BURST), "{admitted:?}");
    assert_eq!(hits.load(Ordering::Relaxed), 4 * u64::from(BURST));

    // No ConnectInfo: no key, passes by default.
    let req = Request::post("/buy")
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(
        app.clone().oneshot(req).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(limiter.stats().missing_passed, 1);

    // 500 ms later each IP has exactly one more token.
    clock.advance(Duration::from_millis(500));
    for addr in &ips {
        let mut ok = 0;
        for _ in 0..3 {
            let mut req = Request::post("/buy")
                .body(axum::body::Body::empty())
                .unwrap();
            req.extensions_mut().insert(ConnectInfo(*addr));
            ok += u32::from(app.clone().oneshot(req).await.unwrap().status() == StatusCode::OK);
        }
        assert_eq!(ok, 1, "{addr}");
    }
}

/// One key's flood leaves another key's full burst untouched.
#[tokio::test]
async fn keys_are_independent() {
    let keyed: Keyed<HeaderValue, _> =
        Keyed::new(TokenBucket::with_clock(1, 3, ManualClock::new()));
    let limiter = RateLimiter::builder(
        keyed,
        HeaderKey::new(DEVICE),
        Policy::try_new("d", 3, 3).unwrap(),
    )
    .build();
    let calls = Arc::new(AtomicU64::new(0));
    let mut service = limiter.layer().layer(counting_ok(calls.clone()));
    let mut statuses = Vec::new();
    for _ in 0..100 {
        let r = service
            .ready()
            .await
            .unwrap()
            .call(device_request("attacker"))
            .await
            .unwrap();
        statuses.push(r.status());
    }
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 3);
    for _ in 0..3 {
        let r = service
            .ready()
            .await
            .unwrap()
            .call(device_request("victim"))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let r = service
        .ready()
        .await
        .unwrap()
        .call(device_request("victim"))
        .await
        .unwrap();
    assert_refusal(&r, "\"d\";q=3;w=3", "d", 1);
    assert_eq!(calls.load(Ordering::Relaxed), 6);
}

/// A request without the header: passes by default (and is not counted
/// against any key), or is a 400 that never reaches the inner service.
#[tokio::test]
async fn missing_key_follows_the_configured_policy() {
    let no_header = || Request::builder().uri("/buy").body(()).unwrap();
    let empty_header = || {
        Request::builder()
            .uri("/buy")
            .header(DEVICE, "")
            .body(())
            .unwrap()
    };
    for on_missing in [None, Some(OnMissing::Pass), Some(OnMissing::Reject)] {
        let keyed: Keyed<HeaderValue, _> =
            Keyed::new(TokenBucket::with_clock(1, 1, ManualClock::new()));
        let mut builder = RateLimiter::builder(
            keyed,
            HeaderKey::new(DEVICE),
            Policy::try_new("d", 1, 1).unwrap(),
        );
        if let Some(on_missing) = on_missing {
            builder = builder.on_missing(on_missing);
        }
        let limiter = builder.build();
        let calls = Arc::new(AtomicU64::new(0));
        let mut service = limiter.layer().layer(counting_ok(calls.clone()));
        for _ in 0..50 {
            for req in [no_header(), empty_header()] {
                let r = service.ready().await.unwrap().call(req).await.unwrap();
                if on_missing == Some(OnMissing::Reject) {
                    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
                    assert!(r.headers().is_empty());
                    assert!(r.body().is_empty());
                } else {
                    assert_eq!(r.status(), StatusCode::OK);
                }
            }
        }
        let stats = limiter.stats();
        assert_eq!(stats.keys, 0);
        assert_eq!(stats.admitted + stats.limited, 0);
        if on_missing == Some(OnMissing::Reject) {
            assert_eq!((stats.missing_passed, stats.missing_rejected), (0, 100));
            assert_eq!(calls.load(Ordering::Relaxed), 0);
        } else {
            assert_eq!((stats.missing_passed, stats.missing_rejected), (100, 0));
            assert_eq!(calls.load(Ordering::Relaxed), 100);
        }
    }
}

/// A refusal is answered without calling the inner service, by a future
/// ready at its first poll, even while the inner service hangs; dropping
/// admitted futures mid-flight leaves every count exact.
#[tokio::test]
async fn refusal_never_waits_and_drops_leave_counts_exact() {
    let calls = Arc::new(AtomicU64::new(0));
    let counter = calls.clone();
    // A dependency that never answers.
    let hanging = service_fn(move |_req: Request<()>| {
        counter.fetch_add(1, Ordering::Relaxed);
        futures::future::pending::<Result<Response<String>, Infallible>>()
    });
    let keyed: Keyed<HeaderValue, _> =
        Keyed::new(TokenBucket::with_clock(1, 10, ManualClock::new()));
    let limiter = RateLimiter::builder(
        keyed,
        HeaderKey::new(DEVICE),
        Policy::try_new("d", 10, 10).unwrap(),
    )
    .build();
    let mut service = limiter.layer().layer(hanging);
    let mut pending = Vec::new();
    for i in 0..1_000 {
        service.ready().await.unwrap();
        let mut future = service.call(device_request("k"));
        match (&mut future).now_or_never() {
            Some(response) => {
                assert!(i >= 10, "request {i} was admitted, its inner call hangs");
                assert_refusal(&response.unwrap(), "\"d\";q=10;w=10", "d", 1);
            }
            None => {
                assert!(i < 10, "request {i} should have been refused at once");
                pending.push(future);
            }
        }
    }
    assert_eq!(pending.len(), 10);
    drop(pending); // cancel the admitted calls
    assert_eq!(calls.load(Ordering::Relaxed), 10);
    let stats = limiter.stats();
    assert_eq!((stats.admitted, stats.limited, stats.keys), (10, 990, 1));
}

/// With `TokioClock` the limiter follows tokio's paused clock: the refusal's
/// `Retry-After` is exactly when the next request passes.
#[tokio::test(start_paused = true)]
async fn tokio_paused_clock_refills_after_retry_after() {
    let keyed: Keyed<String, _> = Keyed::new(FixedWindow::with_clock(
        4,
        Duration::from_secs(10),
        TokioClock::new(),
    ));
    let limiter = RateLimiter::builder(
        keyed,
        RoutePath::new(),
        Policy::try_new("route", 4, 10).unwrap(),
    )
    .build();
    let calls = Arc::new(AtomicU64::new(0));
    let mut service = limiter.layer().layer(counting_ok(calls.clone()));
    let req = || {
        Request::builder()
            .uri("/api/v1/seckill?sku=1")
            .body(())
            .unwrap()
    };
    tokio::time::advance(Duration::from_millis(2_500)).await;
    for _ in 0..4 {
        let r = service.ready().await.unwrap().call(req()).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    // 7.5 s left in the window: Retry-After 8.
    let r = service.ready().await.unwrap().call(req()).await.unwrap();
    assert_refusal(&r, "\"route\";q=4;w=10", "route", 8);
    tokio::time::advance(Duration::from_millis(7_499)).await;
    let r = service.ready().await.unwrap().call(req()).await.unwrap();
    assert_refusal(&r, "\"route\";q=4;w=10", "route", 1);
    tokio::time::advance(Duration::from_millis(1)).await;
    let r = service.ready().await.unwrap().call(req()).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::Relaxed), 5);
}

#[test]
fn configuration_errors_name_the_field_and_range() {
    let msg = |e: ConfigError| e.to_string();
    assert_eq!(
        msg(Policy::try_new("p", 0, 1).unwrap_err()),
        "quota must be 1 to 999999999999999, got 0"
    );
    assert_eq!(
        msg(Policy::try_new("p", 1, 1_000_000_000_000_000).unwrap_err()),
        "window_secs must be 1 to 999999999999999, got 1000000000000000"
    );
    assert!(
        msg(Policy::try_new("a\"b", 1, 1).unwrap_err())
            .starts_with("policy name must be 1 to 64 bytes")
    );
    assert!(Policy::try_new("", 1, 1).is_err());
    assert!(Policy::try_new(&"x".repeat(65), 1, 1).is_err());
    assert!(Policy::try_new(&"x".repeat(64), 1, 1).is_ok());
    assert_eq!(
        msg(HeaderKey::new(DEVICE).try_max_len(0).unwrap_err()),
        "max_len must be 1 to 4096, got 0"
    );
    assert_eq!(
        msg(RoutePath::new().try_max_len(4097).unwrap_err()),
        "max_len must be 1 to 4096, got 4097"
    );
    assert_eq!(
        msg(ClientIp::new().try_ipv6_prefix(0).unwrap_err()),
        "ipv6_prefix must be 1 to 128, got 0"
    );
    assert_eq!(
        msg(ClientIp::new().try_ipv6_prefix(129).unwrap_err()),
        "ipv6_prefix must be 1 to 128, got 129"
    );
}

/// Long header values are keyed by their first `max_len` bytes: they can
/// neither grow a key nor escape the limit by varying the tail.
#[tokio::test]
async fn long_keys_are_truncated_not_escaped() {
    let keyed: Keyed<HeaderValue, _> =
        Keyed::new(TokenBucket::with_clock(1, 2, ManualClock::new()));
    let limiter = RateLimiter::builder(
        keyed,
        HeaderKey::new(DEVICE).try_max_len(8).unwrap(),
        Policy::try_new("d", 2, 2).unwrap(),
    )
    .build();
    let mut admitted = 0;
    for i in 0..100 {
        let req = device_request(&format!("same-pfx-{i:0>200}"));
        admitted += u32::from(limiter.check(&req).is_ok());
    }
    assert_eq!(admitted, 2);
    assert_eq!(limiter.stats().keys, 1);
}

proptest! {
    #![proptest_config(support::proptest_config(64))]

    /// Random bursts, keys and interleavings through the real service:
    /// each key gets exactly min(requests, burst), every refusal has the
    /// exact headers, and the counters add up.
    #[test]
    fn prop_each_key_gets_exactly_its_burst(
        burst in 1u32..40,
        rate in 1u32..1_000,
        order in proptest::collection::vec(0usize..6, 0..300),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let keyed: Keyed<HeaderValue, _> =
                Keyed::new(TokenBucket::with_clock(rate, burst, ManualClock::new()));
            let policy = Policy::try_new("p", u64::from(burst), 1).unwrap();
            let limiter = RateLimiter::builder(keyed, HeaderKey::new(DEVICE), policy).build();
            let calls = Arc::new(AtomicU64::new(0));
            let mut service = limiter.layer().layer(counting_ok(calls.clone()));
            let mut sent = [0u32; 6];
            let mut ok = [0u32; 6];
            for &k in &order {
                sent[k] += 1;
                let r = service.ready().await.unwrap().call(device_request(&format!("k{k}"))).await.unwrap();
                if r.status() == StatusCode::OK {
                    ok[k] += 1;
                } else {
                    assert_refusal(&r, &format!("\"p\";q={burst};w=1"), "p", 1);
                }
            }
            for k in 0..6 {
                prop_assert_eq!(ok[k], sent[k].min(burst));
            }
            let admitted: u32 = ok.iter().sum();
            prop_assert_eq!(calls.load(Ordering::Relaxed), u64::from(admitted));
            let stats = limiter.stats();
            prop_assert_eq!(stats.admitted, u64::from(admitted));
            prop_assert_eq!(stats.limited, order.len() as u64 - u64::from(admitted));
            prop_assert_eq!(stats.keys, sent.iter().filter(|&&n| n > 0).count());
            Ok(())
        })?;
    }

    /// A fixed window at a random time: the refusal's Retry-After and `t`
    /// are the time left in the window in whole seconds rounded up (at
    /// least 1), and the request passes exactly then.
    #[test]
    fn prop_retry_after_is_the_time_left_rounded_up(
        limit in 1u32..20,
        window_ms in 1u64..120_000,
        at_ns in 0u64..1_000_000_000_000,
    ) {
        let clock = ManualClock::new();
        clock.set(at_ns);
        let window = Duration::from_millis(window_ms);
        let keyed: Keyed<String, _> =
            Keyed::new(FixedWindow::with_clock(limit, window, clock.clone()));
        let policy = Policy::try_new("w", u64::from(limit), window_ms.div_ceil(1000)).unwrap();
        let limiter = RateLimiter::builder(keyed, RoutePath::new(), policy).build();
        let req = Request::builder().uri("/x").body(()).unwrap();
        for _ in 0..limit {
            prop_assert!(limiter.check(&req).is_ok());
        }
        let refused = limiter.check(&req).unwrap_err();
        let window_ns = window_ms * 1_000_000;
        let left_ns = (at_ns / window_ns + 1) * window_ns - at_ns;
        let secs = left_ns.div_ceil(1_000_000_000).max(1);
        prop_assert_eq!(refused.retry_after_secs(), Some(secs));
        let response: Response<()> = limiter.response(&refused);
        assert_refusal(&response, limiter.policy().header_value().to_str().unwrap(), "w", secs);
        clock.advance(Duration::from_nanos(left_ns - 1));
        prop_assert!(limiter.check(&req).is_err());
        clock.advance(Duration::from_nanos(1));
        prop_assert!(limiter.check(&req).is_ok());
        prop_assert_eq!(clock.now(), at_ns + left_ns);
    }

    /// Configuration values are accepted exactly inside their documented
    /// ranges.
    #[test]
    fn prop_configuration_ranges(
        quota in prop_oneof![0u64..10, 999_999_999_999_990u64..1_000_000_000_000_010, any::<u64>()],
        window in prop_oneof![0u64..10, 999_999_999_999_990u64..1_000_000_000_000_010, any::<u64>()],
        max_len in prop_oneof![0usize..10, 4090usize..4100, any::<usize>()],
        prefix in any::<u8>(),
    ) {
        let in_range = |v: u64| (1..=999_999_999_999_999).contains(&v);
        let policy = Policy::try_new("p", quota, window);
        prop_assert_eq!(policy.is_ok(), in_range(quota) && in_range(window));
        if let Err(e) = policy {
            let field = if in_range(quota) { "window_secs" } else { "quota" };
            let expected = format!("{field} must be 1 to 999999999999999");
            prop_assert!(e.to_string().starts_with(&expected));
        }
        prop_assert_eq!(HeaderKey::new(DEVICE).try_max_len(max_len).is_ok(), (1..=4096).contains(&max_len));
        prop_assert_eq!(RoutePath::new().try_max_len(max_len).is_ok(), (1..=4096).contains(&max_len));
        prop_assert_eq!(ClientIp::new().try_ipv6_prefix(prefix).is_ok(), (1..=128).contains(&prefix));
    }

    /// Two IPv6 clients share a key exactly when their first `prefix` bits
    /// agree; an IPv4-mapped address is its IPv4 address.
    #[test]
    fn prop_ipv6_prefix_keys(prefix in 1u8..=128, a in any::<u128>(), b in any::<u128>(), v4 in any::<u32>()) {
        let ip = ClientIp::new().try_ipv6_prefix(prefix).unwrap();
        let key = |addr: IpAddr| {
            let mut req = Request::new(());
            req.extensions_mut().insert(SocketAddr::new(addr, 1));
            seckill_overload::rate_limit::KeyExtractor::extract(&ip, &req).unwrap()
        };
        let a6 = IpAddr::from(std::net::Ipv6Addr::from(a));
        let b6 = IpAddr::from(std::net::Ipv6Addr::from(b));
        let shift = 128 - u32::from(prefix);
        let same = a.checked_shr(shift).unwrap_or(0) == b.checked_shr(shift).unwrap_or(0);
        let is_mapped = |x: u128| x >> 32 == 0xffff;
        if !is_mapped(a) && !is_mapped(b) {
            prop_assert_eq!(key(a6) == key(b6), same);
        }
        let v4 = std::net::Ipv4Addr::from(v4);
        prop_assert_eq!(key(IpAddr::V6(v4.to_ipv6_mapped())), IpAddr::V4(v4));
    }
}
