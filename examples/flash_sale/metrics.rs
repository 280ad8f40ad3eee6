//! The app's metrics, on `prometheus-client` (the Prometheus project's own
//! Rust client), rendered as OpenMetrics text at `/metrics`.
//!
//! Why this client and not `metrics` + `metrics-exporter-prometheus`: every
//! series here is a typed field that code updates directly (one atomic add,
//! no name lookup on the hot path), and the registry is a value, not a
//! process-wide recorder, so each instance (and each test, many of which
//! run in one process) counts on its own.

use std::fmt;
use std::sync::{Mutex, PoisonError, RwLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every answer `POST /api/v1/seckill` can give, as the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Granted.
    Queued,
    /// Sold out.
    SoldOut,
    /// Fewer units left than asked for.
    Insufficient,
    /// Over the per-user limit.
    LimitExceeded,
    /// Cancelled by an earlier refund.
    Cancelled,
    /// Turned away by a rate limit.
    RateLimited,
    /// Malformed request (400, 413).
    BadRequest,
    /// Unknown SKU (404).
    NotFound,
    /// The SKU's sale is paused while its stock is rebuilt (503).
    Paused,
    /// The request id was used before for another purchase (409).
    Conflict,
    /// More purchases in flight than `--max-in-flight` (503).
    Overloaded,
    /// No valid bearer token (401).
    Unauthorized,
    /// Blocked, another user's body, or a failed challenge (403).
    Forbidden,
    /// A service failed (503).
    Error,
}

impl Outcome {
    /// Every outcome.
    pub const ALL: [Outcome; 14] = [
        Outcome::Queued,
        Outcome::SoldOut,
        Outcome::Insufficient,
        Outcome::LimitExceeded,
        Outcome::Cancelled,
        Outcome::RateLimited,
        Outcome::BadRequest,
        Outcome::NotFound,
        Outcome::Paused,
        Outcome::Conflict,
        Outcome::Overloaded,
        Outcome::Unauthorized,
        Outcome::Forbidden,
        Outcome::Error,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Queued => "queued",
            Outcome::SoldOut => "sold_out",
            Outcome::Insufficient => "insufficient",
            Outcome::LimitExceeded => "limit_exceeded",
            Outcome::Cancelled => "cancelled",
            Outcome::RateLimited => "rate_limited",
            Outcome::BadRequest => "bad_request",
            Outcome::NotFound => "not_found",
            Outcome::Paused => "paused",
            Outcome::Conflict => "conflict",
            Outcome::Overloaded => "overloaded",
            Outcome::Unauthorized => "unauthorized",
            Outcome::Forbidden => "forbidden",
            Outcome::Error => "error",
        }
    }
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
        fmt::Write::write_str(encoder, self.as_str())
    }
}

/// The label set of `seckill_requests_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: Outcome,
}

/// A dependency behind a circuit breaker, as the `dependency` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dependency {
    /// Redis, on the buy path (the stock deduction).
    Redis,
    /// MySQL (the consumer's batch transactions, the SKU loads).
    Mysql,
    /// Kafka (publishing batches of orders).
    Kafka,
}

impl Dependency {
    /// Every dependency.
    pub const ALL: [Dependency; 3] = [Dependency::Redis, Dependency::Mysql, Dependency::Kafka];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Dependency::Redis => "redis",
            Dependency::Mysql => "mysql",
            Dependency::Kafka => "kafka",
        }
    }
}

impl fmt::Display for Dependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl EncodeLabelValue for Dependency {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
        fmt::Write::write_str(encoder, self.as_str())
    }
}

/// The label set of the `seckill_breaker_*` series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DependencyLabel {
    dependency: Dependency,
}

const LATENCY_BOUNDS: [f64; 12] = [
    0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];
const BATCH_BOUNDS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// The app's metrics: one instance shared by the sale, the handlers, the
/// producer, the consumer and the reconciler.
#[derive(Debug)]
pub struct Metrics {
    registry: RwLock<Registry>,
    refresh: Refreshers,
    requests: Family<OutcomeLabel, Counter>,
    /// Latency of `POST /api/v1/seckill`, in seconds.
    pub request_seconds: Histogram,
    /// Purchase answers given from the local sold-out flag (no Redis call).
    pub sold_out_local: Counter,
    /// Deduction script calls made to Redis.
    pub redis_deductions: Counter,
    /// Orders per batch sent to Kafka.
    pub batch_orders: Histogram,
    /// Orders acknowledged by Kafka.
    pub orders_published: Counter,
    /// Orders whose batch Kafka did not take after every retry (the reconciler republishes them).
    pub orders_publish_failed: Counter,
    /// Orders written to MySQL by the consumer.
    pub orders_created: Counter,
    /// Redelivered orders that were already in MySQL (no-ops).
    pub orders_duplicate: Counter,
    /// Orders MySQL refused (stock or per-user check) and refunded in Redis.
    pub orders_failed: Counter,
    /// Kafka messages the consumer could not decode (skipped and logged).
    pub messages_malformed: Counter,
    /// Messages behind the end of the assigned partitions, last measured.
    pub consumer_lag: Gauge,
    /// Orders the reconciler republished.
    pub reconciler_republished: Counter,
    /// Orders the reconciler wrote to MySQL itself (republishing had not worked).
    pub reconciler_direct: Counter,
    /// Deduction log entries trimmed once durable.
    pub reconciler_trimmed: Counter,
    /// 1 while this instance holds the reconciler lease.
    pub reconciler_lease: Gauge,
    /// Times the consumer found itself stuck and recreated its Kafka client.
    pub consumer_rejoins: Counter,
    /// SKUs whose Redis stock was rebuilt from MySQL (Redis lost it).
    pub stock_rebuilds: Counter,
    breaker_state: Family<DependencyLabel, Gauge>,
    breaker_changes: Family<DependencyLabel, Counter>,
    breaker_rejected: Family<DependencyLabel, Counter>,
    /// The buy path's adaptive concurrency limit (0 while it is off).
    pub adaptive_limit: Gauge,
    /// Purchases shed by the adaptive limit (answered 503 `overloaded`).
    pub adaptive_shed: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let metrics = Self {
            registry: RwLock::new(Registry::default()),
            refresh: Refreshers::default(),
            requests: Family::default(),
            request_seconds: Histogram::new(LATENCY_BOUNDS),
            sold_out_local: Counter::default(),
            redis_deductions: Counter::default(),
            batch_orders: Histogram::new(BATCH_BOUNDS),
            orders_published: Counter::default(),
            orders_publish_failed: Counter::default(),
            orders_created: Counter::default(),
            orders_duplicate: Counter::default(),
            orders_failed: Counter::default(),
            messages_malformed: Counter::default(),
            consumer_lag: Gauge::default(),
            reconciler_republished: Counter::default(),
            reconciler_direct: Counter::default(),
            reconciler_trimmed: Counter::default(),
            reconciler_lease: Gauge::default(),
            consumer_rejoins: Counter::default(),
            stock_rebuilds: Counter::default(),
            breaker_state: Family::default(),
            breaker_changes: Family::default(),
            breaker_rejected: Family::default(),
            adaptive_limit: Gauge::default(),
            adaptive_shed: Counter::default(),
        };
        // Every outcome and dependency shows from the start, at 0.
        for outcome in Outcome::ALL {
            let _ = metrics.requests.get_or_create(&OutcomeLabel { outcome });
        }
        for dependency in Dependency::ALL {
            let label = DependencyLabel { dependency };
            let _ = metrics.breaker_state.get_or_create(&label);
            let _ = metrics.breaker_changes.get_or_create(&label);
            let _ = metrics.breaker_rejected.get_or_create(&label);
        }
        metrics.register_all();
        metrics
    }
}

impl Metrics {
    /// Registers the series (clones share their values with the fields).
    fn register_all(&self) {
        let mut r = self
            .registry
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let counters: [(&str, &str, &Counter); 14] = [
            (
                "seckill_sold_out_local",
                "Answers given from the local sold-out flag.",
                &self.sold_out_local,
            ),
            (
                "seckill_redis_deductions",
                "Deduction script calls.",
                &self.redis_deductions,
            ),
            (
                "seckill_orders_published",
                "Orders acknowledged by Kafka.",
                &self.orders_published,
            ),
            (
                "seckill_orders_publish_failed",
                "Orders Kafka did not take after every retry.",
                &self.orders_publish_failed,
            ),
            (
                "seckill_orders_created",
                "Orders written to MySQL.",
                &self.orders_created,
            ),
            (
                "seckill_orders_duplicate",
                "Redelivered orders already in MySQL.",
                &self.orders_duplicate,
            ),
            (
                "seckill_orders_failed",
                "Orders refused by MySQL and refunded.",
                &self.orders_failed,
            ),
            (
                "seckill_messages_malformed",
                "Kafka messages that could not be decoded.",
                &self.messages_malformed,
            ),
            (
                "seckill_reconciler_republished",
                "Orders republished by the reconciler.",
                &self.reconciler_republished,
            ),
            (
                "seckill_reconciler_direct",
                "Orders the reconciler wrote to MySQL without Kafka.",
                &self.reconciler_direct,
            ),
            (
                "seckill_reconciler_trimmed",
                "Deduction log entries trimmed once durable.",
                &self.reconciler_trimmed,
            ),
            (
                "seckill_consumer_rejoins",
                "Times a stuck consumer recreated its Kafka client.",
                &self.consumer_rejoins,
            ),
            (
                "seckill_stock_rebuilds",
                "SKU stocks rebuilt in Redis from MySQL.",
                &self.stock_rebuilds,
            ),
            (
                "seckill_adaptive_shed",
                "Purchases shed by the adaptive concurrency limit.",
                &self.adaptive_shed,
            ),
        ];
        r.register(
            "seckill_requests",
            "Purchase requests by outcome.",
            self.requests.clone(),
        );
        r.register(
            "seckill_request_duration_seconds",
            "Latency of POST /api/v1/seckill.",
            self.request_seconds.clone(),
        );
        r.register(
            "seckill_kafka_batch_orders",
            "Orders per batch sent to Kafka.",
            self.batch_orders.clone(),
        );
        for (name, help, counter) in counters {
            r.register(name, help, counter.clone());
        }
        r.register(
            "seckill_consumer_lag_messages",
            "Messages behind the end of the consumer's partitions.",
            self.consumer_lag.clone(),
        );
        r.register(
            "seckill_reconciler_lease_held",
            "1 while this instance holds the reconciler lease.",
            self.reconciler_lease.clone(),
        );
        r.register(
            "seckill_breaker_state",
            "Circuit breaker state by dependency: 0 closed, 1 throttling.",
            self.breaker_state.clone(),
        );
        r.register(
            "seckill_breaker_state_changes",
            "Circuit breaker state changes by dependency.",
            self.breaker_changes.clone(),
        );
        r.register(
            "seckill_breaker_rejected",
            "Calls a circuit breaker rejected without calling the dependency.",
            self.breaker_rejected.clone(),
        );
        r.register(
            "seckill_adaptive_limit",
            "The buy path's adaptive concurrency limit (0: off).",
            self.adaptive_limit.clone(),
        );
    }

    /// Counts one purchase answer.
    pub fn count_outcome(&self, outcome: Outcome) {
        self.requests.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// Purchase answers so far with `outcome`.
    #[cfg(test)]
    pub fn outcome_count(&self, outcome: Outcome) -> u64 {
        self.requests.get_or_create(&OutcomeLabel { outcome }).get()
    }

    /// Sets the state gauge of `dependency`'s breaker.
    pub fn set_breaker_state(&self, dependency: Dependency, throttling: bool) {
        let _ = self
            .breaker_state
            .get_or_create(&DependencyLabel { dependency })
            .set(i64::from(throttling));
    }

    /// Counts one state change of `dependency`'s breaker.
    pub fn count_breaker_change(&self, dependency: Dependency) {
        self.breaker_changes
            .get_or_create(&DependencyLabel { dependency })
            .inc();
    }

    /// Counts one call `dependency`'s breaker rejected.
    pub fn count_breaker_rejected(&self, dependency: Dependency) {
        self.breaker_rejected
            .get_or_create(&DependencyLabel { dependency })
            .inc();
    }

    /// `dependency`'s breaker: (state gauge, state changes, rejected calls).
    #[cfg(test)]
    pub fn breaker(&self, dependency: Dependency) -> (i64, u64, u64) {
        let label = DependencyLabel { dependency };
        (
            self.breaker_state.get_or_create(&label).get(),
            self.breaker_changes.get_or_create(&label).get(),
            self.breaker_rejected.get_or_create(&label).get(),
        )
    }

    /// Adds counters that another part owns and reads at each scrape
    /// (the SKU cache's statistics): `read` gives `(name, help, value)`
    /// triples, names without the `_total` suffix.
    pub fn add_counters<F>(&self, read: F)
    where
        F: Fn() -> Vec<(&'static str, &'static str, u64)> + Send + Sync + 'static,
    {
        self.registry
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .register_collector(Box::new(ReadCounters(Box::new(read))));
    }

    /// Runs `refresh` before every [`render`](Self::render): for gauges
    /// whose owner updates them only when it is used (a breaker's state
    /// moves with its window even when no call comes).
    pub fn on_render(&self, refresh: impl Fn() + Send + Sync + 'static) {
        self.refresh
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Box::new(refresh));
    }

    /// OpenMetrics text of every series ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        for refresh in self
            .refresh
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            refresh();
        }
        let mut out = String::with_capacity(4096);
        let registry = self.registry.read().unwrap_or_else(PoisonError::into_inner);
        if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &registry) {
            // Writing into a String cannot fail; say so if it ever does.
            tracing::error!(%error, "could not render the metrics");
        }
        out
    }
}

/// Hooks run before each render.
#[derive(Default)]
struct Refreshers(Mutex<Vec<Box<dyn Fn() + Send + Sync>>>);

impl fmt::Debug for Refreshers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Refreshers")
    }
}

/// Counters read at scrape time.
type ReadFn = Box<dyn Fn() -> Vec<(&'static str, &'static str, u64)> + Send + Sync>;

struct ReadCounters(ReadFn);

impl fmt::Debug for ReadCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReadCounters")
    }
}

impl Collector for ReadCounters {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        for (name, help, value) in (self.0)() {
            let counter = ConstCounter::new(value);
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_outcome_counters_and_histograms() {
        let m = Metrics::default();
        m.count_outcome(Outcome::Queued);
        m.count_outcome(Outcome::Queued);
        m.count_outcome(Outcome::Cancelled);
        m.orders_created.inc_by(3);
        for v in [0.000_1, 0.003, 9.0] {
            m.request_seconds.observe(v);
        }
        m.add_counters(|| vec![("seckill_cache_hits", "Hits.", 7)]);
        m.set_breaker_state(Dependency::Mysql, true);
        m.count_breaker_change(Dependency::Mysql);
        m.count_breaker_rejected(Dependency::Redis);
        m.count_breaker_rejected(Dependency::Redis);
        m.adaptive_limit.set(20);
        m.adaptive_shed.inc();
        assert_eq!(m.breaker(Dependency::Redis), (0, 0, 2));
        assert_eq!(m.outcome_count(Outcome::Queued), 2);
        let text = m.render();
        for line in [
            "seckill_requests_total{outcome=\"queued\"} 2\n",
            "seckill_requests_total{outcome=\"cancelled\"} 1\n",
            "seckill_requests_total{outcome=\"error\"} 0\n",
            "seckill_orders_created_total 3\n",
            "seckill_request_duration_seconds_count 3\n",
            "seckill_request_duration_seconds_bucket{le=\"0.00025\"} 1\n",
            "seckill_request_duration_seconds_bucket{le=\"+Inf\"} 3\n",
            "seckill_consumer_lag_messages 0\n",
            "seckill_cache_hits_total 7\n",
            "seckill_breaker_state{dependency=\"mysql\"} 1\n",
            "seckill_breaker_state{dependency=\"kafka\"} 0\n",
            "seckill_breaker_state_changes_total{dependency=\"mysql\"} 1\n",
            "seckill_breaker_rejected_total{dependency=\"redis\"} 2\n",
            "seckill_breaker_rejected_total{dependency=\"kafka\"} 0\n",
            "seckill_adaptive_limit 20\n",
            "seckill_adaptive_shed_total 1\n",
            "# EOF\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }
}
