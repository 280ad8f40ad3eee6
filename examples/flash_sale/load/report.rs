//! The report of a load run: throughput, latency, outcomes, the drain and
//! the invariants, as a text table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use super::drain::Drain;
use super::generator::{Outcome, Sample};
use super::invariants::{Invariants, Readback};

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest.
    pub max: f64,
}

impl Latency {
    /// Percentiles of `latencies` (any order; empty: all 0).
    pub fn of(latencies: &[Duration]) -> Self {
        let mut ms: Vec<f64> = latencies.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        Self {
            p50: percentile(&ms, 50.0),
            p90: percentile(&ms, 90.0),
            p99: percentile(&ms, 99.0),
            max: ms.last().copied().unwrap_or(0.0),
        }
    }
}

/// The nearest-rank percentile `p` (0–100) of `sorted`; 0 when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Answers and latency of one slice of the run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    /// Start of the slice, seconds from the start of the load.
    pub start_s: f64,
    /// Answers received in the slice, per second.
    pub per_second: f64,
    /// Median latency of those answers (ms).
    pub p50_ms: f64,
    /// 99th percentile latency of those answers (ms).
    pub p99_ms: f64,
}

/// Throughput and latency over time, in about `slices` equal slices of
/// `elapsed` (at least 50 ms each).
pub fn timeline(samples: &[Sample], elapsed: Duration, slices: usize) -> Vec<Interval> {
    let total = elapsed.as_secs_f64();
    if samples.is_empty() || total <= 0.0 {
        return Vec::new();
    }
    let width = (total / slices.max(1) as f64).max(0.05);
    let count = ((total / width).ceil() as usize).max(1);
    let mut buckets: Vec<Vec<Duration>> = vec![Vec::new(); count];
    for sample in samples {
        let i = ((sample.at.as_secs_f64() / width) as usize).min(count - 1);
        buckets[i].push(sample.latency);
    }
    buckets
        .iter()
        .enumerate()
        .map(|(i, latencies)| {
            let start = i as f64 * width;
            // The last slice may be shorter than the others.
            let span = (total - start).min(width).max(1e-3);
            let latency = Latency::of(latencies);
            Interval {
                start_s: start,
                per_second: latencies.len() as f64 / span,
                p50_ms: latency.p50,
                p99_ms: latency.p99,
            }
        })
        .collect()
}

/// The outcome of a load run.
#[derive(Debug, Clone)]
pub struct Report {
    /// Base URL loaded.
    pub target: String,
    /// The SKU sold.
    pub sku_id: u64,
    /// Units put on sale.
    pub stock: u64,
    /// Users, client IPs and concurrency of the run.
    pub users: u64,
    /// Distinct client IPs.
    pub client_ips: u32,
    /// Virtual users.
    pub concurrency: usize,
    /// Attempts sent (retries included).
    pub attempts: usize,
    /// Attempts that resent an earlier request.
    pub retries: usize,
    /// Distinct request ids.
    pub distinct_requests: usize,
    /// Duration of the load phase.
    pub elapsed: Duration,
    /// Latency over every attempt.
    pub latency: Latency,
    /// Latency over the admitted attempts: every answer but a 503 (shed by
    /// overload protection or a failing dependency) and no answer at all.
    pub admitted_latency: Latency,
    /// Attempts per outcome.
    pub outcomes: BTreeMap<Outcome, u64>,
    /// Distinct requests answered `queued`.
    pub queued_requests: usize,
    /// Requests whose fate the load could not tell.
    pub unknown_requests: usize,
    /// Inconsistent retries by (first answer, later answer).
    pub inconsistent: BTreeMap<(Outcome, Outcome), u64>,
    /// The wait for the consumer.
    pub drain: Drain,
    /// Orders, refusals and stock read back.
    pub readback: Readback,
    /// The invariants.
    pub invariants: Invariants,
    /// Throughput and latency over time.
    pub timeline: Vec<Interval>,
    /// Where the HTML report was written.
    pub html: Option<PathBuf>,
}

impl Report {
    /// Whether nothing was oversold, duplicated or lost, stock agrees and
    /// every retry got its first answer.
    pub fn invariants_hold(&self) -> bool {
        self.invariants.hold()
    }

    /// The outcome as one JSON object (`--summary-json`): what was sent
    /// and decided, and every invariant by a short name.
    pub fn summary(&self) -> serde_json::Value {
        let inv = &self.invariants;
        serde_json::json!({
            "sku_id": self.sku_id,
            "stock": self.stock,
            "sent": self.attempts,
            "distinct_requests": self.distinct_requests,
            "queued": self.queued_requests,
            "unknown": self.unknown_requests,
            "created": self.readback.orders.len(),
            "refused": self.readback.refused.len(),
            "lost": inv.lost_orders,
            "duplicated": inv.duplicate_orders,
            "stranded": inv.stock_mismatch,
            "changed": inv.inconsistent_retries,
            "oversold": inv.oversold,
            "over_limit": inv.over_limit,
            "redis_stock": self.readback.redis_stock,
            "mysql_stock": self.readback.mysql_stock,
            "drain_ms": u64::try_from(self.drain.waited.as_millis()).unwrap_or(u64::MAX),
            "drain_end": self.drain.end.describe(),
            "stock_agrees": self.drain.stock_agrees,
            "requests_per_second": self.requests_per_second(),
            "decided_per_second": self.decided_per_second(),
            "p50_ms": self.latency.p50,
            "p99_ms": self.latency.p99,
            "max_ms": self.latency.max,
            "admitted_p99_ms": self.admitted_latency.p99,
            "outcomes": self
                .outcomes
                .iter()
                .map(|(o, n)| (o.label(), serde_json::json!(n)))
                .collect::<serde_json::Map<_, _>>(),
            "ok": self.invariants_hold() && self.drain.end == super::drain::DrainEnd::Drained,
        })
    }

    /// Attempts answered per second over the load phase.
    pub fn requests_per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.attempts as f64 / secs
        } else {
            0.0
        }
    }

    /// Attempts the sale decided (queued or refused by the stock: the
    /// goodput) per second over the load phase.
    pub fn decided_per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        let decided: u64 = self
            .outcomes
            .iter()
            .filter(|(o, _)| o.is_decided())
            .map(|(_, n)| n)
            .sum();
        if secs > 0.0 {
            decided as f64 / secs
        } else {
            0.0
        }
    }

    /// The report's sections as (title, rows of (label, value)).
    pub fn sections(&self) -> Vec<(&'static str, Vec<(String, String)>)> {
        let r = &self.readback;
        let mut outcomes: Vec<(String, String)> = self
            .outcomes
            .iter()
            .map(|(o, n)| (o.label(), n.to_string()))
            .collect();
        outcomes.push((
            "total".into(),
            self.outcomes.values().sum::<u64>().to_string(),
        ));
        let mut invariants: Vec<(String, String)> = self
            .invariants
            .named()
            .iter()
            .map(|(name, n)| {
                let verdict = if *n == 0 { "ok" } else { "BROKEN" };
                ((*name).to_owned(), format!("{n}  {verdict}"))
            })
            .collect();
        for ((first, later), n) in &self.inconsistent {
            invariants.push((
                format!("  retry: {} then {}", first.label(), later.label()),
                n.to_string(),
            ));
        }
        vec![
            (
                "run",
                vec![
                    ("target".into(), self.target.clone()),
                    ("sku".into(), self.sku_id.to_string()),
                    ("stock".into(), self.stock.to_string()),
                    (
                        "users / client IPs".into(),
                        format!("{} / {}", self.users, self.client_ips),
                    ),
                    ("virtual users".into(), self.concurrency.to_string()),
                    (
                        "requests (retries)".into(),
                        format!("{} ({})", self.attempts, self.retries),
                    ),
                    (
                        "distinct request ids".into(),
                        self.distinct_requests.to_string(),
                    ),
                    (
                        "duration".into(),
                        format!("{:.2} s", self.elapsed.as_secs_f64()),
                    ),
                    (
                        "requests/s".into(),
                        format!("{:.0}", self.requests_per_second()),
                    ),
                ],
            ),
            (
                "latency (ms)",
                vec![
                    ("p50".into(), format!("{:.2}", self.latency.p50)),
                    ("p90".into(), format!("{:.2}", self.latency.p90)),
                    ("p99".into(), format!("{:.2}", self.latency.p99)),
                    ("max".into(), format!("{:.2}", self.latency.max)),
                ],
            ),
            ("answers", outcomes),
            (
                "MySQL and Redis",
                vec![
                    ("requests queued".into(), self.queued_requests.to_string()),
                    (
                        "consumer".into(),
                        format!(
                            "{} ({}/{} in {:.1} s)",
                            self.drain.end.describe(),
                            self.drain.settled,
                            self.drain.expected,
                            self.drain.waited.as_secs_f64()
                        ),
                    ),
                    ("orders".into(), r.orders.len().to_string()),
                    ("units sold".into(), r.units_sold().to_string()),
                    ("refused by MySQL".into(), r.refused.len().to_string()),
                    (
                        "stock MySQL / Redis".into(),
                        format!(
                            "{} / {}",
                            r.mysql_stock
                                .map_or_else(|| "(no row)".to_owned(), |s| s.to_string()),
                            r.redis_stock
                        ),
                    ),
                    ("fate unknown".into(), self.unknown_requests.to_string()),
                ],
            ),
            ("invariants (each must be 0)", invariants),
        ]
    }

    /// The report as aligned text.
    pub fn render_text(&self) -> String {
        let sections = self.sections();
        let width = sections
            .iter()
            .flat_map(|(_, rows)| rows.iter().map(|(label, _)| label.chars().count()))
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for (title, rows) in sections {
            let _ = writeln!(out, "\n{title}");
            for (label, value) in rows {
                let _ = writeln!(out, "  {label:<width$}  {value}");
            }
        }
        let verdict = if self.invariants_hold() {
            "every invariant holds"
        } else {
            "INVARIANTS BROKEN"
        };
        let _ = writeln!(out, "\n{verdict}");
        if let Some(path) = &self.html {
            let _ = writeln!(out, "HTML report: {}", path.display());
        }
        out
    }

    /// Prints the report to stdout.
    pub fn print(&self) {
        print!("{}", self.render_text());
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::load::drain::DrainEnd;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&sorted, 50.0), 50.0);
        assert_eq!(percentile(&sorted, 90.0), 90.0);
        assert_eq!(percentile(&sorted, 99.0), 99.0);
        assert_eq!(percentile(&sorted, 100.0), 100.0);
        assert_eq!(percentile(&sorted, 0.0), 1.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
        let latency = Latency::of(&[ms(30), ms(10), ms(20), ms(40)]);
        assert_eq!(
            latency,
            Latency {
                p50: 20.0,
                p90: 40.0,
                p99: 40.0,
                max: 40.0
            }
        );
        assert_eq!(Latency::of(&[]), Latency::default());
    }

    fn sample(at_ms: u64, latency_ms: u64) -> Sample {
        Sample {
            at: ms(at_ms),
            latency: ms(latency_ms),
            outcome: Outcome::Queued,
            request: 0,
            retry: false,
        }
    }

    #[test]
    fn the_timeline_buckets_answers_by_arrival() {
        let samples = [
            sample(10, 1),
            sample(90, 3),
            sample(150, 5),
            sample(399, 9),
            sample(400, 7),
        ];
        let timeline = timeline(&samples, ms(400), 4);
        assert_eq!(timeline.len(), 4);
        let per_second: Vec<f64> = timeline.iter().map(|i| i.per_second.round()).collect();
        // 2, 1, 0 and 2 answers in 100 ms slices (the one at 400 ms joins the last).
        assert_eq!(per_second, [20.0, 10.0, 0.0, 20.0]);
        assert_eq!(timeline[0].p50_ms, 1.0);
        assert_eq!(timeline[0].p99_ms, 3.0);
        assert_eq!(timeline[2].p99_ms, 0.0);
        assert_eq!(timeline[3].p50_ms, 7.0);
        assert!((timeline[3].start_s - 0.3).abs() < 1e-9);
        assert!(super::timeline(&[], ms(100), 4).is_empty());
    }

    /// A report of a small sale, for the rendering tests.
    pub(in crate::load) fn sample_report(lost: bool) -> Report {
        let readback = Readback {
            orders: Vec::new(),
            refused: Vec::new(),
            mysql_stock: Some(3),
            redis_stock: 0,
            per_user_limit: 1,
        };
        let mut invariants = Invariants::default();
        if lost {
            invariants.lost_orders = 3;
            invariants.stock_mismatch = 3;
        }
        Report {
            target: "http://127.0.0.1:1/<x>".into(),
            sku_id: 42,
            stock: 3,
            users: 10,
            client_ips: 2,
            concurrency: 4,
            attempts: 12,
            retries: 2,
            distinct_requests: 10,
            elapsed: Duration::from_secs(2),
            latency: Latency {
                p50: 1.0,
                p90: 2.0,
                p99: 3.0,
                max: 4.0,
            },
            admitted_latency: Latency::default(),
            outcomes: BTreeMap::from([
                (Outcome::Queued, 3),
                (Outcome::SoldOut, 7),
                (Outcome::LimitExceeded, 2),
            ]),
            queued_requests: 3,
            unknown_requests: 0,
            inconsistent: BTreeMap::new(),
            drain: Drain {
                settled: 0,
                expected: 3,
                stock_agrees: true,
                waited: Duration::from_secs(1),
                end: DrainEnd::Stalled,
            },
            readback,
            invariants,
            timeline: vec![
                Interval {
                    start_s: 0.0,
                    per_second: 8.0,
                    p50_ms: 1.0,
                    p99_ms: 3.0,
                },
                Interval {
                    start_s: 1.0,
                    per_second: 4.0,
                    p50_ms: 0.5,
                    p99_ms: 1.0,
                },
            ],
            html: Some(PathBuf::from("/tmp/report.html")),
        }
    }

    #[test]
    fn the_text_report_shows_every_number_and_the_verdict() {
        // Compare with runs of spaces squeezed: the column width is not the point.
        let text = sample_report(true).render_text();
        let text = text
            .lines()
            .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join("\n");
        for expected in [
            "requests/s",
            "6",
            "p99",
            "3.00",
            "queued",
            "sold_out",
            "limit_exceeded",
            "total",
            "lost orders 3 BROKEN",
            "oversold 0 ok",
            "stock MySQL / Redis 3 / 0",
            "stopped: no progress (0/3 in 1.0 s)",
            "INVARIANTS BROKEN",
            "HTML report: /tmp/report.html",
        ] {
            assert!(text.contains(expected), "{expected:?} missing from\n{text}");
        }
        let report = sample_report(false);
        assert!(report.invariants_hold());
        assert!(report.render_text().contains("every invariant holds"));
        assert_eq!(report.requests_per_second(), 6.0);
    }
}
