//! Waiting for the consumer: until MySQL holds an order (or a refusal) for
//! every request the load saw queued.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use sqlx::MySqlPool;

/// How the wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drain {
    /// Queued requests MySQL accounts for (an order or a refusal).
    pub settled: usize,
    /// Queued requests in all.
    pub expected: usize,
    /// How long the wait took.
    pub waited: Duration,
    /// Why it stopped.
    pub end: DrainEnd,
}

/// Why the wait for the consumer stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainEnd {
    /// Every queued request is in MySQL.
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

/// Polls MySQL until every id of `queued` has an order or a refusal for
/// `sku`, nothing new arrived for `idle`, or `timeout` passed.
///
/// # Errors
///
/// MySQL fails.
pub async fn wait(
    db: &MySqlPool,
    sku: u64,
    queued: &HashSet<String>,
    timeout: Duration,
    idle: Duration,
    progress: ProgressBar,
) -> Result<Drain, sqlx::Error> {
    let started = Instant::now();
    let mut last_progress = started;
    let mut settled = 0;
    progress.set_length(queued.len() as u64);
    let end = loop {
        let now = settled_ids(db, sku, queued).await?;
        if now > settled {
            settled = now;
            last_progress = Instant::now();
            progress.set_position(settled as u64);
        }
        if settled >= queued.len() {
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
        waited: started.elapsed(),
        end,
    })
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
