//! The stock ledger on Redis: [`StockLedger`] over `seckill-stock-lua`'s
//! script, plus the refunds and the deduction log the consumer and the
//! reconciler need.
//!
//! Once [`protected`](RedisStock::protected), the deduction (the buy path's
//! only Redis call) passes the adaptive limit, then the Redis breaker, and
//! waits for Redis at most `--redis-timeout-ms`. A shed or throttled
//! deduction sends nothing to Redis and decides nothing; a timed-out one
//! may have run: its client retries with the same request id, and the
//! script's request-id dedup replays the first answer.

use seckill::overload::adaptive::Outcome as Sample;
use seckill::overload::breaker::Outcome as Health;
use seckill::stock_lua::{
    Decision, Deduction as LuaDeduction, Error, LogEntry, Outcome, RestoredGrant, ShardedStock,
};

use super::Redis;

use crate::domain::order::{Decided, FailReason};
use crate::domain::ports::{Cause, Deduction, Service, StockLedger, Unavailable};
use crate::domain::purchase::Purchase;
use crate::domain::request_id::RequestId;
use crate::protection::{GuardError, Protection};

/// Log entries read per Redis call by [`RedisStock::whole_log`].
pub const LOG_PAGE: usize = 1_000;

/// The stock of every SKU, in one Redis namespace, each SKU's stock split
/// over `--stock-buckets` buckets (one per Cluster primary spreads a hot
/// SKU over the cluster; 1 on a single server). Cheap to clone.
#[derive(Clone)]
pub struct RedisStock {
    store: ShardedStock<Redis>,
    /// The buy path's breaker and adaptive limit; `None`: unprotected.
    protection: Option<Protection>,
}

/// How a refund ended.
#[derive(Debug, thiserror::Error)]
pub enum RefundError {
    /// Redis failed; retry (a refund is idempotent).
    #[error("Redis failed: {0}")]
    Redis(#[source] Error),
    /// Redis refused the refund itself; retrying cannot help.
    #[error("refund refused: {0}")]
    Refused(#[source] Error),
}

impl RedisStock {
    /// The ledger in `namespace` over `buckets` buckets (1 to 64; one
    /// bucket's keys carry the namespace as their Redis Cluster hash tag).
    ///
    /// # Errors
    ///
    /// The namespace is not one the stock script accepts, or the bucket
    /// count is out of range.
    pub fn new(redis: Redis, namespace: &str, buckets: usize) -> Result<Self, Error> {
        Ok(Self {
            store: ShardedStock::new(redis, namespace, buckets)?,
            protection: None,
        })
    }

    /// How many buckets each SKU's stock is split over; the deduction log
    /// is one per bucket.
    pub fn buckets(&self) -> usize {
        self.store.buckets().len()
    }

    /// The same ledger with its deductions behind `protection`'s adaptive
    /// limit (if on) and Redis breaker (see the module docs).
    pub fn protected(&self, protection: &Protection) -> Self {
        Self {
            store: self.store.clone(),
            protection: Some(protection.clone()),
        }
    }

    /// Deducts through the adaptive limit and the breaker.
    async fn guarded_deduct(
        &self,
        protection: &Protection,
        deduction: &LuaDeduction,
    ) -> Result<Result<Decision, Error>, Unavailable> {
        let token = match &protection.buy_limit {
            Some(limit) => match limit.try_acquire() {
                Ok(token) => Some((limit, token)),
                Err(shed) => return Err(Unavailable::because(Service::Stock, Cause::Shed, shed)),
            },
            None => None,
        };
        let result = protection
            .redis
            .call(health, || self.store.deduct(deduction))
            .await;
        if let Some((limit, token)) = token {
            limit.finish(
                token,
                match &result {
                    Ok(_) => Some(Sample::Success),
                    Err(GuardError::Failed(error)) if health(error) == Health::Success => {
                        Some(Sample::Success)
                    }
                    Err(GuardError::TimedOut { .. }) => Some(Sample::Dropped),
                    // A connection error or a rejection says nothing about latency.
                    Err(_) => None,
                },
            );
        }
        match result {
            Ok(decision) => Ok(Ok(decision)),
            Err(GuardError::Failed(error)) => Ok(Err(error)),
            Err(throttled @ GuardError::Throttled { .. }) => Err(Unavailable::because(
                Service::Stock,
                Cause::Throttled,
                throttled,
            )),
            Err(timed_out) => Err(Unavailable::new(
                Service::Stock,
                format_args!("{timed_out}; the deduction may have happened"),
            )),
        }
    }

    /// The toolkit's store underneath (tests read it directly).
    #[cfg(test)]
    pub fn store(&self) -> &ShardedStock<Redis> {
        &self.store
    }

    /// Gives back the units of `request_id` (idempotent).
    ///
    /// # Errors
    ///
    /// Redis failed (retry) or refused (do not).
    pub async fn refund(&self, request_id: &RequestId) -> Result<(), RefundError> {
        match self.store.refund(request_id.as_str()).await {
            Ok(_) => Ok(()),
            Err(error @ Error::Redis { .. }) => Err(RefundError::Redis(error)),
            Err(error) => Err(RefundError::Refused(error)),
        }
    }

    /// Up to `count` entries of the deduction log of `sku` in `bucket`
    /// (below [`buckets`](Self::buckets)) after entry `after`. Each bucket's
    /// log is in time order on its own; the entries of different buckets
    /// come from different servers' clocks.
    ///
    /// # Errors
    ///
    /// Redis failed.
    pub async fn log(
        &self,
        sku: u64,
        bucket: usize,
        after: Option<&str>,
        count: usize,
    ) -> Result<Vec<LogEntry>, Error> {
        match self.store.buckets().get(bucket) {
            Some(store) => store.deduction_log(&sku.to_string(), after, count).await,
            None => Ok(Vec::new()),
        }
    }

    /// Every entry of `sku`'s deduction logs, bucket by bucket, each read a
    /// page of [`LOG_PAGE`] at a time. Bounded: the logs hold one entry per
    /// grant and refund that the reconciler has not yet trimmed.
    ///
    /// # Errors
    ///
    /// Redis failed.
    pub async fn whole_log(&self, sku: u64) -> Result<Vec<LogEntry>, Error> {
        let mut entries: Vec<LogEntry> = Vec::new();
        for bucket in 0..self.buckets() {
            let mut after: Option<String> = None;
            loop {
                let page = self.log(sku, bucket, after.as_deref(), LOG_PAGE).await?;
                let last_page = page.len() < LOG_PAGE;
                after = page.last().map(|e| e.id.clone());
                entries.extend(page);
                if last_page {
                    break;
                }
            }
        }
        Ok(entries)
    }

    /// Drops the entries of the log of `sku` in `bucket` whose id is below
    /// `before` (the reconciler trims what MySQL holds); how many went.
    ///
    /// # Errors
    ///
    /// Redis failed (also for a malformed id).
    pub async fn trim_log(&self, sku: u64, bucket: usize, before: &str) -> Result<u64, Error> {
        match self.store.buckets().get(bucket) {
            Some(store) => store.trim_log(&sku.to_string(), before).await,
            None => Ok(0),
        }
    }

    /// The stock of `sku` as Redis holds it (0 for no key; negative only
    /// if something outside this toolkit wrote it).
    ///
    /// # Errors
    ///
    /// Redis failed.
    pub async fn units(&self, sku: u64) -> Result<i64, Error> {
        self.store.stock(&sku.to_string()).await
    }

    /// Whether `sku` has a stock key (a SKU on sale without one: Redis lost it).
    ///
    /// # Errors
    ///
    /// Redis failed.
    pub async fn is_stocked(&self, sku: u64) -> Result<bool, Error> {
        self.store.is_stocked(&sku.to_string()).await
    }

    /// Writes back the grants of `sku` (records and per-user units), then
    /// its stock, last: the stock key reopens the sale.
    ///
    /// # Errors
    ///
    /// Redis failed or refused a grant; the sale stays paused (no stock
    /// key) and a retry is safe.
    pub async fn restore(
        &self,
        sku: u64,
        grants: &[RestoredGrant],
        units_left: u64,
    ) -> Result<u64, Error> {
        let sku = sku.to_string();
        let written = self.store.restore_grants(&sku, grants).await?;
        self.store.set_stock(&sku, units_left).await?;
        Ok(written)
    }

    /// Whether the grant of `request_id` was refunded.
    ///
    /// # Errors
    ///
    /// Redis failed.
    pub async fn refunded(&self, request_id: &str) -> Result<bool, Error> {
        let record = self.store.request(request_id).await?;
        Ok(record.is_some_and(|r| r.refunded))
    }
}

fn unavailable(error: Error) -> Unavailable {
    Unavailable::new(Service::Stock, error)
}

/// What a deduction's error says about Redis's health: the client's
/// failures are failures, every answer (an unknown SKU, a reused request
/// id, input refused before sending) a success.
fn health(error: &Error) -> Health {
    match error {
        Error::Redis { .. } | Error::UnexpectedReply(_) => Health::Failure,
        _ => Health::Success,
    }
}

impl StockLedger for RedisStock {
    async fn deduct(
        &self,
        purchase: &Purchase,
        per_user_limit: u64,
    ) -> Result<Deduction, Unavailable> {
        let deduction = LuaDeduction {
            request_id: purchase.request_id.to_string(),
            user_id: purchase.user_id.to_string(),
            items: vec![(purchase.sku_id.to_string(), u64::from(purchase.quantity))],
            per_user_limit: Some(per_user_limit),
        };
        let decided = match &self.protection {
            Some(protection) => self.guarded_deduct(protection, &deduction).await?,
            None => self.store.deduct(&deduction).await,
        };
        let decision = match decided {
            Ok(decision) => decision,
            Err(Error::UnknownSku { .. }) => return Ok(Deduction::UnknownSku),
            Err(Error::RequestConflict { .. }) => return Ok(Deduction::Conflict),
            Err(error) => return Err(unavailable(error)),
        };
        let replayed = decision.replayed;
        Ok(match decision.outcome {
            Outcome::Deducted => Deduction::Granted { replayed },
            Outcome::SoldOut { .. } => Deduction::SoldOut { replayed },
            Outcome::Insufficient { available, .. } => Deduction::Insufficient {
                available,
                replayed,
            },
            Outcome::LimitExceeded { .. } => Deduction::LimitExceeded,
            // `Outcome` is non-exhaustive; every other outcome is a cancellation.
            _ => Deduction::Cancelled,
        })
    }

    async fn set_units(&self, sku: u64, units: u64) -> Result<(), Unavailable> {
        self.store
            .set_stock(&sku.to_string(), units)
            .await
            .map_err(unavailable)
    }

    async fn units_left(&self, sku: u64) -> Result<u64, Unavailable> {
        let units = self
            .store
            .stock(&sku.to_string())
            .await
            .map_err(unavailable)?;
        Ok(u64::try_from(units).unwrap_or(0))
    }

    async fn decided(&self, request_id: &RequestId) -> Result<Option<Decided>, Unavailable> {
        let record = self
            .store
            .request(request_id.as_str())
            .await
            .map_err(unavailable)?;
        Ok(record.map(|record| match record.outcome {
            Outcome::Deducted => Decided::Granted {
                refunded: record.refunded,
            },
            Outcome::SoldOut { .. } | Outcome::Insufficient { .. } => {
                Decided::Refused(FailReason::SoldOut)
            }
            Outcome::LimitExceeded { .. } => Decided::Refused(FailReason::LimitExceeded),
            _ => Decided::Refused(FailReason::Cancelled),
        }))
    }
}
