//! [`StockStore`]: the typed API over the scripts.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use seckill_redis::{Arg, Connection, Script};

use crate::deduction::{Deduction, MAX_ITEMS, MAX_STOCK, check_amount, check_id, fingerprint};
use crate::error::{Error, InvalidInput};
use crate::keys::Keys;
use crate::log::LogEntry;
use crate::outcome::{Decision, Refund, RequestRecord};
use crate::reply::{self, Parse, RefundReply, Reply};
use crate::scripts::{SCRIPTS, ScriptMode};

/// How long a request record is kept by default: 24 hours (valid: 1 ms to
/// 10 years, see [`StockStore::with_dedup_ttl`]).
pub const DEFAULT_DEDUP_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// The longest dedup TTL accepted: 10 years (of 365 days).
pub const MAX_DEDUP_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);
/// The most log entries one [`StockStore::deduction_log`] call returns
/// (valid page sizes: 1 to 10,000): one `XRANGE` reply stays a few MB at most.
pub const MAX_LOG_PAGE: usize = 10_000;
/// The most log entries one script call of [`StockStore::trim_log`] drops,
/// so trimming a huge log never blocks Redis for long.
const TRIM_BATCH: u64 = 1_000;
/// A refund re-reads the request record this many times if it changes under it.
const REFUND_ATTEMPTS: usize = 3;

/// Stock of the SKUs of one sale namespace, decided in Redis one script call
/// per request.
///
/// Cheap to clone (it clones the connection handle); clones share the
/// connection, so many tasks calling one store keep many requests in flight.
///
/// # Examples
///
/// ```no_run
/// use seckill_stock_lua::{Deduction, Outcome, StockStore};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let client = redis::Client::open("redis://127.0.0.1:6379")?;
/// let conn = client.get_multiplexed_async_connection().await?;
/// let store = StockStore::new(conn, "shop")?;
/// store.set_stock("phone", 100).await?;
///
/// let order = Deduction {
///     request_id: "7d0f5f4e".into(),
///     user_id: "user-42".into(),
///     items: vec![("phone".into(), 1)],
///     per_user_limit: Some(1),
/// };
/// let first = store.deduct(&order).await?;
/// assert_eq!(first.outcome, Outcome::Deducted);
/// // A retry with the same request id gets the same answer and takes nothing.
/// let again = store.deduct(&order).await?;
/// assert!(again.replayed && again.outcome == Outcome::Deducted);
/// assert_eq!(store.stock("phone").await?, 99);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct StockStore<C> {
    conn: C,
    /// Shared by clones, so a clone is one connection handle and one `Arc`.
    settings: Arc<Settings>,
}

#[derive(Clone)]
struct Settings {
    keys: Keys,
    namespace: String,
    dedup_ttl_ms: String,
    mode: ScriptMode,
}

impl<C> fmt::Debug for StockStore<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StockStore")
            .field("namespace", &self.settings.namespace)
            .field("dedup_ttl_ms", &self.settings.dedup_ttl_ms)
            .field("mode", &self.settings.mode)
            .finish_non_exhaustive()
    }
}

impl<C: Connection> StockStore<C> {
    /// A store for the SKUs of `namespace` (for example one sale or one shop),
    /// using `EVALSHA` and a 24 h dedup TTL.
    ///
    /// The namespace is the Redis Cluster hash tag of every key, so one
    /// namespace lives on one shard; use several namespaces to spread sales
    /// over shards. A multi-SKU request can only name SKUs of its store's namespace.
    ///
    /// # Errors
    ///
    /// [`InvalidInput::Namespace`] when the namespace is empty, longer than
    /// 64 bytes, or contains `{` or `}`.
    pub fn new(conn: C, namespace: &str) -> Result<Self, Error> {
        let settings = Settings {
            keys: Keys::new(namespace)?,
            namespace: namespace.to_owned(),
            dedup_ttl_ms: ttl_ms(DEFAULT_DEDUP_TTL),
            mode: ScriptMode::default(),
        };
        Ok(Self {
            conn,
            settings: Arc::new(settings),
        })
    }

    /// Keeps request records (and refund tombstones) for `ttl` instead of 24 h.
    ///
    /// Valid: 1 ms to 10 years ([`MAX_DEDUP_TTL`]), in whole milliseconds
    /// (a fraction of a millisecond is dropped). A retry or a refund must come
    /// within this time: after it, the request id is forgotten.
    ///
    /// # Errors
    ///
    /// [`InvalidInput::DedupTtl`] for less than 1 ms or more than 10 years.
    pub fn with_dedup_ttl(mut self, ttl: Duration) -> Result<Self, Error> {
        if ttl < Duration::from_millis(1) || ttl > MAX_DEDUP_TTL {
            return Err(InvalidInput::DedupTtl { ttl }.into());
        }
        Arc::make_mut(&mut self.settings).dedup_ttl_ms = ttl_ms(ttl);
        Ok(self)
    }

    /// Runs the scripts as `EVALSHA` (default) or as Redis 7 Functions.
    pub fn with_script_mode(mut self, mode: ScriptMode) -> Self {
        Arc::make_mut(&mut self.settings).mode = mode;
        self
    }

    /// The namespace given to [`new`](Self::new).
    pub fn namespace(&self) -> &str {
        &self.settings.namespace
    }

    /// How many times this process loaded this crate's scripts (`SCRIPT
    /// LOAD`) and function library (`FUNCTION LOAD`) into Redis since it
    /// started, over every store: one per time the server was found
    /// without them (a restart, a failover, a flush), however many callers
    /// found that at the same moment.
    pub fn script_loads(&self) -> u64 {
        let s = &*SCRIPTS;
        [
            &s.deduct,
            &s.refund,
            &s.set_stock,
            &s.add_stock,
            &s.restore,
            &s.trim_log,
        ]
        .iter()
        .map(|script| script.loads())
        .sum::<u64>()
            + s.library.as_ref().map_or(0, |library| library.loads())
    }

    /// The connection handle.
    pub fn connection(&self) -> &C {
        &self.conn
    }

    /// Sets the sellable stock of `sku` to `units`, marking it sold out when
    /// 0 and clearing that mark otherwise.
    ///
    /// Valid `units`: 0 to [`MAX_STOCK`](crate::MAX_STOCK) (2^53 − 1). The
    /// stock key is permanent (no TTL): it is the sale's state.
    ///
    /// # Errors
    ///
    /// Bad SKU or `units` above [`MAX_STOCK`](crate::MAX_STOCK)
    /// ([`InvalidInput::OutOfRange`]): nothing is sent.
    /// [`Error::Redis`] when Redis fails.
    ///
    /// # Cancel safety
    ///
    /// One script call: dropped, it either ran completely or not at all.
    pub async fn set_stock(&self, sku: &str, units: u64) -> Result<(), Error> {
        check_id("SKU", sku)?;
        check_amount(|| format!("stock of SKU {sku:?}"), units, 0, MAX_STOCK)?;
        let keys = [self.settings.keys.stock(sku), self.settings.keys.sold_out()];
        let args = [units.to_string(), sku.to_owned()];
        self.run(Lua::SetStock, &keys, &args).await?;
        Ok(())
    }

    /// Adds `units` to the stock of `sku` atomically (restocking during a
    /// sale) and clears its sold-out mark; returns the new stock. A SKU
    /// without stock starts from 0.
    ///
    /// Valid `units`: 1 to [`MAX_STOCK`](crate::MAX_STOCK), and the new
    /// stock may not pass [`MAX_STOCK`](crate::MAX_STOCK) either.
    ///
    /// # Errors
    ///
    /// Bad SKU, `units` out of range, or a sum above
    /// [`MAX_STOCK`](crate::MAX_STOCK) ([`InvalidInput::OutOfRange`], nothing changed). [`Error::Redis`] when Redis fails.
    ///
    /// # Cancel safety
    ///
    /// One script call: dropped, it either ran completely or not at all, so
    /// read [`stock`](Self::stock) before retrying.
    pub async fn add_stock(&self, sku: &str, units: u64) -> Result<u64, Error> {
        check_id("SKU", sku)?;
        check_amount(
            || format!("units added to SKU {sku:?}"),
            units,
            1,
            MAX_STOCK,
        )?;
        let keys = [self.settings.keys.stock(sku), self.settings.keys.sold_out()];
        let args = [units.to_string(), sku.to_owned(), MAX_STOCK.to_string()];
        let (added, stock) = reply::added(self.run(Lua::AddStock, &keys, &args).await?)?;
        if !added {
            return Err(InvalidInput::OutOfRange {
                field: format!("stock of SKU {sku:?} after adding {units}"),
                value: stock.saturating_add(units),
                min: 0,
                max: MAX_STOCK,
            }
            .into());
        }
        Ok(stock)
    }

    /// The units of `sku` left to sell; 0 for a SKU whose stock was never set.
    ///
    /// # Errors
    ///
    /// Bad SKU; [`Error::Redis`]; [`Error::UnexpectedReply`] if the key holds no integer.
    ///
    /// # Cancel safety
    ///
    /// A read: safe to drop.
    pub async fn stock(&self, sku: &str) -> Result<i64, Error> {
        check_id("SKU", sku)?;
        let key = self.settings.keys.stock(sku);
        Ok(self
            .keyed("GET", &key, &[])
            .await?
            .into_opt_int()?
            .unwrap_or(0))
    }

    /// Whether a stock was ever set for `sku` (its stock key exists). A SKU
    /// on sale whose key is gone means Redis lost its data: deductions
    /// answer [`Error::UnknownSku`] until the stock is restored (see
    /// [`restore_grants`](Self::restore_grants)).
    ///
    /// # Errors
    ///
    /// Bad SKU; [`Error::Redis`].
    ///
    /// # Cancel safety
    ///
    /// A read: safe to drop.
    pub async fn is_stocked(&self, sku: &str) -> Result<bool, Error> {
        check_id("SKU", sku)?;
        let key = self.settings.keys.stock(sku);
        Ok(self.keyed("EXISTS", &key, &[]).await?.into_int()? > 0)
    }

    /// Writes back the grants of `sku` after Redis lost its data, from a
    /// durable record of them (the orders in a database): a request record
    /// per grant, so its retry replays [`Outcome::Deducted`](crate::Outcome),
    /// and each buyer's units (refunded grants excepted), so the per-user
    /// limit holds. A request id that already has a record keeps it. The
    /// stock is not touched: set it last with [`set_stock`](Self::set_stock),
    /// since a SKU whose stock key is missing sells nothing, which keeps
    /// the sale paused while the grants are written. Returns the number of
    /// records written. Sent in chunks of [`MAX_RESTORE_CHUNK`] grants, one
    /// script call each, so any number of grants is bounded work per call.
    ///
    /// Each restored record carries the fingerprint of the single-SKU
    /// request (`user_id`, `sku`, `quantity`): a retry of that request
    /// replays, the same id with another payload is
    /// [`Error::RequestConflict`], exactly as before the loss. A request of
    /// several SKUs cannot be restored exactly this way: its record holds
    /// the first SKU restored, so a retry of the whole request is a
    /// [`Error::RequestConflict`] carrying [`Outcome::Deducted`](crate::Outcome).
    ///
    /// Valid quantities: 1 to [`MAX_QUANTITY`](crate::MAX_QUANTITY).
    ///
    /// # Errors
    ///
    /// A bad SKU, request id or user id, or a quantity of 0 or above
    /// [`MAX_QUANTITY`](crate::MAX_QUANTITY) (nothing is sent);
    /// [`Error::Redis`] (the chunks before it were written; retrying is
    /// safe, as written records are kept).
    ///
    /// # Cancel safety
    ///
    /// Each chunk is one script call; retrying after a drop is safe.
    pub async fn restore_grants(&self, sku: &str, grants: &[RestoredGrant]) -> Result<u64, Error> {
        check_id("SKU", sku)?;
        for grant in grants {
            check_id("request id", &grant.request_id)?;
            check_id("user id", &grant.user_id)?;
            check_amount(
                || format!("quantity of request {:?}", grant.request_id),
                grant.quantity,
                1,
                crate::MAX_QUANTITY,
            )?;
        }
        let mut written = 0;
        for chunk in grants.chunks(MAX_RESTORE_CHUNK) {
            let mut keys = Vec::with_capacity(1 + chunk.len());
            keys.push(self.settings.keys.bought(sku));
            keys.extend(
                chunk
                    .iter()
                    .map(|g| self.settings.keys.request(&g.request_id)),
            );
            let mut args = Vec::with_capacity(3 + 4 * chunk.len());
            args.push(self.settings.dedup_ttl_ms.clone());
            args.push(sku.to_owned());
            args.push(chunk.len().to_string());
            for grant in chunk {
                args.push(grant.user_id.clone());
                args.push(grant.quantity.to_string());
                args.push(if grant.refunded { "1" } else { "0" }.to_owned());
                args.push(fingerprint(
                    &grant.user_id,
                    std::iter::once((sku, grant.quantity)),
                ));
            }
            let n = self.run(Lua::Restore, &keys, &args).await?.into_int()?;
            written += u64::try_from(n).unwrap_or(0);
        }
        Ok(written)
    }

    /// Whether `sku` carries the sold-out mark (set by the script that took
    /// its last unit, cleared by restocking or a refund).
    ///
    /// # Errors
    ///
    /// Bad SKU; [`Error::Redis`].
    ///
    /// # Cancel safety
    ///
    /// A read: safe to drop.
    pub async fn is_sold_out(&self, sku: &str) -> Result<bool, Error> {
        check_id("SKU", sku)?;
        let set = self.settings.keys.sold_out();
        Ok(self
            .keyed("SISMEMBER", &set, &[sku.to_owned()])
            .await?
            .into_int()?
            == 1)
    }

    /// Every SKU of the namespace carrying the sold-out mark, in no order:
    /// what a process loads into its local sold-out flags.
    ///
    /// # Errors
    ///
    /// [`Error::Redis`].
    ///
    /// # Cancel safety
    ///
    /// A read: safe to drop.
    pub async fn sold_out(&self) -> Result<Vec<String>, Error> {
        let set = self.settings.keys.sold_out();
        self.keyed("SMEMBERS", &set, &[])
            .await?
            .into_array()?
            .into_iter()
            .map(Reply::into_string)
            .collect()
    }

    /// Units of `sku` that `user_id` holds: deducted minus refunded.
    ///
    /// # Errors
    ///
    /// Bad ids; [`Error::Redis`].
    ///
    /// # Cancel safety
    ///
    /// A read: safe to drop.
    pub async fn bought(&self, sku: &str, user_id: &str) -> Result<u64, Error> {
        check_id("SKU", sku)?;
        check_id("user id", user_id)?;
        let key = self.settings.keys.bought(sku);
        let n = self.keyed("HGET", &key, &[user_id.to_owned()]).await?;
        Ok(u64::try_from(n.into_opt_int()?.unwrap_or(0)).unwrap_or(0))
    }

    /// Decides one purchase request in one script call: the request id is
    /// checked first (a decided id returns its first outcome with
    /// `replayed: true` and changes nothing), then the per-user limit of
    /// every item, then the stock of every item; only when all pass is every
    /// item deducted, logged, counted for the user, and marked sold out if it
    /// reached 0. Every outcome is stored in the request record for the dedup
    /// TTL, with a fingerprint of the request (user and items, in any order;
    /// not the per-user limit).
    ///
    /// A request id decided before for a *different* request (another user,
    /// SKU or quantity) is refused with [`Error::RequestConflict`], which
    /// carries the stored outcome; nothing changes. Records written before
    /// fingerprints existed (and refund tombstones) carry none: any request
    /// with their id replays their outcome, unchecked, until they expire.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for bad input (see [`Deduction::validate`]), before
    /// Redis is touched. [`Error::RequestConflict`] for a reused request id. [`Error::UnknownSku`] when a SKU has no stock set
    /// (nothing written). [`Error::Redis`] when Redis fails: the script may
    /// have run, so retry with the same request id.
    ///
    /// # Cancel safety
    ///
    /// One script call: a dropped future either decided the request or did
    /// not; retrying with the same request id tells which, and never deducts twice.
    pub async fn deduct(&self, deduction: &Deduction) -> Result<Decision, Error> {
        deduction.validate()?;
        let skus = deduction.items.iter().map(|(sku, _)| sku.as_str());
        let keys = self
            .settings
            .keys
            .item_keys(&deduction.request_id, skus.clone());
        let mut args = Vec::with_capacity(6 + 2 * deduction.items.len());
        args.push(deduction.request_id.clone());
        args.push(deduction.user_id.clone());
        args.push(self.settings.dedup_ttl_ms.clone());
        args.push(deduction.per_user_limit.unwrap_or(0).to_string());
        args.push(deduction.items.len().to_string());
        args.push(fingerprint(
            &deduction.user_id,
            deduction
                .items
                .iter()
                .map(|(sku, qty)| (sku.as_str(), *qty)),
        ));
        args.extend(skus.map(str::to_owned));
        args.extend(deduction.items.iter().map(|(_, qty)| qty.to_string()));
        let answer = self.run(Lua::Deduct, &keys, &args).await?;
        reply::decision(answer, &deduction.request_id)
    }

    /// Puts back exactly what request `request_id` deducted, once: the
    /// stock of each item, the user's bought count, the sold-out marks, plus a
    /// refund entry in each SKU's log. A second refund, a refund of a request
    /// that deducted nothing, and a refund of an unknown id change no stock.
    ///
    /// An unknown id leaves a tombstone for the dedup TTL, so a deduction with
    /// that id arriving late (a retry still in flight) is
    /// [`Cancelled`](crate::Outcome::Cancelled) instead of taking stock that
    /// nobody would refund.
    ///
    /// A refund names only the request id: it always puts back the items the
    /// record holds, whatever a later (conflicting) request with that id
    /// asked for, and it leaves the record's fingerprint in place, so a retry
    /// of the refunded deduction still replays [`Outcome::Deducted`](crate::Outcome).
    ///
    /// # Errors
    ///
    /// Bad request id; [`Error::Redis`] (retry: refunds are idempotent);
    /// [`Error::UnexpectedReply`] for a record listing more than
    /// [`MAX_ITEMS`](crate::MAX_ITEMS) items (not written by this crate).
    ///
    /// # Cancel safety
    ///
    /// The write is one script call: a dropped future refunded or did not;
    /// retrying is safe.
    pub async fn refund(&self, request_id: &str) -> Result<Refund, Error> {
        check_id("request id", request_id)?;
        let record = self.settings.keys.request(request_id);
        for _ in 0..REFUND_ATTEMPTS {
            // The items of a record never change once written; the script
            // checks that these are the record's before writing anything.
            let items = reply::record_items(self.keyed("HGETALL", &record, &[]).await?)?;
            if items.len() > MAX_ITEMS {
                return Err(Error::UnexpectedReply(format!(
                    "the record of request {request_id:?} lists {} items, more than {MAX_ITEMS}",
                    items.len()
                )));
            }
            let keys = self
                .settings
                .keys
                .item_keys(request_id, items.iter().map(|(sku, _)| sku.as_str()));
            let mut args = Vec::with_capacity(3 + 2 * items.len());
            args.push(request_id.to_owned());
            args.push(self.settings.dedup_ttl_ms.clone());
            args.push(items.len().to_string());
            args.extend(items.iter().map(|(sku, _)| sku.clone()));
            args.extend(items.iter().map(|(_, qty)| qty.to_string()));
            let answer = self.run(Lua::Refund, &keys, &args).await?;
            if let RefundReply::Done(refund) = reply::refund(answer, items)? {
                return Ok(refund);
            }
        }
        Err(Error::UnexpectedReply(format!(
            "the record of request {request_id:?} changed during each of {REFUND_ATTEMPTS} refund attempts"
        )))
    }

    /// What Redis holds about `request_id`: its first outcome, the items it
    /// took and whether they were refunded; `None` when the id was never
    /// decided or its record expired after the dedup TTL.
    ///
    /// # Errors
    ///
    /// Bad request id; [`Error::Redis`]; [`Error::UnexpectedReply`] for a key
    /// that is not a request record.
    ///
    /// # Cancel safety
    ///
    /// A read: safe to drop.
    pub async fn request(&self, request_id: &str) -> Result<Option<RequestRecord>, Error> {
        check_id("request id", request_id)?;
        let record = self.settings.keys.request(request_id);
        reply::record(self.keyed("HGETALL", &record, &[]).await?)
    }

    /// Reads the deduction log of `sku`, oldest first: up to `count` entries
    /// after the entry id `after` (from the start when `None`). Page through
    /// it by passing the last entry's [`id`](LogEntry::id) as `after`.
    ///
    /// Valid `count`: 1 to [`MAX_LOG_PAGE`] (10,000).
    ///
    /// # Errors
    ///
    /// Bad SKU or `after` id ([`InvalidInput::EmptyId`],
    /// [`InvalidInput::IdTooLong`]), `count` out of range
    /// ([`InvalidInput::OutOfRange`]); [`Error::Redis`] (also for a malformed id).
    ///
    /// # Cancel safety
    ///
    /// A read: safe to drop.
    pub async fn deduction_log(
        &self,
        sku: &str,
        after: Option<&str>,
        count: usize,
    ) -> Result<Vec<LogEntry>, Error> {
        check_id("SKU", sku)?;
        if let Some(after) = after {
            check_id("log entry id", after)?;
        }
        check_amount(
            || "count (log page size)".into(),
            u64::try_from(count).unwrap_or(u64::MAX),
            1,
            MAX_LOG_PAGE as u64,
        )?;
        let key = self.settings.keys.log(sku);
        let start = after.map_or_else(|| "-".to_owned(), |id| format!("({id}"));
        let args = [start, "+".to_owned(), "COUNT".to_owned(), count.to_string()];
        reply::log_entries(self.keyed("XRANGE", &key, &args).await?)
    }

    /// The number of entries in the deduction log of `sku`.
    ///
    /// # Errors
    ///
    /// Bad SKU; [`Error::Redis`].
    ///
    /// # Cancel safety
    ///
    /// A read: safe to drop.
    pub async fn deduction_log_len(&self, sku: &str) -> Result<u64, Error> {
        check_id("SKU", sku)?;
        let key = self.settings.keys.log(sku);
        let n = self.keyed("XLEN", &key, &[]).await?.into_int()?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Drops the log entries of `sku` older than entry id `before` (once they
    /// are reconciled with the database); returns how many were removed.
    ///
    /// The log has no TTL (it is what reconciliation reads): it holds one
    /// entry per deduction and refund until trimmed here. Each script call
    /// drops at most 1,000 entries, so trimming a huge log is many short
    /// calls, never one that blocks Redis.
    ///
    /// # Errors
    ///
    /// Bad SKU or id; [`Error::Redis`] (also for a malformed id).
    ///
    /// # Cancel safety
    ///
    /// Each batch is one script call: dropped, some batches ran; retrying
    /// is safe (it drops what is left).
    pub async fn trim_log(&self, sku: &str, before: &str) -> Result<u64, Error> {
        check_id("SKU", sku)?;
        check_id("log entry id", before)?;
        let keys = [self.settings.keys.log(sku)];
        let args = [before.to_owned(), TRIM_BATCH.to_string()];
        let mut dropped = 0;
        loop {
            let answer = self.run(Lua::TrimLog, &keys, &args).await?;
            let (n, more) = reply::trimmed(answer)?;
            dropped += n;
            // `more` with nothing dropped cannot happen; stop rather than spin.
            if !more || n == 0 {
                return Ok(dropped);
            }
        }
    }

    /// Reserves `deduction`'s per-user quota in this store's namespace (the
    /// buyer's quota bucket of a [`ShardedStock`](crate::ShardedStock)).
    /// The answer is [`Outcome::Deducted`](crate::Outcome::Deducted) for
    /// "reserved" or [`Outcome::LimitExceeded`](crate::Outcome::LimitExceeded).
    pub(crate) async fn reserve_quota(
        &self,
        deduction: &Deduction,
        limit: u64,
    ) -> Result<Decision, Error> {
        let keys = self.settings.keys.quota_keys(
            &deduction.request_id,
            deduction.items.iter().map(|(sku, _)| sku.as_str()),
        );
        let mut args = Vec::with_capacity(6 + 2 * deduction.items.len());
        args.push(deduction.request_id.clone());
        args.push(deduction.user_id.clone());
        args.push(self.settings.dedup_ttl_ms.clone());
        args.push(limit.to_string());
        args.push(deduction.items.len().to_string());
        args.push(fingerprint(
            &deduction.user_id,
            deduction
                .items
                .iter()
                .map(|(sku, qty)| (sku.as_str(), *qty)),
        ));
        args.extend(deduction.items.iter().map(|(sku, _)| sku.clone()));
        args.extend(deduction.items.iter().map(|(_, qty)| qty.to_string()));
        let answer = self.run(Lua::QuotaReserve, &keys, &args).await?;
        reply::decision(answer, &deduction.request_id)
    }

    /// Gives back the reservation of `request_id` (whose items are
    /// `items`), once; whether this call released it.
    pub(crate) async fn release_quota(
        &self,
        request_id: &str,
        items: &[(String, u64)],
    ) -> Result<bool, Error> {
        let keys = self
            .settings
            .keys
            .quota_keys(request_id, items.iter().map(|(sku, _)| sku.as_str()));
        let mut args = Vec::with_capacity(1 + 2 * items.len());
        args.push(items.len().to_string());
        args.extend(items.iter().map(|(sku, _)| sku.clone()));
        args.extend(items.iter().map(|(_, qty)| qty.to_string()));
        match self
            .run(Lua::QuotaRelease, &keys, &args)
            .await?
            .into_int()?
        {
            1 => Ok(true),
            0 => Ok(false),
            other => Err(Error::UnexpectedReply(format!(
                "the quota reservation of request {request_id:?} does not hold the items released ({other})"
            ))),
        }
    }

    /// The units `user_id` holds reserved of `sku` in this namespace's quota.
    pub(crate) async fn reserved(&self, sku: &str, user_id: &str) -> Result<u64, Error> {
        let key = self.settings.keys.quota(sku);
        let n = self.keyed("HGET", &key, &[user_id.to_owned()]).await?;
        Ok(u64::try_from(n.into_opt_int()?.unwrap_or(0)).unwrap_or(0))
    }

    async fn keyed(&self, cmd: &'static str, key: &str, args: &[String]) -> Result<Reply, Error> {
        let args: Vec<Arg<'_>> = args.iter().map(Arg::from).collect();
        Ok(seckill_redis::command(&self.conn, cmd, &[key], &args).await?)
    }

    /// Runs one script by `EVALSHA` or, in [`ScriptMode::Functions`], as a
    /// function of the library. The Redis layer copes with a server that
    /// lacks it (a restart or failover emptied the script cache, `SCRIPT
    /// FLUSH`, a deleted library): one caller loads it again for everyone
    /// who found it missing at the same moment, so thousands of callers
    /// cost one `SCRIPT LOAD` or `FUNCTION LOAD`, not thousands.
    async fn run(&self, lua: Lua, keys: &[String], args: &[String]) -> Result<Reply, Error> {
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let args: Vec<Arg<'_>> = args.iter().map(Arg::from).collect();
        let (name, script) = lua.script();
        let reply = match (self.settings.mode, &SCRIPTS.library) {
            (ScriptMode::Functions, Some(library)) => {
                library.call(&self.conn, name, &keys, &args).await
            }
            _ => script.run(&self.conn, &keys, &args).await,
        };
        Ok(reply?)
    }
}

/// Which script a call runs.
#[derive(Debug, Clone, Copy)]
enum Lua {
    Deduct,
    Refund,
    SetStock,
    AddStock,
    Restore,
    TrimLog,
    QuotaReserve,
    QuotaRelease,
}

impl Lua {
    /// Its function name in the library, and the script.
    fn script(self) -> (&'static str, &'static Script) {
        let s = &*SCRIPTS;
        match self {
            Lua::Deduct => ("deduct", &s.deduct),
            Lua::Refund => ("refund", &s.refund),
            Lua::SetStock => ("set_stock", &s.set_stock),
            Lua::AddStock => ("add_stock", &s.add_stock),
            Lua::Restore => ("restore", &s.restore),
            Lua::TrimLog => ("trim_log", &s.trim_log),
            Lua::QuotaReserve => ("quota_reserve", &s.quota_reserve),
            Lua::QuotaRelease => ("quota_release", &s.quota_release),
        }
    }
}

/// Grants per script call of [`StockStore::restore_grants`]: fixed, not
/// configurable; it bounds one call to 257 keys and about 5 commands per grant.
pub const MAX_RESTORE_CHUNK: usize = 256;

/// One grant to write back with [`StockStore::restore_grants`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoredGrant {
    /// The request id that was granted.
    pub request_id: String,
    /// The buyer.
    pub user_id: String,
    /// Units granted (of the SKU being restored).
    pub quantity: u64,
    /// Whether the grant was refunded since (its units are not the buyer's).
    pub refunded: bool,
}

fn ttl_ms(ttl: Duration) -> String {
    ttl.as_millis().to_string()
}
