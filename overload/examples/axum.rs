//! Run with `cargo run -p seckill-overload --example axum`.
//!
//! A small axum app behind two layers of this crate: a rate limit per
//! client IP (`rate_limit`, answering 429 with `Retry-After` and the IETF
//! `RateLimit` headers) in front of everything, and a bulkhead (`bulkhead`,
//! answering 503 at once when full) around the slow route. The app binds
//! 127.0.0.1:0, sends itself a few HTTP/1.1 requests over plain TCP, prints
//! the answers and exits.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::ConnectInfo;
use axum::http::StatusCode;
use axum::routing::get;
use seckill_overload::bulkhead::{Bulkhead, BulkheadError, BulkheadLayer};
use seckill_overload::rate_limit::{ClientIp, Policy, RateLimiter};
use seckill_ratelimit::{Keyed, TokenBucket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Per client IP: bursts of 6, then 1 request per second. The policy
    // advertised to clients says the same: 6 per 6 s.
    let per_ip: Keyed<IpAddr, TokenBucket> = Keyed::new(TokenBucket::try_new(1, 6)?)
        .try_max_keys(100_000)?
        .try_idle_ttl(Duration::from_secs(60))?;
    let limiter = RateLimiter::builder(
        per_ip,
        // axum's `into_make_service_with_connect_info::<SocketAddr>()` puts
        // the peer address in `ConnectInfo<SocketAddr>`. Behind a proxy, key
        // by the header the proxy sets instead (see `ClientIp`'s docs).
        ClientIp::from_extension(|c: &ConnectInfo<SocketAddr>| c.0),
        Policy::try_new("per-ip", 6, 6)?,
    )
    .build();

    // At most 2 requests inside the slow route at once; the third is
    // answered 503 without waiting.
    let bulkhead = Bulkhead::new(2)?;
    let slow = Router::new()
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                "slow answer\n"
            }),
        )
        .layer(
            tower::ServiceBuilder::new()
                .layer(HandleErrorLayer::new(
                    |_: BulkheadError<Infallible>| async { StatusCode::SERVICE_UNAVAILABLE },
                ))
                .layer(BulkheadLayer::new(bulkhead.clone())),
        );
    let app = Router::new()
        .route("/", get(|| async { "hello\n" }))
        .merge(slow)
        // Outermost: a rate-limited client costs one map lookup, nothing more.
        .layer(limiter.layer());

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("server error: {e}");
        }
    });
    println!("listening on http://{addr}");

    // Three at once on the slow route: two pass the bulkhead, one gets 503.
    let slow: Vec<_> = (0..3)
        .map(|_| tokio::spawn(get_once(addr, "/slow")))
        .collect();
    for answer in slow {
        print!("GET /slow -> {}", answer.await??);
    }
    // Then the fast route until the IP's burst is spent: 429 with headers.
    for _ in 0..4 {
        print!("GET /     -> {}", get_once(addr, "/").await?);
    }
    let stats = limiter.stats();
    println!(
        "rate limit: {} admitted, {} limited, {} key(s); bulkhead: {:?}",
        stats.admitted,
        stats.limited,
        stats.keys,
        bulkhead.stats()
    );
    Ok(())
}

/// One HTTP/1.1 GET over a fresh connection; returns the status line and
/// the rate-limit headers.
async fn get_once(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    let mut lines = text.lines();
    let mut out = lines.next().unwrap_or("(no answer)").to_string();
    for line in lines.take_while(|l| !l.is_empty()) {
        let name = line.split(':').next().unwrap_or("").to_ascii_lowercase();
        if matches!(
            name.as_str(),
            "retry-after" | "ratelimit" | "ratelimit-policy"
        ) {
            out.push_str("\n    ");
            out.push_str(line);
        }
    }
    out.push('\n');
    Ok(out)
}
