//! Wiring: connect to Redis, MySQL and Kafka, build the state, and run the
//! HTTP server, the consumer and the reconciler until shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::producer::FutureProducer;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use seckill::cache_aside::{Backfill, Cache, Options};
use seckill::stock_lua::StockStore;
use sqlx::MySqlPool;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{SaleSettings, Services};
use crate::metrics::Metrics;
use crate::orders::consumer::{self, ConsumerDeps};
use crate::orders::db;
use crate::orders::kafka::Kafka;
use crate::orders::producer::{BatchSettings, OrderSink};
use crate::reconcile::Reconciler;
use crate::sale::answered::Answered;
use crate::sale::limits::Limits;
use crate::sale::sold_out::SoldOutFlags;
use crate::state::{AppState, Shared};

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
        source: redis::RedisError,
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
    /// Redis.
    pub redis: ConnectionManager,
    /// Stock deduction on `redis`.
    pub stock: StockStore<ConnectionManager>,
    /// MySQL, migrated.
    pub db: MySqlPool,
    /// Kafka (or the mock cluster).
    pub kafka: Arc<Kafka>,
    /// Topic, group, namespace.
    pub services: Services,
    /// Shared metrics.
    pub metrics: Arc<Metrics>,
}

impl Backends {
    /// Connects to everything, runs the migrations and creates the topic.
    ///
    /// # Errors
    ///
    /// A service is unreachable.
    pub async fn connect(services: &Services) -> Result<Self, StartError> {
        let redis_error = |source| StartError::Redis {
            url: services.redis_url.clone(),
            source,
        };
        let client = redis::Client::open(services.redis_url.as_str()).map_err(redis_error)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(5)));
        let redis = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(redis_error)?;
        let stock = StockStore::new(redis.clone(), &services.namespace)
            .map_err(|e| StartError::Config(format!("namespace: {e}")))?;
        let db = db::connect(&services.database_url, 16)
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
            db,
            kafka: Arc::new(kafka),
            services: services.clone(),
            metrics: Arc::new(Metrics::default()),
        })
    }

    /// The HTTP state, with its order sink started.
    ///
    /// # Errors
    ///
    /// Bad sale settings, or the producer could not be created.
    pub fn state(&self, sale: &SaleSettings) -> Result<AppState, StartError> {
        let limits = Limits::new(sale).map_err(|e| StartError::Config(e.to_string()))?;
        let producer = self.producer()?;
        let orders = OrderSink::new(
            producer,
            self.services.topic.clone(),
            BatchSettings {
                max_orders: sale.batch_size,
                max_delay: Duration::from_millis(sale.batch_delay_ms),
            },
            Arc::clone(&self.metrics),
        )
        .map_err(|e| StartError::Config(format!("batcher: {e}")))?;
        let options = Options::default()
            .ttl(Duration::from_secs(300))
            .jitter(0.2)
            .not_found_ttl(Duration::from_secs(5))
            .double_delete_delay(Duration::from_millis(500))
            .backfill(Backfill::SetNx);
        Ok(AppState::new(Shared {
            settings: sale.clone(),
            limits,
            sold_out: SoldOutFlags::new(sale.sold_out_recheck()),
            answered: Answered::new(sale.remembered_answers),
            stock: self.stock.clone(),
            cache: Cache::new(self.redis.clone(), options),
            cache_prefix: format!("flash-sale:{{{}}}:sku:", self.services.namespace),
            db: self.db.clone(),
            orders,
            metrics: Arc::clone(&self.metrics),
            admin_token: self.services.admin_token.clone(),
        }))
    }

    /// A Kafka producer, its error naming the brokers.
    fn producer(&self) -> Result<FutureProducer, StartError> {
        self.kafka.producer().map_err(|source| StartError::Kafka {
            brokers: self.kafka.brokers().to_owned(),
            source,
        })
    }

    /// Starts the order consumer.
    pub fn spawn_consumer(&self, shutdown: CancellationToken) -> JoinHandle<()> {
        let deps = ConsumerDeps {
            kafka: Arc::clone(&self.kafka),
            group: self.services.group.clone(),
            topic: self.services.topic.clone(),
            db: self.db.clone(),
            stock: self.stock.clone(),
            metrics: Arc::clone(&self.metrics),
        };
        tokio::spawn(async move {
            if let Err(e) = consumer::run(deps, shutdown).await {
                tracing::error!(error = %e, "the order consumer stopped");
            }
        })
    }

    /// Starts the reconciler.
    ///
    /// # Errors
    ///
    /// Its producer could not be created.
    pub fn spawn_reconciler(
        &self,
        sale: &SaleSettings,
        shutdown: CancellationToken,
    ) -> Result<JoinHandle<()>, StartError> {
        let producer = self.producer()?;
        let reconciler = Reconciler::new(
            self.db.clone(),
            self.stock.clone(),
            producer,
            self.services.topic.clone(),
            Duration::from_millis(sale.reconcile_grace_ms),
            Arc::clone(&self.metrics),
        );
        let every = Duration::from_millis(sale.reconcile_every_ms);
        Ok(tokio::spawn(reconciler.run(every, shutdown)))
    }
}

/// A running instance: HTTP server, consumer and reconciler.
pub struct Running {
    /// Where HTTP listens.
    pub addr: std::net::SocketAddr,
    /// The state the handlers share.
    pub state: AppState,
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
        sale: &SaleSettings,
        listener: TcpListener,
    ) -> Result<Self, StartError> {
        let addr = listener
            .local_addr()
            .map_err(|e| StartError::Config(format!("listener: {e}")))?;
        let state = backends.state(sale)?;
        let stop_http = CancellationToken::new();
        let stop_workers = CancellationToken::new();
        let app = crate::http::app(state.clone())
            .into_make_service_with_connect_info::<std::net::SocketAddr>();
        let stop = stop_http.clone();
        let http = tokio::spawn(async move {
            let server = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await });
            if let Err(e) = server.await {
                tracing::error!(error = %e, "the HTTP server failed");
            }
        });
        let workers = vec![
            backends.spawn_consumer(stop_workers.clone()),
            backends.spawn_reconciler(sale, stop_workers.clone())?,
        ];
        Ok(Self {
            addr,
            state,
            http,
            stop_http,
            stop_workers,
            workers,
        })
    }

    /// Graceful shutdown: stop accepting and finish the requests in flight,
    /// flush the order sink, then let the consumer finish its batch.
    pub async fn shutdown(self) {
        self.stop_http.cancel();
        let _ = self.http.await;
        self.state.orders.shutdown().await;
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

/// `url` without its password, for messages.
pub fn redact(url: &str) -> String {
    match url.split_once('@') {
        Some((credentials, host)) => match credentials.rsplit_once(':') {
            Some((user, _)) if !user.ends_with('/') => format!("{user}:***@{host}"),
            _ => url.to_owned(),
        },
        None => url.to_owned(),
    }
}
