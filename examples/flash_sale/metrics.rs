//! Counters, gauges and histograms, rendered as Prometheus text at `/metrics`.
//!
//! Hand-rolled on atomics: a handful of series does not justify a metrics
//! stack, and every update is one relaxed atomic add on the hot path.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The count so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }

    /// The value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A histogram with fixed upper bounds.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// One count per bound, plus `+Inf`.
    counts: Box<[AtomicU64]>,
    /// Sum of the observations, in millionths.
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, value: f64) {
        let slot = self
            .bounds
            .iter()
            .position(|&bound| value <= bound)
            .unwrap_or(self.bounds.len());
        if let Some(count) = self.counts.get(slot) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        // Float to integer `as` saturates; negative observations count as 0.
        self.sum_micros
            .fetch_add((value * 1e6) as u64, Ordering::Relaxed);
    }

    /// Records a duration in seconds.
    pub fn observe_duration(&self, elapsed: Duration) {
        self.observe(elapsed.as_secs_f64());
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(self.counts.iter()) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let total = self.count();
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {total}");
    }
}

/// Every answer `POST /api/v1/seckill` can give, as a metric label.
pub const OUTCOMES: [&str; 8] = [
    "queued",
    "sold_out",
    "insufficient",
    "limit_exceeded",
    "rate_limited",
    "bad_request",
    "not_found",
    "error",
];

const LATENCY_BOUNDS: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];
const BATCH_BOUNDS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// The app's metrics: one instance shared by the HTTP handlers, the producer,
/// the consumer and the reconciler.
#[derive(Debug)]
pub struct Metrics {
    /// Purchase answers by outcome, indexed like [`OUTCOMES`].
    requests: [Counter; OUTCOMES.len()],
    /// Latency of `POST /api/v1/seckill`.
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
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: Default::default(),
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
        }
    }
}

impl Metrics {
    /// Counts one purchase answer; `outcome` is one of [`OUTCOMES`].
    pub fn count_outcome(&self, outcome: &str) {
        if let Some(i) = OUTCOMES.iter().position(|o| *o == outcome) {
            self.requests[i].inc();
        }
    }

    /// Purchase answers so far with `outcome`.
    #[cfg(test)]
    pub fn outcome_count(&self, outcome: &str) -> u64 {
        OUTCOMES
            .iter()
            .position(|o| *o == outcome)
            .map_or(0, |i| self.requests[i].get())
    }

    /// Prometheus text exposition of every series, plus `extra` counters
    /// (`name`, `help`, `value`) owned by others, such as the cache's.
    pub fn render(&self, extra: &[(&str, &str, u64)]) -> String {
        let mut out = String::with_capacity(4096);
        let name = "seckill_requests_total";
        let _ = writeln!(
            out,
            "# HELP {name} Purchase requests by outcome.\n# TYPE {name} counter"
        );
        for (outcome, counter) in OUTCOMES.iter().zip(self.requests.iter()) {
            let _ = writeln!(out, "{name}{{outcome=\"{outcome}\"}} {}", counter.get());
        }
        self.request_seconds.render(
            &mut out,
            "seckill_request_duration_seconds",
            "Latency of POST /api/v1/seckill.",
        );
        self.batch_orders.render(
            &mut out,
            "seckill_kafka_batch_orders",
            "Orders per batch sent to Kafka.",
        );
        let counters: [(&str, &str, u64); 9] = [
            (
                "seckill_sold_out_local_total",
                "Answers given from the local sold-out flag.",
                self.sold_out_local.get(),
            ),
            (
                "seckill_redis_deductions_total",
                "Deduction script calls.",
                self.redis_deductions.get(),
            ),
            (
                "seckill_orders_published_total",
                "Orders acknowledged by Kafka.",
                self.orders_published.get(),
            ),
            (
                "seckill_orders_publish_failed_total",
                "Orders Kafka did not take after every retry.",
                self.orders_publish_failed.get(),
            ),
            (
                "seckill_orders_created_total",
                "Orders written to MySQL.",
                self.orders_created.get(),
            ),
            (
                "seckill_orders_duplicate_total",
                "Redelivered orders already in MySQL.",
                self.orders_duplicate.get(),
            ),
            (
                "seckill_orders_failed_total",
                "Orders refused by MySQL and refunded.",
                self.orders_failed.get(),
            ),
            (
                "seckill_messages_malformed_total",
                "Kafka messages that could not be decoded.",
                self.messages_malformed.get(),
            ),
            (
                "seckill_reconciler_republished_total",
                "Orders republished by the reconciler.",
                self.reconciler_republished.get(),
            ),
        ];
        for (name, help, value) in counters.iter().chain(extra) {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        let name = "seckill_consumer_lag_messages";
        let _ = writeln!(
            out,
            "# HELP {name} Messages behind the end of the consumer's partitions.\n# TYPE {name} gauge\n{name} {}",
            self.consumer_lag.get()
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::new(&[1.0, 2.0]);
        for v in [0.5, 1.5, 1.5, 9.0] {
            h.observe(v);
        }
        let mut out = String::new();
        h.render(&mut out, "x", "help");
        assert!(out.contains("x_bucket{le=\"1\"} 1\n"));
        assert!(out.contains("x_bucket{le=\"2\"} 3\n"));
        assert!(out.contains("x_bucket{le=\"+Inf\"} 4\n"));
        assert!(out.contains("x_sum 12.5\nx_count 4\n"));
    }

    #[test]
    fn outcomes_are_counted_by_label() {
        let m = Metrics::default();
        m.count_outcome("queued");
        m.count_outcome("queued");
        m.count_outcome("no such outcome");
        assert_eq!(m.outcome_count("queued"), 2);
        let text = m.render(&[("cache_hits_total", "Hits.", 7)]);
        assert!(text.contains("seckill_requests_total{outcome=\"queued\"} 2\n"));
        assert!(text.contains("cache_hits_total 7\n"));
    }
}
