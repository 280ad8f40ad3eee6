//! Wiring: connect to Redis, MySQL and Kafka, build the domain and its
//! edges, and run the HTTP server, the consumer and the reconciler until
//! shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::producer::FutureProducer;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{SaleSettings, Services, redact};
use crate::domain::blacklist::Blacklist;
use crate::domain::sale::Sale;
use crate::grants::GrantLog;
use crate::http::state::{
    AdminState, AppSale, BuyState, HttpState, IdentityState, OpsState, QueryState,
};
use crate::identity::challenge::{self, Challenge, ProofOfWork};
use crate::identity::token::TokenKeys;
use crate::kafka::client::Kafka;
use crate::kafka::consumer::{self, ConsumerDeps};
use crate::kafka::producer::{BatchSettings, OrderSink};
use crate::metrics::Metrics;
use crate::protection::Protection;
use crate::reconcile::{ReconcileSettings, Reconciler};
use crate::recovery::StockRebuild;
use crate::redis::blacklist::BlacklistStore;
use crate::redis::sku_cache::SkuCatalog;
use crate::redis::stock::RedisStock;
use crate::store::Store;

/// Why the app could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Redis refused or is unreachable.
    #[error(
        "Redis at {url}: {source} (is redis-server running? `bash scripts/services.sh` starts it)"
    )]
    Redis {
        /// The URL tried.
        url: String,
        /// The error.
        source: seckill::redis::Error,
    },
    /// MySQL refused, is unreachable, or a migration failed.
    #[error("MySQL at {url}: {source} (is MariaDB running? `bash scripts/services.sh` starts it)")]
    Db {
        /// The URL tried (without password).
        url: String,
        /// The error.
        source: sqlx::Error,
    },
    /// Kafka failed.
    #[error("Kafka at {brokers}: {source}")]
    Kafka {
        /// The brokers tried.
        brokers: String,
        /// The error.
        source: rdkafka::error::KafkaError,
    },
    /// A setting is invalid.
    #[error("invalid setting: {0}")]
    Config(String),
}

/// Connections to Redis, MySQL and Kafka.
#[derive(Clone)]
pub struct Backends {
    /// Redis: one server, a Cluster or a Sentinel group's primary.
    pub redis: crate::redis::Redis,
    /// The stock ledger on `redis`.
    pub stock: RedisStock,
    /// MySQL, migrated.
    pub store: Store,
    /// Kafka (or the mock cluster).
    pub kafka: Arc<Kafka>,
    /// Topic, group, namespace.
    pub services: Services,
    /// Shared metrics.
    pub metrics: Arc<Metrics>,
    /// Buyers' token keys, of `--auth-secret` (or a random secret per process).
    pub token_keys: Arc<TokenKeys>,
    /// The proof-of-work challenge's key, derived from the same secret, so
    /// every instance sharing the secret checks every puzzle.
    pub challenge_key: [u8; 32],
    /// The shared blacklist on `redis`.
    pub blacklist_store: BlacklistStore,
    /// This process's copy of it (loaded at connect, kept fresh by
    /// each running instance).
    pub blacklist: Blacklist,
    /// The breakers and the buy path's adaptive limit, once
    /// [`protect`](Backends::protect)ed (`protection.rs`); `None`: calls go
    /// to the services unguarded (tests that drive one part alone).
    pub protection: Option<Protection>,
}

impl Backends {
    /// Connects to everything, runs the migrations and creates the topic.
    ///
    /// # Errors
    ///
    /// A service is unreachable.
    pub async fn connect(services: &Services) -> Result<Self, StartError> {
        let redis = crate::redis::connect(&services.redis_url)
            .await
            .map_err(|source| StartError::Redis {
                url: services.redis_url.clone(),
                source,
            })?;
        let stock = RedisStock::new(
            redis.clone(),
            &services.namespace,
            usize::from(services.stock_buckets),
        )
        .map_err(|e| StartError::Config(format!("namespace or stock buckets: {e}")))?;
        let auth_secret: Vec<u8> = match &services.auth_secret {
            Some(secret) => secret.as_bytes().to_vec(),
            None => rand::random::<[u8; 32]>().to_vec(),
        };
        let secret_error =
            |e: &dyn std::fmt::Display| StartError::Config(format!("--auth-secret: {e}"));
        let token_keys = TokenKeys::new(&auth_secret).map_err(|e| secret_error(&e))?;
        let challenge_key =
            challenge::key_from_secret(&auth_secret).map_err(|e| secret_error(&e))?;
        let blacklist_store = BlacklistStore::new(redis.clone(), &services.namespace);
        let blacklist = Blacklist::new();
        blacklist_store
            .load_into(&blacklist)
            .await
            .map_err(|source| StartError::Redis {
                url: services.redis_url.clone(),
                source,
            })?;
        let store = Store::connect(&services.database_url, 16, &services.namespace)
            .await
            .map_err(|source| StartError::Db {
                url: redact(&services.database_url),
                source,
            })?;
        let brokers = services.brokers();
        if brokers.is_none() {
            tracing::info!(
                "no Kafka brokers given (--kafka-brokers / KAFKA_BROKERS): starting librdkafka's in-process mock cluster"
            );
        }
        let kafka_error = |source| StartError::Kafka {
            brokers: brokers.unwrap_or("mock cluster").to_owned(),
            source,
        };
        let kafka = Kafka::connect(brokers).map_err(kafka_error)?;
        kafka
            .ensure_topic(&services.topic, services.partitions)
            .await
            .map_err(kafka_error)?;
        Ok(Self {
            redis,
            stock,
            store,
            kafka: Arc::new(kafka),
            services: services.clone(),
            metrics: Arc::new(Metrics::default()),
            token_keys: Arc::new(token_keys),
            challenge_key,
            blacklist_store,
            blacklist,
            protection: None,
        })
    }

    /// Who may buy on an instance with `settings`: token keys, the
    /// blacklist copy, the challenge.
    ///
    /// # Errors
    ///
    /// A setting out of range.
    pub fn identity(&self, settings: &SaleSettings) -> Result<IdentityState, StartError> {
        let id = &settings.identity;
        let challenge: Option<Arc<dyn Challenge>> = match id.challenge_bits {
            0 => None,
            bits => {
                let ttl = Duration::from_secs(id.challenge_ttl_s);
                let pow = ProofOfWork::new(self.challenge_key, bits, ttl)
                    .map_err(|e| StartError::Config(format!("--challenge-bits: {e}")))?;
                Some(Arc::new(pow))
            }
        };
        Ok(IdentityState {
            keys: Arc::clone(&self.token_keys),
            blacklist: self.blacklist.clone(),
            challenge,
            demo_token_ttl: id.demo_tokens.then(|| id.token_ttl()),
        })
    }

    /// The sale, with its order sink started.
    ///
    /// # Errors
    ///
    /// Bad sale settings, or the producer could not be created.
    pub fn sale(&self, settings: &SaleSettings) -> Result<AppSale, StartError> {
        settings
            .validate()
            .map_err(|e| StartError::Config(e.to_string()))?;
        let sink = OrderSink::with_breaker(
            self.producer()?,
            self.services.topic.clone(),
            BatchSettings {
                max_orders: settings.batch_size,
                max_delay: Duration::from_millis(settings.batch_delay_ms),
            },
            Arc::clone(&self.metrics),
            self.protection.as_ref().map(|p| p.kafka.clone()),
        )
        .map_err(|e| StartError::Config(format!("batcher: {e}")))?;
        Sale::new(
            settings.rules(),
            self.stock.clone(),
            sink,
            Arc::new(GrantLog::new(self.stock.clone(), self.store.clone())),
            Arc::clone(&self.metrics),
        )
        .map_err(|e| StartError::Config(e.to_string()))
    }

    /// A Kafka producer, its error naming the brokers.
    fn producer(&self) -> Result<FutureProducer, StartError> {
        self.kafka.producer().map_err(|source| StartError::Kafka {
            brokers: self.kafka.brokers().to_owned(),
            source,
        })
    }

    /// Starts the order consumer (`settings`: its stuck-consumer threshold).
    pub fn spawn_consumer(
        &self,
        settings: &SaleSettings,
        shutdown: CancellationToken,
    ) -> JoinHandle<()> {
        let deps = ConsumerDeps {
            kafka: Arc::clone(&self.kafka),
            group: self.services.group.clone(),
            topic: self.services.topic.clone(),
            store: self.store.clone(),
            stock: self.stock.clone(),
            metrics: Arc::clone(&self.metrics),
            stuck_after: Duration::from_millis(settings.consumer_stuck_after_ms),
        };
        tokio::spawn(async move {
            if let Err(e) = consumer::run(deps, shutdown).await {
                tracing::error!(error = %e, "the order consumer stopped");
            }
        })
    }

    /// Starts the reconciler (it runs passes while it holds the sale's
    /// lease, and releases the lease at `shutdown`).
    ///
    /// # Errors
    ///
    /// Its producer could not be created.
    pub fn spawn_reconciler(
        &self,
        settings: &SaleSettings,
        shutdown: CancellationToken,
    ) -> Result<JoinHandle<()>, StartError> {
        let reconciler = Reconciler::new(
            self.store.clone(),
            self.stock.clone(),
            self.producer()?,
            self.services.topic.clone(),
            &self.services.namespace,
            ReconcileSettings::from(settings),
            Arc::clone(&self.metrics),
        )
        .with_recovery(StockRebuild::new(
            self.store.clone(),
            self.stock.clone(),
            Arc::clone(&self.kafka),
            self.services.group.clone(),
            self.services.topic.clone(),
            // Longer than any instance's batch delay (settings are shared).
            Duration::from_millis(settings.batch_delay_ms.saturating_mul(2).max(2_000)),
            Arc::clone(&self.metrics),
        ));
        Ok(tokio::spawn(reconciler.run(shutdown)))
    }
}

/// A running instance: HTTP server, consumer and reconciler.
pub struct Running {
    /// Where HTTP listens.
    pub addr: std::net::SocketAddr,
    /// The sale the handlers share.
    pub sale: Arc<AppSale>,
    /// The SKU catalog (its cache's second deletes are flushed at shutdown).
    pub catalog: SkuCatalog,
    /// The metrics.
    #[cfg_attr(not(test), allow(dead_code))]
    pub metrics: Arc<Metrics>,
    /// The buy path's bulkhead (`--max-in-flight`).
    #[cfg_attr(not(test), allow(dead_code))]
    pub bulkhead: seckill::overload::Bulkhead,
    /// The breakers and the adaptive limit of this instance.
    #[cfg_attr(not(test), allow(dead_code))]
    pub protection: Protection,
    http: JoinHandle<()>,
    stop_http: CancellationToken,
    stop_workers: CancellationToken,
    workers: Vec<JoinHandle<()>>,
}

impl Running {
    /// Binds `listener` and starts everything.
    ///
    /// # Errors
    ///
    /// Bad settings, or Kafka clients could not be created.
    pub fn start(
        backends: &Backends,
        settings: &SaleSettings,
        listener: TcpListener,
    ) -> Result<Self, StartError> {
        let addr = listener
            .local_addr()
            .map_err(|e| StartError::Config(format!("listener: {e}")))?;
        // Every dependency call of this instance behind its breaker.
        let protection = Protection::new(&settings.protection, &backends.metrics)?;
        let protected = backends.protect(&protection);
        let backends = &protected;
        let sale = Arc::new(backends.sale(settings)?);
        let identity = backends.identity(settings)?;
        let bulkhead = seckill::overload::Bulkhead::new(settings.max_in_flight as usize)
            .map_err(|e| StartError::Config(format!("--max-in-flight: {e}")))?;
        let catalog = SkuCatalog::new(
            backends.redis.clone(),
            &backends.services.namespace,
            backends.store.clone(),
            u32::from(backends.services.sku_cache_replicas),
        )
        .map_err(|e| StartError::Config(format!("SKU cache: {e}")))?;
        let stats = catalog.clone();
        backends.metrics.add_counters(move || {
            let s = stats.stats();
            vec![
                (
                    "seckill_cache_hits",
                    "SKU cache hits (front cache included).",
                    s.hits,
                ),
                (
                    "seckill_cache_front_hits",
                    "Of the hits, answered in process.",
                    s.front_hits,
                ),
                ("seckill_cache_misses", "SKU cache misses.", s.misses),
                ("seckill_cache_loads", "SKU loads from MySQL.", s.loads),
            ]
        });
        let rate_policies = crate::http::rate_headers::RatePolicies::new(&settings.rules())
            .map_err(|e| StartError::Config(format!("rate limits: {e}")))?;
        let state = HttpState {
            identity: identity.clone(),
            buy: BuyState {
                identity,
                rate_policies: Arc::new(rate_policies),
                bulkhead: bulkhead.clone(),
                sale: Arc::clone(&sale),
                metrics: Arc::clone(&backends.metrics),
                trust_forwarded_for: settings.trust_forwarded_for,
                catalog: catalog.clone(),
            },
            query: QueryState {
                sale: Arc::clone(&sale),
                book: backends.store.clone(),
                catalog: catalog.clone(),
            },
            admin: backends
                .services
                .admin_token
                .as_deref()
                .map(|token| AdminState {
                    token: token.into(),
                    sale: Arc::clone(&sale),
                    catalog: catalog.clone(),
                    store: backends.store.clone(),
                    stock: backends.stock.clone(),
                    blacklist: backends.blacklist_store.clone(),
                    blacklist_copy: backends.blacklist.clone(),
                }),
            ops: OpsState {
                store: backends.store.clone(),
                metrics: Arc::clone(&backends.metrics),
            },
        };
        let stop_http = CancellationToken::new();
        let stop_workers = CancellationToken::new();
        let app =
            crate::http::app(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
        let stop = stop_http.clone();
        let http = tokio::spawn(async move {
            let server = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await });
            if let Err(e) = server.await {
                tracing::error!(error = %e, "the HTTP server failed");
            }
        });
        let workers = vec![
            backends.spawn_consumer(settings, stop_workers.clone()),
            backends.spawn_reconciler(settings, stop_workers.clone())?,
            tokio::spawn(crate::redis::blacklist::keep_fresh(
                backends.blacklist_store.clone(),
                backends.blacklist.clone(),
                Duration::from_millis(settings.identity.blacklist_refresh_ms),
                stop_workers.clone(),
            )),
        ];
        Ok(Self {
            addr,
            sale,
            catalog,
            metrics: Arc::clone(&backends.metrics),
            bulkhead,
            protection,
            http,
            stop_http,
            stop_workers,
            workers,
        })
    }

    /// Graceful shutdown: stop accepting and finish the requests in flight,
    /// flush the order sink and the cache's pending second deletes, then let
    /// the consumer finish its batch.
    pub async fn shutdown(self) {
        self.stop_http.cancel();
        let _ = self.http.await;
        self.sale.queue().shutdown().await;
        self.catalog.flush().await;
        self.stop_workers.cancel();
        for worker in self.workers {
            let _ = worker.await;
        }
    }
}

/// Listens for SIGINT and SIGTERM from now on (a signal that arrives before
/// the returned future is awaited is not missed); the future resolves on the first.
///
/// # Errors
///
/// The signal handlers could not be installed.
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            tracing::info!("shutdown signal received");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutdown signal received");
        })
    }
}
