//! [`ShardedStock`]: one hot SKU's stock split over buckets on different
//! Redis Cluster primaries.

use std::time::Duration;

use futures::future::try_join_all;
use seckill_redis::Connection;

use crate::deduction::{Deduction, MAX_STOCK, check_amount, check_id};
use crate::error::{Error, InvalidInput};
use crate::outcome::{Decision, Outcome, Refund, RequestRecord};
use crate::scripts::ScriptMode;
use crate::slot::{bucket_namespace, fnv1a};
use crate::store::RestoredGrant;
use crate::store::StockStore;

/// The most buckets one [`ShardedStock`] splits a namespace into.
pub const MAX_BUCKETS: usize = 64;

/// The stock of one sale namespace split over `n` buckets, each a
/// [`StockStore`] whose keys carry their own hash tag, chosen so that the
/// buckets' slots spread evenly over the cluster's slot range (one bucket per
/// primary on a cluster made by `redis-cli --cluster create`). One hot SKU
/// then spreads over the cluster instead of melting one shard.
///
/// # How a deduction works
///
/// 1. **Per-user limit first**, when the deduction has one: the buyer's
///    units are reserved in the buyer's *quota bucket* (chosen by user id)
///    by one script, all items or none, idempotent by request id. Over the
///    limit: [`Outcome::LimitExceeded`], nothing else happens.
/// 2. **Stock**: the request tries its *home bucket* (chosen by request
///    id), then the next ones in order, each a normal deduction script
///    (dedup, all-or-nothing over the items) without the per-user check. The
///    first bucket that deducts ends the walk. A request is served from one
///    bucket: a request for 3 units may be refused while three buckets hold
///    one each.
/// 3. **Refused everywhere**: the reservation is released (once), and the
///    answer is [`Outcome::SoldOut`] when every bucket said sold out, else
///    [`Outcome::Insufficient`] with the most any bucket had.
///
/// With one bucket every call goes straight to that bucket's
/// [`StockStore`]: one round trip per deduction, the per-user limit checked
/// inside it, exactly as a plain store of the namespace.
///
/// # What stays exact, and how
///
/// - **Never more sold than stocked**: each bucket's script never takes
///   below zero, and the buckets' stocks add up to the SKU's stock.
/// - **A replayed request id never deducts twice**, even when its first
///   attempt landed in a bucket other than its home: every bucket the walk
///   passed stored its answer for that id, so a replay walks the same
///   buckets in the same order, gets the same refusals back, and stops at
///   the same bucket with the stored deduction.
/// - **The per-user limit holds across buckets**: units are reserved in
///   the buyer's quota bucket before any bucket deducts, by one atomic
///   script per request; the buckets themselves do not check it.
///
/// # Failure cases
///
/// - **The process dies after reserving quota, before any bucket
///   answered**: a retry with the same request id finds the reservation
///   and carries on. Without a retry the reservation stays: the buyer can
///   buy *fewer* units than the limit, never more.
/// - **A bucket call fails** (connection lost, timeout, failover): the
///   error is returned and the walk stops; retry with the same request id,
///   which replays what each bucket decided and continues where it stopped.
/// - **A refund of an id no bucket knows** writes a tombstone in every
///   bucket, so a deduction still in flight is cancelled wherever it lands.
/// - **Dedup TTL**: a bucket's record expires the dedup TTL after it was
///   written; the records of one walk are written within the walk's
///   duration of each other. A replay arriving exactly as the first of them
///   expires (24 h later by default) may be decided afresh in that bucket:
///   keep retries well inside the TTL, as with one store.
/// - **No units move between buckets**: a move cannot be atomic across
///   slots. An empty home bucket costs a request more round trips, not a
///   refusal; [`add_stock`](Self::add_stock) fills the emptiest buckets
///   first to even them out again.
///
/// # Examples
///
/// ```no_run
/// use seckill_stock_lua::{Deduction, Outcome, ShardedStock};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let conn = seckill_redis::redis_rs::connect(
///     "redis+cluster://127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002",
/// )
/// .await?;
/// let stock = ShardedStock::new(conn, "phone-sale", 3)?;
/// stock.set_stock("phone", 3_000).await?; // 1,000 per bucket
/// let order = Deduction {
///     request_id: "r-1".into(),
///     user_id: "user-42".into(),
///     items: vec![("phone".into(), 1)],
///     per_user_limit: Some(1),
/// };
/// assert_eq!(stock.deduct(&order).await?.outcome, Outcome::Deducted);
/// assert_eq!(stock.stock("phone").await?, 2_999);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ShardedStock<C> {
    buckets: Vec<StockStore<C>>,
    namespace: String,
}

impl<C: Connection> ShardedStock<C> {
    /// `buckets` stores for `namespace` over one connection (to a cluster,
    /// normally). One bucket uses the namespace's own keys, the same as a
    /// [`StockStore`] of that namespace.
    ///
    /// # Errors
    ///
    /// [`InvalidInput::Buckets`] unless 1 to [`MAX_BUCKETS`] buckets;
    /// [`InvalidInput::Namespace`] for a bad namespace, or one so long that
    /// a bucket's (`namespace~k`) passes 64 bytes.
    pub fn new(conn: C, namespace: &str, buckets: usize) -> Result<Self, Error> {
        if !(1..=MAX_BUCKETS).contains(&buckets) {
            return Err(InvalidInput::Buckets { buckets }.into());
        }
        let stores = (0..buckets)
            .map(|i| StockStore::new(conn.clone(), &bucket_namespace(namespace, i, buckets)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| match e {
                Error::Invalid(InvalidInput::Namespace { .. }) => InvalidInput::Namespace {
                    namespace: namespace.to_owned(),
                }
                .into(),
                other => other,
            })?;
        Ok(Self {
            buckets: stores,
            namespace: namespace.to_owned(),
        })
    }

    /// Keeps request records for `ttl` (see [`StockStore::with_dedup_ttl`]).
    ///
    /// # Errors
    ///
    /// As [`StockStore::with_dedup_ttl`].
    pub fn with_dedup_ttl(self, ttl: Duration) -> Result<Self, Error> {
        let buckets = self
            .buckets
            .into_iter()
            .map(|b| b.with_dedup_ttl(ttl))
            .collect::<Result<_, _>>()?;
        Ok(Self { buckets, ..self })
    }

    /// Runs the scripts by `EVALSHA` (default) or as Redis Functions.
    pub fn with_script_mode(self, mode: ScriptMode) -> Self {
        let buckets = self
            .buckets
            .into_iter()
            .map(|b| b.with_script_mode(mode))
            .collect();
        Self { buckets, ..self }
    }

    /// The namespace given to [`new`](Self::new).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The buckets, in walk order from bucket 0: each a [`StockStore`] for
    /// reading its stock, its log (reconciliation reads every bucket's) and
    /// its records.
    pub fn buckets(&self) -> &[StockStore<C>] {
        &self.buckets
    }

    /// The bucket a request id tries first (its home); the walk then goes
    /// on in index order, wrapping around. A stable hash of the id, the same
    /// in every process. A user's quota lives in the bucket their user id
    /// maps to the same way.
    pub fn home_bucket(&self, id: &str) -> usize {
        (fnv1a(id) % self.buckets.len() as u64) as usize
    }

    /// The buyer's quota bucket.
    fn quota(&self, user_id: &str) -> &StockStore<C> {
        &self.buckets[self.home_bucket(user_id)]
    }

    /// The buckets in the order a request walks them.
    fn walk(&self, request_id: &str) -> impl Iterator<Item = &StockStore<C>> {
        let home = self.home_bucket(request_id);
        let n = self.buckets.len();
        (0..n).map(move |i| &self.buckets[(home + i) % n])
    }

    /// Sets the stock of `sku` to `units`, split evenly over the buckets
    /// (the first `units % n` buckets get one more).
    ///
    /// Not atomic across buckets: set stock before the sale opens, or use
    /// [`add_stock`](Self::add_stock) during it.
    ///
    /// # Errors
    ///
    /// As [`StockStore::set_stock`]; on [`Error::Redis`] some buckets may
    /// have their new stock and others not: set it again.
    pub async fn set_stock(&self, sku: &str, units: u64) -> Result<(), Error> {
        check_id("SKU", sku)?;
        check_amount(|| format!("stock of SKU {sku:?}"), units, 0, MAX_STOCK)?;
        let n = self.buckets.len() as u64;
        try_join_all(self.buckets.iter().enumerate().map(|(i, bucket)| {
            let share = units / n + u64::from((i as u64) < units % n);
            bucket.set_stock(sku, share)
        }))
        .await?;
        Ok(())
    }

    /// Adds `units` to the stock of `sku`, filling the emptiest buckets
    /// first so the buckets even out; returns the new total.
    ///
    /// # Errors
    ///
    /// As [`StockStore::add_stock`]. On [`Error::Redis`] part of the units
    /// may have been added: read [`stock`](Self::stock) before retrying.
    pub async fn add_stock(&self, sku: &str, units: u64) -> Result<u64, Error> {
        check_id("SKU", sku)?;
        check_amount(
            || format!("units added to SKU {sku:?}"),
            units,
            1,
            MAX_STOCK,
        )?;
        let now: Vec<u64> = try_join_all(self.buckets.iter().map(|b| b.stock(sku)))
            .await?
            .into_iter()
            .map(|s| u64::try_from(s).unwrap_or(0))
            .collect();
        let total: u64 = now.iter().sum();
        if total.saturating_add(units) > MAX_STOCK {
            return Err(InvalidInput::OutOfRange {
                field: format!("stock of SKU {sku:?} after adding {units}"),
                value: total.saturating_add(units),
                min: 0,
                max: MAX_STOCK,
            }
            .into());
        }
        let added = water_fill(&now, units);
        try_join_all(
            self.buckets
                .iter()
                .zip(added)
                .filter(|(_, add)| *add > 0)
                .map(|(bucket, add)| bucket.add_stock(sku, add)),
        )
        .await?;
        Ok(total + units)
    }

    /// The sellable stock of `sku`: the sum over the buckets.
    ///
    /// # Errors
    ///
    /// As [`StockStore::stock`].
    pub async fn stock(&self, sku: &str) -> Result<i64, Error> {
        let each = try_join_all(self.buckets.iter().map(|b| b.stock(sku))).await?;
        Ok(each.into_iter().sum())
    }

    /// Whether every bucket has a stock key for `sku` (a bucket without one
    /// lost its data: it answers [`Error::UnknownSku`] and sells nothing).
    ///
    /// # Errors
    ///
    /// As [`StockStore::is_stocked`].
    pub async fn is_stocked(&self, sku: &str) -> Result<bool, Error> {
        let each = try_join_all(self.buckets.iter().map(|b| b.is_stocked(sku))).await?;
        Ok(each.into_iter().all(|stocked| stocked))
    }

    /// Writes back grants of `sku` that Redis lost (see
    /// [`StockStore::restore_grants`]): each into its request's home bucket,
    /// where a replay looks first, and each unrefunded grant's units into
    /// its buyer's quota (idempotent by request id). Set the stock after.
    ///
    /// # Errors
    ///
    /// As [`StockStore::restore_grants`]; a retry is safe.
    pub async fn restore_grants(&self, sku: &str, grants: &[RestoredGrant]) -> Result<u64, Error> {
        if let [only] = self.buckets.as_slice() {
            return only.restore_grants(sku, grants).await;
        }
        let mut by_bucket: Vec<Vec<RestoredGrant>> = vec![Vec::new(); self.buckets.len()];
        for grant in grants {
            by_bucket[self.home_bucket(&grant.request_id)].push(grant.clone());
        }
        let mut written = 0;
        for (bucket, grants) in self.buckets.iter().zip(&by_bucket) {
            if !grants.is_empty() {
                written += bucket.restore_grants(sku, grants).await?;
            }
        }
        for grant in grants.iter().filter(|g| !g.refunded) {
            let held = Deduction {
                request_id: grant.request_id.clone(),
                user_id: grant.user_id.clone(),
                items: vec![(sku.to_owned(), grant.quantity)],
                per_user_limit: None,
            };
            self.quota(&grant.user_id)
                .reserve_quota(&held, MAX_STOCK)
                .await?;
        }
        Ok(written)
    }

    /// Whether every bucket is sold out of `sku`.
    ///
    /// # Errors
    ///
    /// As [`StockStore::is_sold_out`].
    pub async fn is_sold_out(&self, sku: &str) -> Result<bool, Error> {
        let each = try_join_all(self.buckets.iter().map(|b| b.is_sold_out(sku))).await?;
        Ok(each.into_iter().all(|sold_out| sold_out))
    }

    /// Units of `sku` `user_id` holds: the sum over the buckets (refunds
    /// taken off).
    ///
    /// # Errors
    ///
    /// As [`StockStore::bought`].
    pub async fn bought(&self, sku: &str, user_id: &str) -> Result<u64, Error> {
        let each = try_join_all(self.buckets.iter().map(|b| b.bought(sku, user_id))).await?;
        Ok(each.into_iter().sum())
    }

    /// Units of `sku` reserved against `user_id`'s per-user limit (with one
    /// bucket, the units the buyer holds: the limit is checked in the
    /// deduction itself).
    ///
    /// # Errors
    ///
    /// Bad SKU or user id; [`Error::Redis`].
    pub async fn reserved(&self, sku: &str, user_id: &str) -> Result<u64, Error> {
        if let [only] = self.buckets.as_slice() {
            return only.bought(sku, user_id).await;
        }
        check_id("SKU", sku)?;
        check_id("user id", user_id)?;
        self.quota(user_id).reserved(sku, user_id).await
    }

    /// Decides one request (see the type's documentation).
    ///
    /// # Errors
    ///
    /// As [`StockStore::deduct`]. On [`Error::Redis`] retry with the same
    /// request id: every step replays.
    ///
    /// # Cancel safety
    ///
    /// Dropped, some steps ran; a retry with the same request id completes
    /// the walk exactly as if it had not been interrupted.
    pub async fn deduct(&self, deduction: &Deduction) -> Result<Decision, Error> {
        if let [only] = self.buckets.as_slice() {
            // One bucket: the deduct script checks the per-user limit
            // itself, in the same round trip.
            return only.deduct(deduction).await;
        }
        deduction.validate()?;
        let limit = deduction.per_user_limit.filter(|limit| *limit > 0);
        let mut replayed = true;
        if let Some(limit) = limit {
            let quota = self.quota(&deduction.user_id);
            let reserved = quota.reserve_quota(deduction, limit).await?;
            if !reserved.outcome.is_deducted() {
                return Ok(reserved);
            }
            replayed &= reserved.replayed;
        }
        let unlimited = Deduction {
            per_user_limit: None,
            ..deduction.clone()
        };
        let mut refusal = None;
        for bucket in self.walk(&deduction.request_id) {
            let decision = bucket.deduct(&unlimited).await?;
            replayed &= decision.replayed;
            match decision.outcome {
                Outcome::Deducted | Outcome::LimitExceeded { .. } => {
                    return Ok(Decision {
                        outcome: decision.outcome,
                        replayed,
                    });
                }
                Outcome::Cancelled => {
                    refusal = Some(Outcome::Cancelled);
                    break;
                }
                outcome => refusal = Some(worse(refusal, outcome)),
            }
        }
        if limit.is_some() {
            self.quota(&deduction.user_id)
                .release_quota(&deduction.request_id, &deduction.items)
                .await?;
        }
        Ok(Decision {
            outcome: refusal.unwrap_or(Outcome::Cancelled),
            replayed,
        })
    }

    /// Puts back what `request_id` took, once, from whichever bucket
    /// granted it, and releases its per-user reservation.
    ///
    /// Every bucket is asked (each answer is atomic in its bucket), so a
    /// deduction still in flight is either refunded or cancelled wherever it
    /// lands.
    ///
    /// # Errors
    ///
    /// As [`StockStore::refund`]; retrying is safe.
    pub async fn refund(&self, request_id: &str) -> Result<Refund, Error> {
        if let [only] = self.buckets.as_slice() {
            return only.refund(request_id).await;
        }
        check_id("request id", request_id)?;
        let answers = try_join_all(self.buckets.iter().map(|b| b.refund(request_id))).await?;
        let mut result = Refund::NotFound;
        for answer in answers {
            result = match (result, answer) {
                (refunded @ Refund::Refunded { .. }, _)
                | (_, refunded @ Refund::Refunded { .. }) => refunded,
                (Refund::AlreadyRefunded, _) | (_, Refund::AlreadyRefunded) => {
                    Refund::AlreadyRefunded
                }
                (Refund::NothingDeducted, _) | (_, Refund::NothingDeducted) => {
                    Refund::NothingDeducted
                }
                (r, _) => r,
            };
        }
        if matches!(result, Refund::Refunded { .. } | Refund::AlreadyRefunded)
            && let Some(record) = self.request(request_id).await?
        {
            self.quota(&record.user_id)
                .release_quota(request_id, &record.items)
                .await?;
        }
        Ok(result)
    }

    /// What the buckets hold about `request_id`: the granting bucket's
    /// record if any bucket granted it, else the first record found.
    ///
    /// # Errors
    ///
    /// As [`StockStore::request`].
    pub async fn request(&self, request_id: &str) -> Result<Option<RequestRecord>, Error> {
        let records = try_join_all(self.buckets.iter().map(|b| b.request(request_id))).await?;
        let mut records = records.into_iter().flatten();
        let first = records.next();
        match first {
            Some(r) if r.outcome.is_deducted() => Ok(Some(r)),
            other => Ok(records.find(|r| r.outcome.is_deducted()).or(other)),
        }
    }
}

/// The refusal to report after the walk: sold out only when every bucket
/// was; otherwise insufficient, with the most any bucket had.
fn worse(so_far: Option<Outcome>, next: Outcome) -> Outcome {
    match (so_far, next) {
        (
            Some(Outcome::Insufficient { sku, available }),
            Outcome::Insufficient {
                available: more, ..
            },
        ) => Outcome::Insufficient {
            sku,
            available: available.max(more),
        },
        (Some(insufficient @ Outcome::Insufficient { .. }), _) => insufficient,
        (_, next) => next,
    }
}

/// How many of `units` each bucket gets so the lowest rise first.
fn water_fill(now: &[u64], mut units: u64) -> Vec<u64> {
    let mut add = vec![0; now.len()];
    while units > 0 {
        let level = |i: usize| now[i] + add[i];
        let mut order: Vec<usize> = (0..now.len()).collect();
        order.sort_by_key(|&i| level(i));
        let low = level(order[0]);
        let lowest: Vec<usize> = order
            .iter()
            .copied()
            .take_while(|&i| level(i) == low)
            .collect();
        // Raise the lowest group to the next level, or spread what is left.
        let next = order.iter().map(|&i| level(i)).find(|&l| l > low);
        let room = next.map_or(u64::MAX, |next| (next - low) * lowest.len() as u64);
        let step = units.min(room);
        let each = step / lowest.len() as u64;
        let extra = step % lowest.len() as u64;
        for (k, &i) in lowest.iter().enumerate() {
            add[i] += each + u64::from((k as u64) < extra);
        }
        units -= step;
    }
    add
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn water_fill_raises_the_emptiest_first() {
        assert_eq!(water_fill(&[0, 5, 10], 5), vec![5, 0, 0]);
        assert_eq!(water_fill(&[0, 5, 10], 10), vec![8, 2, 0]);
        assert_eq!(water_fill(&[0, 5, 10], 16), vec![11, 5, 0]);
        assert_eq!(water_fill(&[3, 3, 3], 4), vec![2, 1, 1]);
        assert_eq!(water_fill(&[7], 9), vec![9]);
        let add = water_fill(&[100, 0, 40, 0], 1_000);
        assert_eq!(add.iter().sum::<u64>(), 1_000);
    }

    #[test]
    fn refusals_combine() {
        let sold = |s: &str| Outcome::SoldOut { sku: s.into() };
        let short = |n| Outcome::Insufficient {
            sku: "a".into(),
            available: n,
        };
        assert_eq!(worse(None, sold("a")), sold("a"));
        assert_eq!(worse(Some(sold("a")), short(1)), short(1));
        assert_eq!(worse(Some(short(2)), sold("a")), short(2));
        assert_eq!(worse(Some(short(2)), short(5)), short(5));
    }
}
