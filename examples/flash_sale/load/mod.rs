//! The load generator and its report.
//!
//! A run puts a fresh SKU on sale through the admin route, sends the
//! requests from many virtual users over real HTTP (some of them retries of
//! an earlier request id), waits until the consumer has written every queued
//! order to MySQL, then reads the invariants back from MySQL and Redis:
//!
//! - [`generator`]: virtual users, answers, the on-the-fly retry check;
//! - [`drain`]: the wait for the consumer;
//! - [`invariants`]: oversold, duplicate, lost, stock mismatch;
//! - [`report`]: throughput, latency, outcomes as text;
//! - [`html`]: the same with charts over time, as one HTML page.

pub mod drain;
pub mod generator;
pub mod html;
pub mod invariants;
pub mod report;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressStyle};
use seckill::stock_lua::ShardedStock;
use serde_json::json;
use sqlx::mysql::MySqlPoolOptions;

use self::generator::{LoadRun, Outcome, Plan};
use self::invariants::{Invariants, Readback};
pub use self::report::Report;
use crate::config::redact;
use crate::config::{LoadSettings, Services};

/// Largest `--rate`.
pub const MAX_RATE: u32 = 1_000_000;

/// Slices of the run in the charts.
const TIMELINE_SLICES: usize = 60;

/// The progress bars' layout.
const BAR_TEMPLATE: &str = "{msg:>15} [{bar:30}] {pos}/{len} {elapsed} eta {eta}";

/// Why a load run could not finish.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The settings cannot make a run.
    #[error("invalid load setting: {0}")]
    Settings(String),
    /// `load` needs the admin token to put a SKU on sale.
    #[error(
        "the load puts a fresh SKU on sale through the admin route: give the target's admin token \
         (--admin-token or SECKILL_ADMIN_TOKEN)"
    )]
    NoAdminToken,
    /// `load` needs the token secret to mint its buyers' tokens.
    #[error(
        "the load mints a bearer token for each virtual buyer: give the target's token secret \
         (--auth-secret or SECKILL_AUTH_SECRET): {0}"
    )]
    NoAuthSecret(String),
    /// Setting up the sale failed.
    #[error("setting up the sale failed: {0}")]
    Setup(String),
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    /// MySQL failed while draining or reading back.
    #[error("MySQL at {url}: {source} (is MariaDB running? `bash scripts/services.sh` starts it)")]
    Db {
        /// The URL tried (without password).
        url: String,
        /// The error.
        source: sqlx::Error,
    },
    /// Redis failed while reading back.
    #[error(
        "Redis at {url}: {reason} (is redis-server running? `bash scripts/services.sh` starts it)"
    )]
    Redis {
        /// The URL tried.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The HTML report could not be written.
    #[error("could not write the HTML report to {path}: {source}")]
    Report {
        /// Where.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

/// Runs `settings` against `target` (base URL), waits for the consumer,
/// then reads the invariants back from MySQL and Redis (`services`) and
/// writes the HTML report.
///
/// # Errors
///
/// Bad settings, no admin token, the target refused the SKU, or MySQL,
/// Redis or the report file failed. Broken invariants are not an error:
/// they are in the [`Report`].
pub async fn run(
    target: &str,
    settings: &LoadSettings,
    services: &Services,
    admin_token: &str,
) -> Result<Report, LoadError> {
    check(settings)?;
    if admin_token.is_empty() {
        return Err(LoadError::NoAdminToken);
    }
    let keys = crate::identity::token::TokenKeys::new(
        services
            .auth_secret
            .as_deref()
            .unwrap_or_default()
            .as_bytes(),
    )
    .map_err(|e| LoadError::NoAuthSecret(e.to_string()))?;
    let db_error = |source| LoadError::Db {
        url: redact(&services.database_url),
        source,
    };
    let redis_error = |reason: String| LoadError::Redis {
        url: services.redis_url.clone(),
        reason,
    };
    // Connect first: a service that is down fails the run before any load.
    let db = MySqlPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&services.database_url)
        .await
        .map_err(db_error)?;
    // A connection that reconnects: the read-back must survive a Redis
    // restart during the run (the chaos suite restarts it empty).
    let redis = crate::redis::connect(&services.redis_url)
        .await
        .map_err(|e| redis_error(e.to_string()))?;
    let stock = ShardedStock::new(
        redis,
        &services.namespace,
        usize::from(services.stock_buckets),
    )
    .map_err(|e| redis_error(e.to_string()))?;

    let (seed, fresh_sku) = seed_and_sku();
    let sku_id = settings.sku_id.unwrap_or(fresh_sku);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(settings.request_timeout_s.max(1)))
        .build()?;
    put_on_sale(&client, target, admin_token, sku_id, settings.stock).await?;
    let show = !settings.quiet && std::io::stderr().is_terminal();
    if show {
        eprintln!(
            "selling {} units of SKU {sku_id} to {} users: {} requests from {} virtual users",
            settings.stock, settings.users, settings.requests, settings.concurrency
        );
    }

    let plan = Plan {
        target: target.to_owned(),
        sku_id,
        requests: settings.requests,
        users: settings.users,
        client_ips: settings.client_ips,
        concurrency: settings.concurrency,
        retry_ratio: settings.retry_ratio,
        rate: settings.rate,
        open_loop: settings.open_loop,
        timeout: Duration::from_secs(settings.request_timeout_s.max(1)),
        seed,
        keys: std::sync::Arc::new(keys),
        token_ttl: Duration::from_secs(3_600),
    };
    let load = generator::run(plan, bar(show, settings.requests as u64, "requests")).await?;

    let queued = load.queued_ids();
    let unknown = load.unknown_ids();
    let drain = drain::wait(
        &db,
        &stock,
        sku_id,
        &queued,
        Duration::from_secs(settings.drain_timeout_s),
        Duration::from_secs(settings.drain_idle_s),
        bar(show, queued.len() as u64, "orders in MySQL"),
    )
    .await
    .map_err(db_error)?;
    let readback = Readback::read(&db, &stock, sku_id)
        .await
        .map_err(|e| match e {
            invariants::ReadError::Db(e) => db_error(e),
            invariants::ReadError::Redis(e) => redis_error(e.to_string()),
        })?;
    db.close().await;
    let invariants = Invariants::check(
        settings.stock,
        &queued,
        &unknown,
        &readback,
        load.inconsistent_retries(),
    );

    let mut report = build_report(target, settings, sku_id, load, queued.len(), unknown.len());
    report.drain = drain;
    report.readback = readback;
    report.invariants = invariants;
    std::fs::write(&settings.report, html::render(&report)).map_err(|source| {
        LoadError::Report {
            path: settings.report.display().to_string(),
            source,
        }
    })?;
    report.html = Some(settings.report.clone());
    if let Some(path) = &settings.summary_json {
        let summary = serde_json::to_string_pretty(&report.summary()).unwrap_or_default();
        std::fs::write(path, summary + "\n").map_err(|source| LoadError::Report {
            path: path.display().to_string(),
            source,
        })?;
    }
    Ok(report)
}

/// Refuses settings that cannot make a run.
fn check(settings: &LoadSettings) -> Result<(), LoadError> {
    let problem = if settings.requests == 0 {
        "--requests must be at least 1"
    } else if settings.users == 0 {
        "--users must be at least 1"
    } else if settings.client_ips == 0 {
        "--client-ips must be at least 1"
    } else if settings.concurrency == 0 {
        "--concurrency must be at least 1"
    } else if !(0.0..=1.0).contains(&settings.retry_ratio) {
        "--retry-ratio must be between 0.0 and 1.0"
    } else if settings.open_loop && settings.rate == 0 {
        "--open-loop needs --rate (the arrival rate to hold)"
    } else if settings.rate > MAX_RATE {
        "--rate must be at most 1,000,000 attempts per second (0 = unpaced)"
    } else if settings.stock == 0 || settings.stock > seckill::stock_lua::MAX_STOCK {
        "--stock must be at least 1 and at most seckill::stock_lua::MAX_STOCK"
    } else {
        return Ok(());
    };
    Err(LoadError::Settings(problem.to_owned()))
}

/// A seed for the virtual users and a SKU id no earlier run used: the
/// clock in milliseconds × 1000 plus three random digits (below 2⁵³, so
/// JSON readers in any language keep it exact).
fn seed_and_sku() -> (u64, u64) {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let random = uuid::Uuid::new_v4().as_u64_pair().0;
    (random, millis.saturating_mul(1_000) + random % 1_000)
}

/// `PUT /api/v1/admin/skus/{sku}` with `stock` units.
async fn put_on_sale(
    client: &reqwest::Client,
    target: &str,
    token: &str,
    sku: u64,
    stock: u64,
) -> Result<(), LoadError> {
    let url = format!("{}/api/v1/admin/skus/{sku}", target.trim_end_matches('/'));
    let response = client
        .put(&url)
        .bearer_auth(token)
        .json(&json!({
            "name": format!("flash sale {sku}"),
            "price_cents": 9_900,
            "stock": stock,
        }))
        .send()
        .await
        .map_err(|e| LoadError::Setup(format!("PUT {url}: {e} (is the target running?)")))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    let hint = match status.as_u16() {
        401 => " (wrong admin token)",
        404 => " (the target's admin routes are off: start it with an admin token)",
        _ => "",
    };
    Err(LoadError::Setup(format!(
        "PUT {url} answered {status}{hint}: {body}"
    )))
}

/// A progress bar on stderr, or a hidden one.
fn bar(show: bool, len: u64, what: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(BAR_TEMPLATE) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar
}

/// The report of `load`, before the read-back.
fn build_report(
    target: &str,
    settings: &LoadSettings,
    sku_id: u64,
    load: LoadRun,
    queued_requests: usize,
    unknown_requests: usize,
) -> Report {
    let mut outcomes = BTreeMap::new();
    for sample in &load.samples {
        *outcomes.entry(sample.outcome).or_insert(0u64) += 1;
    }
    let latencies: Vec<Duration> = load.samples.iter().map(|s| s.latency).collect();
    let admitted: Vec<Duration> = load
        .samples
        .iter()
        .filter(|s| !matches!(s.outcome, Outcome::Http(503) | Outcome::Transport))
        .map(|s| s.latency)
        .collect();
    Report {
        target: target.to_owned(),
        sku_id,
        stock: settings.stock,
        users: settings.users,
        client_ips: settings.client_ips,
        concurrency: settings.concurrency,
        attempts: load.samples.len(),
        retries: load.samples.iter().filter(|s| s.retry).count(),
        distinct_requests: load.requests.len(),
        elapsed: load.elapsed,
        latency: report::Latency::of(&latencies),
        admitted_latency: report::Latency::of(&admitted),
        outcomes,
        queued_requests,
        unknown_requests,
        timeline: report::timeline(&load.samples, load.elapsed, TIMELINE_SLICES),
        inconsistent: load.inconsistent,
        drain: drain::Drain {
            settled: 0,
            expected: queued_requests,
            stock_agrees: false,
            waited: Duration::ZERO,
            end: drain::DrainEnd::Drained,
        },
        readback: Readback::default(),
        invariants: Invariants::default(),
        html: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_bar_template_parses() {
        assert!(ProgressStyle::with_template(BAR_TEMPLATE).is_ok());
    }

    #[test]
    fn settings_that_cannot_make_a_run_are_refused() {
        let ok = LoadSettings::defaults().unwrap();
        assert!(check(&ok).is_ok());
        type Breaks = fn(&mut LoadSettings);
        let broken: [(Breaks, &str); 6] = [
            (|s| s.requests = 0, "--requests"),
            (|s| s.users = 0, "--users"),
            (|s| s.client_ips = 0, "--client-ips"),
            (|s| s.concurrency = 0, "--concurrency"),
            (|s| s.retry_ratio = 1.5, "--retry-ratio"),
            (|s| s.stock = 0, "--stock"),
        ];
        for (breaks, flag) in broken {
            let mut settings = ok.clone();
            breaks(&mut settings);
            let err = check(&settings).unwrap_err();
            assert!(err.to_string().contains(flag), "{err}");
        }
    }

    #[test]
    fn a_fresh_sku_is_the_clock_in_milliseconds_then_three_random_digits() {
        let millis = || {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64
        };
        let before = millis();
        let (_, sku) = seed_and_sku();
        let after = millis();
        assert!((before..=after).contains(&(sku / 1_000)), "{sku}");
        assert!(sku < 1 << 53);
    }
}
