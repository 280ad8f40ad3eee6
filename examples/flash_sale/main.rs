//! The flash-sale example app: an HTTP service that sells a fixed stock to a
//! crowd, on Redis, MySQL and Kafka, with every `seckill` crate in its place.
//!
//! Run with
//!
//! ```sh
//! cargo run --release --example flash_sale                    # demo: service + consumer + load run + report
//! cargo run --release --example flash_sale -- serve           # HTTP + consumer + reconciler
//! cargo run --release --example flash_sale -- consume         # one more consumer (scale out)
//! cargo run --release --example flash_sale -- load --target http://127.0.0.1:8080
//! cargo run --release --example flash_sale -- --help          # every flag and environment variable
//! ```
//!
//! It needs Redis and MySQL/MariaDB (`bash scripts/services.sh` starts the
//! local ones) and uses librdkafka's in-process mock cluster unless
//! `--kafka-brokers`/`KAFKA_BROKERS` names real brokers.
//!
//! The request flow (see the README for the picture and the folders):
//! `http` parses → `domain::sale` limits, checks the local sold-out flag and
//! deducts through the stock ledger (`redis::stock`, `seckill-stock-lua`) →
//! `kafka::producer` batches the granted order to Kafka (`seckill-batcher`) →
//! `kafka::consumer` hands each batch to `store` (MySQL) → `reconcile`
//! republishes any deduction that never became an order.

// A binary: `pub` marks what a module offers the rest of the app, not a public API.
#![allow(unreachable_pub)]

mod app;
mod calibrate;
mod config;
mod domain;
mod grants;
mod http;
mod identity;
mod kafka;
mod load;
mod logging;
mod metrics;
mod protection;
mod reconcile;
mod recovery;
mod redis;
mod store;
#[cfg(test)]
mod tests;

use std::process::ExitCode;

use clap::Parser;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app::{Backends, Running};
use crate::config::{Cli, Command, LoadSettings, SaleSettings, Services};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _log = logging::init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: could not start the Tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match cli.command {
        None => demo(&cli.services, &cli.sale, &LoadSettings::defaults()?).await,
        Some(Command::Demo(load)) => demo(&cli.services, &cli.sale, &load).await,
        Some(Command::Serve) => serve(&cli.services, &cli.sale).await,
        Some(Command::Consume) => consume(&cli.services, &cli.sale).await,
        Some(Command::Calibrate) => calibrate(&cli.services).await,
        Some(Command::Load { target, load }) => {
            let token = cli.services.admin_token.clone().unwrap_or_default();
            let report = load::run(&target, &load, &cli.services, &token).await?;
            Ok(finish(&report))
        }
    }
}

/// Service, consumer and load run in one process.
async fn demo(
    services: &Services,
    sale: &SaleSettings,
    load: &LoadSettings,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let mut services = services.clone();
    // The demo sets the SKU up through the admin route: make sure it has a token.
    let token = services
        .admin_token
        .get_or_insert_with(|| uuid::Uuid::new_v4().simple().to_string())
        .clone();
    // The load mints its buyers' tokens with the instance's secret.
    services
        .auth_secret
        .get_or_insert_with(|| uuid::Uuid::new_v4().simple().to_string().repeat(2));
    let signal = app::shutdown_signal()?;
    let mut sale = sale.clone();
    // The load's virtual users come from one address; let them say which IP they are.
    sale.trust_forwarded_for = true;
    // A browser or curl can get a token too.
    sale.identity.demo_tokens = true;
    let backends = Backends::connect(&services).await?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let running = Running::start(&backends, &sale, listener)?;
    let target = format!("http://{}", running.addr);
    println!(
        "flash_sale demo: service on {target}, Kafka {}",
        describe_kafka(&backends)
    );
    let report = tokio::select! {
        report = load::run(&target, load, &services, &token) => Some(report),
        () = signal => None,
    };
    running.shutdown().await;
    match report {
        Some(report) => Ok(finish(&report?)),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// HTTP, consumer and reconciler until SIGINT/SIGTERM.
pub(crate) async fn serve(
    services: &Services,
    sale: &SaleSettings,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let signal = app::shutdown_signal()?;
    let backends = Backends::connect(services).await?;
    let listener = TcpListener::bind(services.listen).await?;
    let running = Running::start(&backends, sale, listener)?;
    tracing::info!(
        addr = %running.addr,
        kafka = %describe_kafka(&backends),
        admin = services.admin_token.is_some(),
        "serving"
    );
    println!("flash_sale: serving on http://{}", running.addr);
    signal.await;
    running.shutdown().await;
    tracing::info!("stopped cleanly");
    Ok(ExitCode::SUCCESS)
}

/// The consumer alone until SIGINT/SIGTERM.
async fn consume(
    services: &Services,
    sale: &SaleSettings,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let signal = app::shutdown_signal()?;
    let backends = Backends::connect(services).await?;
    // The consumer's MySQL writes behind the breaker, as in `serve`.
    let backends = backends.protect(&protection::Protection::new(
        &sale.protection,
        &backends.metrics,
    )?);
    let stop = CancellationToken::new();
    let consumer = backends.spawn_consumer(sale, stop.clone());
    println!(
        "flash_sale: consuming {} ({})",
        services.topic,
        describe_kafka(&backends)
    );
    signal.await;
    stop.cancel();
    let _ = consumer.await;
    Ok(ExitCode::SUCCESS)
}

/// Prints the calibration of every SKU of the sale; exit 1 on any drift.
async fn calibrate(services: &Services) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let backends = Backends::connect(services).await?;
    let report = calibrate::calibrate(&backends.store, &backends.stock).await?;
    println!("sku_id\tmysql_unsold\tin_flight\tredis_stock\tdrift");
    for c in &report {
        let show = |v: Option<i64>| v.map_or_else(|| "missing".to_owned(), |v| v.to_string());
        println!(
            "{}\t{}\t{}\t{}\t{}",
            c.sku_id,
            c.mysql_unsold,
            c.in_flight,
            show(c.redis_stock),
            show(c.drift)
        );
    }
    let drifting = report.iter().filter(|c| !c.agrees()).count();
    println!(
        "{} SKUs, {drifting} drifting (a drift seen once during a sale can be a grant in transit: run again)",
        report.len()
    );
    Ok(if drifting == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn describe_kafka(backends: &Backends) -> String {
    if backends.kafka.is_mock() {
        format!("in-process mock cluster at {}", backends.kafka.brokers())
    } else {
        backends.kafka.brokers().to_owned()
    }
}

/// Prints the report; non-zero exit when an invariant is broken.
fn finish(report: &load::Report) -> ExitCode {
    report.print();
    if report.invariants_hold() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
