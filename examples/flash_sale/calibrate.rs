//! Calibration: does Redis's stock agree with MySQL's, once the grants on
//! their way to MySQL are counted?
//!
//! For each SKU of the sale, `expected = unsold in MySQL − in flight`,
//! where *in flight* is the units of deduction-log entries MySQL has not
//! decided and Redis has not refunded (granted, not yet an order). The
//! drift is `Redis stock − expected`: 0 when the two agree. A sale in
//! progress can show a passing drift (a grant made between the reads);
//! one that stays across two runs is real. A missing stock key is
//! reported as such (Redis lost it: the stock rebuild takes it from there,
//! see [`crate::recovery`]).
//!
//! Run by the reconciler's lease holder at start and periodically (a drift
//! seen twice in a row is logged as an error), by `flash_sale calibrate`
//! (exit 1 on drift) and by `GET /api/v1/admin/calibration`.

use std::collections::HashSet;

use seckill::stock_lua::LogKind;
use serde::Serialize;

use crate::redis::stock::RedisStock;
use crate::store::Store;

/// Request ids looked up in MySQL per query.
const PAGE: usize = 1_000;

/// One SKU's calibration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkuCalibration {
    /// The SKU.
    pub sku_id: u64,
    /// Units MySQL has not sold.
    pub mysql_unsold: u64,
    /// Units granted in Redis that MySQL has not decided yet.
    pub in_flight: u64,
    /// Redis's stock; `None`: the key is missing (Redis lost it).
    pub redis_stock: Option<i64>,
    /// `redis_stock − (mysql_unsold − in_flight)`; `None` with no key.
    pub drift: Option<i64>,
}

impl SkuCalibration {
    /// Whether Redis and MySQL agree.
    pub fn agrees(&self) -> bool {
        self.drift == Some(0)
    }
}

/// Why a calibration could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    /// MySQL failed.
    #[error("MySQL: {0}")]
    Db(#[from] sqlx::Error),
    /// Redis failed.
    #[error("Redis: {0}")]
    Redis(#[from] seckill::stock_lua::Error),
}

/// Calibrates every SKU of the sale.
///
/// # Errors
///
/// MySQL or Redis failed.
pub async fn calibrate(
    store: &Store,
    stock: &RedisStock,
) -> Result<Vec<SkuCalibration>, CalibrateError> {
    let mut out = Vec::new();
    for sku in store.sku_ids().await? {
        out.push(calibrate_sku(store, stock, sku).await?);
    }
    Ok(out)
}

/// Calibrates one SKU: Redis first (stock, then the log), MySQL last. A
/// grant that lands in MySQL between the reads shows as a passing drift of
/// its units.
async fn calibrate_sku(
    store: &Store,
    stock: &RedisStock,
    sku: u64,
) -> Result<SkuCalibration, CalibrateError> {
    let redis_stock = if stock.is_stocked(sku).await? {
        Some(stock.units(sku).await?)
    } else {
        None
    };
    let mut deductions = Vec::new();
    let mut refunded = HashSet::new();
    for entry in stock.whole_log(sku).await? {
        match entry.kind {
            LogKind::Deduction => deductions.push((entry.request_id, entry.quantity)),
            LogKind::Refund => {
                refunded.insert(entry.request_id);
            }
            // A kind this app does not write moves no stock it counts.
            _ => {}
        }
    }
    let mut decided = HashSet::new();
    for chunk in deductions.chunks(PAGE) {
        let ids: Vec<&str> = chunk.iter().map(|(id, _)| id.as_str()).collect();
        decided.extend(store.decided_requests(&ids).await?);
    }
    let in_flight = deductions
        .iter()
        .filter(|(id, _)| !decided.contains(id) && !refunded.contains(id))
        .map(|(_, units)| *units)
        .sum::<u64>();
    let mysql_unsold = store.units_unsold(sku).await?.unwrap_or(0);
    let expected = i64::try_from(mysql_unsold).unwrap_or(i64::MAX)
        - i64::try_from(in_flight).unwrap_or(i64::MAX);
    Ok(SkuCalibration {
        sku_id: sku,
        mysql_unsold,
        in_flight,
        redis_stock,
        drift: redis_stock.map(|r| r - expected),
    })
}
