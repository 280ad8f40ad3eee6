//! The sale: who may buy, and the decision chain every purchase runs.
//!
//! ```text
//! per-IP, per-user, per-device buckets ──▶ rate_limited (nothing decided)
//!   │
//! local sold-out flag ──────────────▶ queued for a request Redis granted
//!   │                                 (every grant of the SKU is loaded),
//!   │                                 sold_out for any other
//! global leaky bucket ──────────────▶ rate_limited (protects Redis)
//!   │
//! stock ledger deduction ───────────▶ sold_out / insufficient / limit_exceeded / cancelled
//!   │ granted
//! order queue ──────────────────────▶ queued
//! ```
//!
//! A request the stock ledger granted gets `queued` on every retry, on
//! every instance: from the ledger's record, or, once the SKU is flagged
//! sold out, from the flag, which knows every grant of the SKU (see
//! [`sold_out`]). A request refused over the per-user limit keeps that
//! answer on the instance that refused it (a bounded memory) and is
//! answered `sold_out` elsewhere once the SKU is gone: a refusal either way.
//! A request turned away before the ledger was never decided, so its retry
//! is decided afresh.

mod answered;
mod limits;
mod sold_out;

use std::sync::Arc;
use std::time::Duration;

use self::answered::Answered;
use self::limits::Limits;
use self::sold_out::{Check, GrantLoad, SoldOutFlags};
use super::buyer::Client;
use super::order::Order;
use super::ports::{Deduction, GrantRecord, OrderQueue, StockLedger, Unavailable};
use super::purchase::{Answer, Purchase, RateLimit};
use super::request_id::RequestId;
use crate::metrics::Metrics;

pub use seckill::ratelimit::ConfigError as LimitError;

/// The rules of a sale (validated by the app's settings before they get here).
#[derive(Debug, Clone, PartialEq)]
pub struct SaleRules {
    /// Units of one SKU a buyer may hold, across all their requests.
    pub per_user_limit: u64,
    /// Largest quantity of one request.
    pub max_quantity: u32,
    /// Requests per second per client IP, and its burst.
    pub ip_rate: u32,
    /// Burst per client IP.
    pub ip_burst: u32,
    /// Requests per second per user.
    pub user_rate: u32,
    /// Burst per user.
    pub user_burst: u32,
    /// Requests per second per device bound into a token.
    pub device_rate: u32,
    /// Burst per device.
    pub device_burst: u32,
    /// Requests per second reaching the stock ledger from this instance.
    pub global_rate: u32,
    /// Requests the global bucket holds before it turns requests away.
    pub global_capacity: u32,
    /// How long a sold-out flag answers before one request rechecks.
    pub sold_out_recheck: Duration,
    /// Request ids whose first answer this instance remembers.
    pub remembered_answers: usize,
}

/// Why a purchase could not be decided.
#[derive(Debug, thiserror::Error)]
pub enum PurchaseError {
    /// The SKU is not on sale.
    #[error("SKU {0} is not on sale")]
    UnknownSku(u64),
    /// The stock ledger failed: the request may or may not have been
    /// decided; a retry with the same request id finds out.
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
    /// The request id was first used for another purchase; nothing was
    /// decided for this one. The client must use a new request id.
    #[error("request id {0} was already used for another purchase")]
    Conflict(RequestId),
}

/// A sale on a stock ledger `S`, handing granted orders to queue `Q`.
pub struct Sale<S, Q> {
    rules: SaleRules,
    limits: Limits,
    sold_out: SoldOutFlags,
    answered: Answered,
    stock: S,
    queue: Q,
    grants: Arc<dyn GrantRecord>,
    metrics: Arc<Metrics>,
}

impl<S: StockLedger, Q: OrderQueue> Sale<S, Q> {
    /// A sale with `rules` on `stock`, queueing to `queue`; `grants` tells
    /// the sold-out flag which requests were granted.
    ///
    /// # Errors
    ///
    /// A zero rate, burst or capacity.
    pub fn new(
        rules: SaleRules,
        stock: S,
        queue: Q,
        grants: Arc<dyn GrantRecord>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, LimitError> {
        Ok(Self {
            limits: Limits::new(&rules)?,
            sold_out: SoldOutFlags::new(rules.sold_out_recheck),
            answered: Answered::new(rules.remembered_answers),
            rules,
            stock,
            queue,
            grants,
            metrics,
        })
    }

    /// The rules.
    pub fn rules(&self) -> &SaleRules {
        &self.rules
    }

    /// Whether this instance flags `sku` sold out and knows its grants
    /// (the flag answers without Redis).
    #[cfg(test)]
    pub fn answers_sold_out_locally(&self, sku: u64) -> bool {
        matches!(
            self.sold_out.check(sku, "\u{1}"),
            Check::SoldOut | Check::Granted
        )
    }

    /// The stock ledger.
    pub fn stock(&self) -> &S {
        &self.stock
    }

    /// The order queue.
    pub fn queue(&self) -> &Q {
        &self.queue
    }

    /// Decides `purchase` from `client` (the chain in the module docs).
    ///
    /// # Errors
    ///
    /// Unknown SKU, or the stock ledger failed (retry with the same request id).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future after the deduction leaves the grant in the
    /// ledger's deduction log, where the reconciler finds it.
    pub async fn purchase(
        &self,
        client: Client,
        purchase: Purchase,
    ) -> Result<Answer, PurchaseError> {
        if let Err((denied, limit)) = self.limits.check_client(client, purchase.user_id) {
            return Ok(Answer::RateLimited {
                retry_after: denied.retry_after,
                limit,
            });
        }
        let recheck = match self
            .sold_out
            .check(purchase.sku_id, purchase.request_id.as_str())
        {
            Check::Open | Check::Unknown => None,
            Check::Recheck(recheck) => Some(recheck),
            Check::Granted => {
                self.metrics.sold_out_local.inc();
                return Ok(Answer::Queued);
            }
            Check::SoldOut => {
                self.metrics.sold_out_local.inc();
                // A request this instance saw refused over the limit keeps
                // that answer; anything else not granted is sold out.
                let first = self.answered.get(purchase.request_id.as_str());
                return Ok(first.unwrap_or(Answer::SoldOut));
            }
        };
        if let Err(denied) = self.limits.check_global() {
            return Ok(Answer::RateLimited {
                retry_after: denied.retry_after,
                limit: RateLimit::Instance,
            });
        }
        self.metrics.redis_deductions.inc();
        let deduction = self
            .stock
            .deduct(&purchase, self.rules.per_user_limit)
            .await?;
        let sku = purchase.sku_id;
        let answer = match deduction {
            Deduction::Granted { replayed } => {
                if let Some(recheck) = recheck {
                    recheck.back_on_sale();
                }
                // A replay was queued by its first call (or, if that process
                // died in between, is recovered by the reconciler).
                if !replayed {
                    self.hand_off(purchase).await;
                }
                Answer::Queued
            }
            Deduction::SoldOut { replayed }
            | Deduction::Insufficient {
                available: 0,
                replayed,
            } => {
                // A replayed answer is history, not the stock now.
                if !replayed {
                    let load = match recheck {
                        Some(recheck) => recheck.still_sold_out(),
                        None => self.sold_out.mark(sku),
                    };
                    if let Some(load) = load {
                        self.load_grants(load);
                    }
                }
                Answer::SoldOut
            }
            Deduction::Insufficient { available, .. } => {
                if let Some(recheck) = recheck {
                    recheck.back_on_sale();
                }
                Answer::Insufficient { available }
            }
            Deduction::LimitExceeded => {
                self.answered
                    .remember(purchase.request_id.as_str(), Answer::LimitExceeded);
                Answer::LimitExceeded
            }
            Deduction::Cancelled => Answer::Cancelled,
            Deduction::UnknownSku => return Err(PurchaseError::UnknownSku(sku)),
            Deduction::Conflict => {
                return Err(PurchaseError::Conflict(purchase.request_id.clone()));
            }
        };
        Ok(answer)
    }

    /// Loads the grants of a flagged SKU in the background (the flag
    /// answers nothing for it meanwhile, so no request waits on this).
    fn load_grants(&self, load: GrantLoad) {
        let grants = Arc::clone(&self.grants);
        let flags = self.sold_out.clone();
        tokio::spawn(async move {
            match grants.granted(load.sku).await {
                Ok(ids) => flags.loaded(load, Some(ids)),
                Err(error) => {
                    tracing::warn!(sku = load.sku, %error, "could not load the grants of a sold-out SKU; its flag asks Redis meanwhile");
                    flags.loaded(load, None);
                }
            }
        });
    }

    /// Hands a granted purchase to the order queue.
    async fn hand_off(&self, purchase: Purchase) {
        let order = Order {
            request_id: purchase.request_id,
            user_id: purchase.user_id,
            sku_id: purchase.sku_id,
            quantity: purchase.quantity,
        };
        if let Err(order) = self.queue.enqueue(order).await {
            // Shutting down: the grant is in the deduction log, and the
            // reconciler of a running instance republishes it.
            tracing::warn!(request_id = %order.request_id, "order queue closed; left to the reconciler");
        }
    }

    /// Sets the sellable units of `sku` and clears its sold-out flag here.
    ///
    /// # Errors
    ///
    /// The stock ledger failed; nothing changed here.
    pub async fn restock(&self, sku: u64, units: u64) -> Result<(), Unavailable> {
        self.stock.set_units(sku, units).await?;
        self.sold_out.clear(sku);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
