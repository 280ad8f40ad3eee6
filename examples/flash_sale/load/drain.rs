//! Waiting for the sale to converge: until MySQL holds an order (or a
//! refusal) for every request the load saw queued, and Redis and MySQL
//! agree on the stock left (no grant is still on its way, e.g. one whose
//! answer the load never got because the instance died, which the
//! reconciler completes).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use seckill::stock_lua::{Connection, ShardedStock};
use sqlx::MySqlPool;

/// How the wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drain {
    /// Queued requests MySQL accounts for (an order or a refusal).
    pub settled: usize,
    /// Queued requests in all.
    pub expected: usize,
    /// Whether Redis and MySQL agreed on the stock left when it ended.
    pub stock_agrees: bool,
    /// How long the wait took.
    pub waited: Duration,
    /// Why it stopped.
    pub end: DrainEnd,
}

/// Why the wait for the consumer stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainEnd {
    /// Every queued request is in MySQL and the stocks agree.
    Drained,
    /// Nothing new arrived for the idle limit.
    Stalled,
    /// The drain timeout passed.
    TimedOut,
}

impl DrainEnd {
    /// Words for the report.
    pub fn describe(self) -> &'static str {
        match self {
            DrainEnd::Drained => "drained",
            DrainEnd::Stalled => "stopped: no progress",
            DrainEnd::TimedOut => "stopped: drain timeout",
        }
    }
}

/// Polls MySQL and Redis until every id of `queued` has an order or a
/// refusal for `sku` and the two stocks agree, nothing changed for `idle`,
/// or `timeout` passed. A Redis that does not answer (restarting, or the
/// SKU paused while its stock is rebuilt) counts as not agreeing yet.
///
/// # Errors
///
/// MySQL fails.
pub async fn wait<C: Connection>(
    db: &MySqlPool,
    stock: &ShardedStock<C>,
    sku: u64,
    queued: &HashSet<String>,
    timeout: Duration,
    idle: Duration,
    progress: ProgressBar,
) -> Result<Drain, sqlx::Error> {
    let started = Instant::now();
    let mut last_progress = started;
    let mut settled = 0;
    let mut stocks = None;
    progress.set_length(queued.len() as u64);
    let end = loop {
        let now = settled_ids(db, sku, queued).await?;
        if now > settled {
            settled = now;
            last_progress = Instant::now();
            progress.set_position(settled as u64);
        }
        let mysql: Option<u64> = sqlx::query_scalar("SELECT stock FROM skus WHERE id = ?")
            .bind(sku)
            .fetch_optional(db)
            .await?;
        let redis = stock.stock(&sku.to_string()).await.ok();
        let now_stocks = (mysql, redis);
        if stocks != Some(now_stocks) {
            stocks = Some(now_stocks);
            last_progress = Instant::now();
        }
        if settled >= queued.len() && agree(now_stocks) {
            break DrainEnd::Drained;
        }
        if started.elapsed() >= timeout {
            break DrainEnd::TimedOut;
        }
        if last_progress.elapsed() >= idle {
            break DrainEnd::Stalled;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    progress.finish_and_clear();
    Ok(Drain {
        settled,
        expected: queued.len(),
        stock_agrees: stocks.is_some_and(agree),
        waited: started.elapsed(),
        end,
    })
}

/// Whether MySQL's stock row and Redis's stock key say the same.
fn agree((mysql, redis): (Option<u64>, Option<i64>)) -> bool {
    matches!((mysql, redis), (Some(m), Some(r)) if i64::try_from(m) == Ok(r))
}

/// How many ids of `queued` MySQL has an order or a refusal for.
async fn settled_ids(
    db: &MySqlPool,
    sku: u64,
    queued: &HashSet<String>,
) -> Result<usize, sqlx::Error> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT CAST(request_id AS CHAR) FROM orders WHERE sku_id = ? \
         UNION SELECT CAST(request_id AS CHAR) FROM failed_orders WHERE sku_id = ?",
    )
    .bind(sku)
    .bind(sku)
    .fetch_all(db)
    .await?;
    Ok(ids.iter().filter(|id| queued.contains(*id)).count())
}
