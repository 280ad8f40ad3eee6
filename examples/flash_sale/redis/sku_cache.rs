//! The products, cache-aside: [`Catalog`] over `seckill-cache-aside` in
//! front of the [`Store`]'s `skus` table (singleflight per key, TTL jitter,
//! a cached "not found", SET NX backfill, delayed double delete).
//!
//! A load goes through the store's MySQL breaker: while MySQL is failing,
//! a miss is answered [`Cause::Throttled`] at once (503), hits still answer.

use std::sync::Arc;
use std::time::Duration;

use seckill::cache_aside::{Backfill, Cache, Error, Options, Stats};

use super::Redis;
use crate::domain::ports::{Catalog, Cause, Service, Unavailable};
use crate::domain::sku::Sku;
use crate::protection::GuardError;
use crate::store::Store;

/// SKUs through the Redis cache. Cheap to clone.
#[derive(Clone)]
pub struct SkuCatalog {
    cache: Cache<Redis>,
    /// Carries the namespace and the version of the cached shape.
    prefix: Arc<str>,
    store: Store,
}

impl SkuCatalog {
    /// The catalog of `store`, cached on `redis` under `namespace`, each
    /// entry in `replicas` copies whose keys land in different slots (on a
    /// Redis Cluster, different primaries share a hot SKU's reads).
    ///
    /// # Errors
    ///
    /// When a cache setting is out of its range (`replicas` outside 1 to
    /// 64, or a bug in these constants).
    pub fn new(
        redis: Redis,
        namespace: &str,
        store: Store,
        replicas: u32,
    ) -> Result<Self, seckill::cache_aside::ConfigError> {
        let options = Options::default()
            .replicas(replicas)
            .ttl(Duration::from_secs(300))
            .jitter(0.2)
            .not_found_ttl(Duration::from_secs(5))
            .double_delete_delay(Duration::from_millis(500))
            .backfill(Backfill::SetNx);
        Ok(Self {
            cache: Cache::new(redis, options)?,
            // `v2`: the cached SKU carries its per-user limit.
            prefix: format!("flash-sale:{{{namespace}}}:sku:v2:").into(),
            store,
        })
    }

    fn key(&self, id: u64) -> String {
        format!("{}{id}", self.prefix)
    }

    /// The cache's counters.
    pub fn stats(&self) -> Stats {
        self.cache.stats()
    }

    /// Runs the pending second deletes now (at shutdown, so none is lost).
    pub async fn flush(&self) {
        self.cache.flush_deletes().await;
    }
}

impl Catalog for SkuCatalog {
    async fn sku(&self, id: u64) -> Result<Option<Sku>, Unavailable> {
        let store = self.store.clone();
        self.cache
            .get_or_load(&self.key(id), || async move {
                store.load_sku(id).await.map_err(Arc::new)
            })
            .await
            .map_err(|e| match e {
                // MySQL's breaker or MySQL itself: say which.
                Error::Load(load) => match load.as_ref().as_ref() {
                    throttled @ GuardError::Throttled { .. } => {
                        Unavailable::because(Service::Database, Cause::Throttled, throttled)
                    }
                    failed => Unavailable::new(Service::Database, failed),
                },
                other => Unavailable::new(Service::Cache, other),
            })
    }

    async fn save(&self, sku: &Sku) -> Result<(), Unavailable> {
        self.store
            .upsert_sku(sku)
            .await
            .map_err(|e| Unavailable::new(Service::Database, e))
    }

    async fn forget(&self, id: u64) -> Result<(), Unavailable> {
        self.cache
            .invalidate(&self.key(id))
            .await
            .map_err(|e| Unavailable::new(Service::Cache, e))
    }
}
