//! [`Cache`]: the public handle and its read and write operations.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use rand::Rng;
use seckill_redis::Connection;
use seckill_singleflight::{Error as FlightFailure, Group};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bounded::bounded;
use crate::codec::{Codec, Json};
use crate::commands;
use crate::entry::{self, Cached, Entry};
use crate::error::{ConfigError, Error, RedisError};
use crate::front::Front;
use crate::jitter::jittered_millis;
use crate::load::Load;
use crate::options::{OnRedisError, Options};
use crate::replicas;
use crate::second_delete::SecondDeletes;
use crate::shared::{FlightError, Flown, Shared};
use crate::stats::{Counters, Stats, bump};

/// Cache-aside over Redis: read through with one load per key, write back
/// without clobbering fresher data, invalidate twice.
///
/// `B` is the Redis connection: any [`seckill_redis::Connection`] (a single
/// server, a Redis Cluster or a Sentinel-watched primary, through redis-rs
/// or fred), `C` the [`Codec`] (JSON by default). A `Cache` is a cheap
/// handle: clones share the connection, the in-flight loads, the front
/// cache and the counters.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use seckill_cache_aside::{Cache, Options};
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Sku { id: u64, name: String, price_cents: u64 }
///
/// async fn load_from_db(id: u64) -> Result<Option<Sku>, std::io::Error> {
///     Ok(Some(Sku { id, name: "tea".into(), price_cents: 990 }))
/// }
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// // A single server; `redis+cluster://host:port,...` or
/// // `redis+sentinel://host:port,.../master` work alike.
/// let conn = seckill_redis::redis_rs::connect("redis://127.0.0.1:6379").await?;
/// let cache = Cache::new(
///     conn,
///     Options::default()
///         .ttl(Duration::from_secs(300))
///         .jitter(0.1)
///         .not_found_ttl(Duration::from_secs(30))
///         .double_delete_delay(Duration::from_millis(500)),
/// )?;
/// let sku: Option<Sku> = cache.get_or_load("sku:7", || load_from_db(7)).await?;
/// # Ok(()) }
/// ```
pub struct Cache<B, C = Json> {
    pub(crate) inner: Arc<Inner<B, C>>,
}

pub(crate) struct Inner<B, C> {
    pub(crate) conn: B,
    pub(crate) codec: C,
    pub(crate) options: Options,
    pub(crate) flights: Group<String, Flown, FlightError>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) front: Option<Front>,
    pub(crate) deletes: Arc<SecondDeletes>,
}

impl<B, C> Clone for Cache<B, C> {
    fn clone(&self) -> Self {
        Cache {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<B, C> fmt::Debug for Cache<B, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("options", &self.inner.options)
            .field("stats", &self.inner.counters.snapshot())
            .finish_non_exhaustive()
    }
}

impl<B: Connection> Cache<B, Json> {
    /// A cache on `conn` storing JSON.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when a setting of `options` is outside its
    /// documented range (see [`Options`]).
    ///
    /// # Examples
    ///
    /// See [`Cache`].
    pub fn new(conn: B, options: Options) -> Result<Self, ConfigError> {
        Self::with_codec(conn, options, Json)
    }
}

impl<B: Connection, C: Codec> Cache<B, C> {
    /// A cache on `conn` storing values with `codec`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # #[cfg(feature = "postcard")]
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use seckill_cache_aside::{Cache, Options, Postcard};
    /// let conn = seckill_redis::redis_rs::connect("redis://127.0.0.1:6379").await?;
    /// let cache = Cache::with_codec(conn, Options::default(), Postcard)?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when a setting of `options` is outside its
    /// documented range (see [`Options`]).
    pub fn with_codec(conn: B, options: Options, codec: C) -> Result<Self, ConfigError> {
        options.validate()?;
        let counters = Arc::new(Counters::default());
        let front = options.front.map(|f| Front::new(f.capacity, f.ttl));
        Ok(Cache {
            inner: Arc::new(Inner {
                conn,
                codec,
                options,
                flights: Group::new(),
                deletes: SecondDeletes::new(Arc::clone(&counters)),
                counters,
                front,
            }),
        })
    }

    /// The cached value of `key`, or the loader's answer on a miss.
    ///
    /// `load` returns `Ok(Some(v))` for a row, `Ok(None)` for "no such row"
    /// (cached as "not found" for [`Options::not_found_ttl`], against
    /// penetration) or an error (shared, not cached). On a miss, one load
    /// runs per key among this process's concurrent callers; in
    /// [`Backfill::Lease`](crate::Backfill::Lease) mode, one among all
    /// processes. The result is written back with a jittered TTL, as the
    /// [`Backfill`](crate::Backfill) mode says.
    ///
    /// In lease mode, a caller that joined a load whose fill was then
    /// refused (a writer invalidated or set the key meanwhile), and whose
    /// own call began after that load did, reads once more instead of
    /// answering the possibly older value: no call that begins after an
    /// `invalidate` returned answers the row from before it.
    ///
    /// When Redis fails or times out, the loader answers instead
    /// (degraded mode, counted), unless [`OnRedisError::Fail`] is chosen.
    ///
    /// # Errors
    ///
    /// - [`Error::Load`] with the loader's error, shared by all its callers.
    /// - [`Error::LoadPanicked`] when the shared load panicked in another caller.
    /// - [`Error::Redis`] when Redis failed and [`OnRedisError::Fail`] is chosen.
    /// - [`Error::Codec`] when the loaded value cannot be encoded, or a
    ///   value loaded by a caller of another type cannot be decoded.
    /// - [`Error::LeaseBusy`] in lease mode, when another process held the
    ///   lease for longer than [`Options::lease_wait`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe. Dropping the future of the caller whose loader runs
    /// hands the load to a waiting caller (see `seckill-singleflight`); a
    /// lease it held is given back in the background.
    ///
    /// # Examples
    ///
    /// See [`Cache`].
    pub async fn get_or_load<V, E, F, Fut>(&self, key: &str, load: F) -> Result<Option<V>, Error<E>>
    where
        V: Serialize + DeserializeOwned,
        E: Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, E>>,
    {
        let inner = &*self.inner;
        let started = tokio::time::Instant::now();
        if let Some(front) = &inner.front
            && let Some(shared) = front.get(key)
        {
            match self.decode::<V>(&shared) {
                Ok(value) => {
                    bump(&inner.counters.front_hits);
                    self.count_hit(&shared);
                    return Ok(value);
                }
                Err(_) => front.remove(key),
            }
        }

        let read_key = self.read_key(key);
        let mut degraded = false;
        match self.redis(commands::get(&inner.conn, &read_key)).await {
            Ok(Some(bytes)) => match Entry::parse(&bytes) {
                Entry::Value(payload) => match inner.codec.decode::<V>(payload) {
                    Ok(value) => {
                        bump(&inner.counters.hits);
                        if let Some(front) = &inner.front {
                            front.insert(key, Shared::Value(bytes.into()));
                        }
                        return Ok(Some(value));
                    }
                    // Written by an older shape of the type: drop and reload.
                    Err(_) => self.drop_unreadable(&read_key, &bytes).await,
                },
                Entry::NotFound => {
                    self.count_hit(&Shared::NotFound);
                    if let Some(front) = &inner.front {
                        front.insert(key, Shared::NotFound);
                    }
                    return Ok(None);
                }
                Entry::Lease => {}
                Entry::Unreadable => self.drop_unreadable(&read_key, &bytes).await,
            },
            Ok(None) => {}
            Err(error) => match inner.options.on_redis_error {
                OnRedisError::Fail => return Err(Error::Redis(error)),
                _ => {
                    bump(&inner.counters.degraded);
                    degraded = true;
                }
            },
        }
        bump(&inner.counters.misses);
        self.load_shared(key, &read_key, degraded, started, load)
            .await
    }

    /// Runs the flight for `key` and turns its outcome into this caller's
    /// answer.
    ///
    /// A waiter (a caller whose loader did not run) that joined a lease-mode
    /// flight whose fill was refused, and whose own read started after that
    /// flight did, may have started after the write that revoked the lease:
    /// it runs one more flight (its loader is still unused) instead of
    /// answering the possibly older entry. One retry at most, so the work
    /// stays bounded.
    async fn load_shared<F: Load>(
        &self,
        key: &str,
        read_key: &str,
        degraded: bool,
        started: tokio::time::Instant,
        load: F,
    ) -> Result<Option<F::Value>, Error<F::Error>> {
        let mut load = Some(load);
        let mut retried = false;
        loop {
            // The caller whose loader runs keeps its own value: no decode.
            let mut mine = None;
            let (slot, loader) = (&mut mine, &mut load);
            let outcome = self
                .inner
                .flights
                .run(key.to_owned(), move || async move {
                    match loader.take() {
                        Some(load) => self.fill(read_key, degraded, load, slot).await,
                        // Never reached: the group runs a caller's closure once.
                        None => Err(FlightError::Redis(RedisError::Reply(
                            "internal: loader already used".into(),
                        ))),
                    }
                })
                .await;
            match outcome {
                Ok(flown) => {
                    if let Some(revoked_since) = flown.revoked_since {
                        if load.is_some() && !retried && started >= revoked_since {
                            retried = true;
                            continue;
                        }
                    } else if let Some(front) = &self.inner.front {
                        front.insert(key, flown.entry.clone());
                    }
                    return match mine {
                        Some(value) => Ok(value),
                        None => self.decode(&flown.entry).map_err(Error::Codec),
                    };
                }
                Err(error) => return Err(Self::flight_error(error)),
            }
        }
    }

    /// A failed flight as this caller's error.
    fn flight_error<E: Send + Sync + 'static>(failure: FlightFailure<FlightError>) -> Error<E> {
        match failure {
            FlightFailure::Failed(FlightError::Load(any)) => match any.downcast::<E>() {
                Ok(error) => Error::Load(error),
                Err(_) => Error::LoadFailedElsewhere,
            },
            FlightFailure::Failed(FlightError::Redis(error)) => Error::Redis(error),
            FlightFailure::Failed(FlightError::Codec(error)) => Error::Codec(error),
            FlightFailure::Failed(FlightError::LeaseBusy(retry_after)) => {
                Error::LeaseBusy { retry_after }
            }
            _ => Error::LoadPanicked,
        }
    }

    /// What the cache holds for `key`, without loading anything.
    ///
    /// Tells a cached "not found" ([`Cached::NotFound`]) apart from an
    /// absent key ([`Cached::Absent`]). Reads one replica at random when
    /// [`Options::replicas`] is set; skips the front cache.
    ///
    /// # Errors
    ///
    /// [`Error::Redis`] when Redis fails; [`Error::Codec`] when the value
    /// does not decode as `V`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a single read.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use seckill_cache_aside::{Cache, Cached};
    /// # async fn demo(cache: Cache<impl seckill_cache_aside::Connection>) -> Result<(), seckill_cache_aside::Error> {
    /// match cache.peek::<String>("sku:7").await? {
    ///     Cached::Value(name) => println!("cached: {name}"),
    ///     Cached::NotFound => println!("known not to exist"),
    ///     _ => println!("not cached"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn peek<V: DeserializeOwned>(&self, key: &str) -> Result<Cached<V>, Error> {
        let read_key = self.read_key(key);
        let bytes = self
            .redis(commands::get(&self.inner.conn, &read_key))
            .await?;
        Ok(match bytes.as_deref().map(Entry::parse) {
            Some(Entry::Value(payload)) => Cached::Value(self.inner.codec.decode(payload)?),
            Some(Entry::NotFound) => Cached::NotFound,
            _ => Cached::Absent,
        })
    }

    /// Stores a writer's fresh value: a plain `SET` with a jittered TTL that
    /// overwrites whatever is there (a stale value, a "not found", a lease:
    /// a reader's pending backfill of an older value is then refused).
    ///
    /// Call it after the database write commits. Updates every replica and
    /// this process's front cache.
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] when the value cannot be encoded; [`Error::Redis`]
    /// when a `SET` fails (the key may then hold the old value until its TTL:
    /// [`invalidate`](Cache::invalidate) it).
    ///
    /// # Cancel safety
    ///
    /// Not atomic across replicas: cancelled midway, some replicas may hold
    /// the new value and others the old one.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(cache: seckill_cache_aside::Cache<impl seckill_cache_aside::Connection>) -> Result<(), seckill_cache_aside::Error> {
    /// cache.set("sku:7", &"green tea".to_string()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn set<V: Serialize>(&self, key: &str, value: &V) -> Result<(), Error> {
        let inner = &*self.inner;
        let mut bytes = vec![entry::VALUE];
        inner.codec.encode(value, &mut bytes)?;
        let ttl_ms = jittered_millis(inner.options.ttl, inner.options.jitter);
        for copy in self.all_keys(key) {
            self.redis(commands::set(&inner.conn, &copy, &bytes, ttl_ms))
                .await?;
        }
        if let Some(front) = &inner.front {
            front.insert(key, Shared::Value(bytes.into()));
        }
        inner.flights.forget(key);
        Ok(())
    }

    /// Deletes `key` now and again after [`Options::double_delete_delay`]
    /// (delayed double delete, 延时双删).
    ///
    /// The second delete catches a reader that loaded the old row before
    /// the database write and backfilled it after the first delete. It runs
    /// on a spawned task, retried with backoff ([`Options::delete_retries`]);
    /// a final failure is counted in [`Stats::delete_failures`], logged, and
    /// passed to [`Options::on_delete_failure`]. Dropping the `Cache` does
    /// not cancel pending second deletes; shutting the runtime down does,
    /// so call [`flush_deletes`](Cache::flush_deletes) before that.
    ///
    /// Also revokes a lease in progress ([`Backfill::Lease`](crate::Backfill::Lease)),
    /// deletes every replica, and drops the key from this process's front
    /// cache (other processes' front caches keep it for their short TTL).
    ///
    /// # Errors
    ///
    /// [`Error::Redis`] when the first delete fails; the second delete is
    /// scheduled anyway and retried.
    ///
    /// # Cancel safety
    ///
    /// Cancelling the future may skip the first delete and the scheduling of
    /// the second: call it again.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(cache: seckill_cache_aside::Cache<impl seckill_cache_aside::Connection>) -> Result<(), seckill_cache_aside::Error> {
    /// // After `UPDATE sku SET price = ... WHERE id = 7` committed:
    /// cache.invalidate("sku:7").await?;
    /// # Ok(()) }
    /// ```
    pub async fn invalidate(&self, key: &str) -> Result<(), Error> {
        self.invalidate_now(key).await.map_err(Error::Redis)
    }

    async fn invalidate_now(&self, key: &str) -> Result<(), RedisError> {
        let inner = &*self.inner;
        self.forget_locally(key);
        let copies = self.all_keys(key);
        let mut first_error = None;
        for copy in &copies {
            if let Err(error) = self.redis(commands::del(&inner.conn, copy)).await {
                first_error.get_or_insert(error);
            }
        }
        // A reader that read the old value just before the delete may have
        // put it back into the front cache meanwhile.
        self.forget_locally(key);
        if !inner.options.double_delete_delay.is_zero() {
            inner
                .deletes
                .schedule(inner.conn.clone(), copies, &inner.options);
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Runs `write` (the database update), then [`invalidate`](Cache::invalidate)s
    /// `key`: update the database, then delete the cache, in that order.
    ///
    /// # Errors
    ///
    /// [`Error::Write`] when `write` fails (the cache is left alone);
    /// [`Error::Redis`] when the first delete fails after a successful write
    /// (the second delete is still scheduled).
    ///
    /// # Cancel safety
    ///
    /// Cancelling after the write committed may skip the invalidation:
    /// the key then keeps the old value until its TTL.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn update_price(id: u64, cents: u64) -> Result<u64, std::io::Error> { Ok(1) }
    /// # async fn demo(cache: seckill_cache_aside::Cache<impl seckill_cache_aside::Connection>) -> Result<(), seckill_cache_aside::Error<std::io::Error>> {
    /// let rows = cache.write_through("sku:7", || update_price(7, 1290)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn write_through<T, E, F, Fut>(&self, key: &str, write: F) -> Result<T, Error<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let out = write().await.map_err(Error::Write)?;
        self.invalidate_now(key).await?;
        Ok(out)
    }

    /// Runs every pending second delete now, without waiting out its delay,
    /// and returns when none is pending. Call it before shutting down.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the deletes keep running; only the waiting stops.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(cache: seckill_cache_aside::Cache<impl seckill_cache_aside::Connection>) {
    /// cache.flush_deletes().await;
    /// assert_eq!(cache.stats().pending_deletes, 0);
    /// # }
    /// ```
    pub async fn flush_deletes(&self) {
        self.inner.deletes.flush().await;
    }

    /// The counters so far.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo(cache: seckill_cache_aside::Cache<impl seckill_cache_aside::Connection>) {
    /// let stats = cache.stats();
    /// let ratio = stats.hits as f64 / (stats.hits + stats.misses).max(1) as f64;
    /// # }
    /// ```
    pub fn stats(&self) -> Stats {
        self.inner.counters.snapshot()
    }

    /// The options this cache was built with.
    pub fn options(&self) -> &Options {
        &self.inner.options
    }

    /// The connection this cache uses.
    pub fn connection(&self) -> &B {
        &self.inner.conn
    }

    pub(crate) async fn redis<T>(
        &self,
        call: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, RedisError> {
        bounded(self.inner.options.redis_timeout, &self.inner.counters, call).await
    }

    pub(crate) fn decode<V: DeserializeOwned>(
        &self,
        shared: &Shared,
    ) -> Result<Option<V>, crate::CodecError> {
        shared
            .payload()
            .map(|payload| self.inner.codec.decode(payload))
            .transpose()
    }

    fn count_hit(&self, shared: &Shared) {
        bump(&self.inner.counters.hits);
        if *shared == Shared::NotFound {
            bump(&self.inner.counters.not_found_hits);
        }
    }

    fn forget_locally(&self, key: &str) {
        if let Some(front) = &self.inner.front {
            front.remove(key);
        }
        self.inner.flights.forget(key);
    }

    /// Deletes bytes this cache cannot read, unless they changed meanwhile.
    pub(crate) async fn drop_unreadable(&self, read_key: &str, bytes: &[u8]) {
        let _ = self
            .redis(commands::del_if_equal(&self.inner.conn, read_key, bytes))
            .await;
    }

    /// The Redis key to read: the key itself, or one of its copies at
    /// random ([`Options::replicas`]).
    fn read_key<'k>(&self, key: &'k str) -> Cow<'k, str> {
        match self.inner.options.replicas {
            0 | 1 => Cow::Borrowed(key),
            n => replicas::copy_key(key, rand::rng().random_range(0..n), n),
        }
    }

    /// Every Redis key holding a copy of `key`.
    fn all_keys(&self, key: &str) -> Vec<String> {
        replicas::all_copies(key, self.inner.options.replicas)
    }
}
