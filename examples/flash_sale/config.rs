//! Command line and environment: which services to use and how the sale behaves.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, FromArgMatches, Parser, Subcommand};

/// The flash-sale example app.
#[derive(Debug, Parser)]
#[command(name = "flash_sale", version, about)]
pub struct Cli {
    /// What to run; `demo` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Where the services are.
    #[command(flatten)]
    pub services: Services,
    /// How the sale turns requests away.
    #[command(flatten)]
    pub sale: SaleSettings,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the service and the consumer in process, run a load against it and print the report.
    Demo(LoadSettings),
    /// HTTP service, order consumer and reconciler.
    Serve,
    /// The order consumer alone (start several to scale out).
    Consume,
    /// Compare Redis's stock with MySQL's for every SKU of the sale and
    /// print the drift; exit 1 if any SKU drifts or lost its stock key.
    Calibrate,
    /// The load generator alone, against any running instance.
    Load {
        /// Base URL of the instance, e.g. `http://127.0.0.1:8080`.
        #[arg(long)]
        target: String,
        /// The load to run.
        #[command(flatten)]
        load: LoadSettings,
    },
}

/// Addresses of Redis, MySQL and Kafka, the HTTP listener and the admin token.
#[derive(Debug, Clone, Args)]
pub struct Services {
    /// Redis URL: one server (`redis://host:port`), a Redis Cluster
    /// (`redis+cluster://host:port,host:port,…`, or several `redis://` URLs
    /// separated by commas) or a Sentinel group
    /// (`redis+sentinel://host:port,…/master-name`).
    #[arg(
        long,
        global = true,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_url: String,
    /// Buckets each SKU's stock is split over (1 to 64): on a Redis Cluster,
    /// one per primary spreads a hot SKU over the cluster instead of one
    /// shard. Every instance of a sale must use the same count.
    #[arg(
        long,
        global = true,
        env = "SECKILL_STOCK_BUCKETS",
        default_value_t = 1,
        value_parser = clap::value_parser!(u16).range(1..=64)
    )]
    pub stock_buckets: u16,
    /// Copies of each cached SKU (1 to 64), their keys in different hash
    /// slots: on a Redis Cluster, the reads of a hot SKU spread over the
    /// primaries; writes and invalidations reach every copy.
    #[arg(
        long,
        global = true,
        env = "SECKILL_SKU_CACHE_REPLICAS",
        default_value_t = 1,
        value_parser = clap::value_parser!(u16).range(1..=64)
    )]
    pub sku_cache_replicas: u16,
    /// MySQL/MariaDB URL.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "mysql://root@127.0.0.1:3306/test"
    )]
    pub database_url: String,
    /// Kafka bootstrap servers (`host:port,…`). Empty or absent: librdkafka's
    /// in-process mock cluster.
    #[arg(long, global = true, env = "KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// HTTP listen address (`demo` always uses an ephemeral port).
    #[arg(
        long,
        global = true,
        env = "SECKILL_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,
    /// Bearer token of the admin routes; the admin routes are off without one.
    #[arg(
        long,
        global = true,
        env = "SECKILL_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
    /// Secret that signs and verifies buyers' bearer tokens (HS256, 32 to
    /// 1,024 bytes; every instance and the token issuer share it). Absent: a
    /// random one per process, so only this process's own demo endpoint can
    /// mint tokens it accepts.
    #[arg(
        long,
        global = true,
        env = "SECKILL_AUTH_SECRET",
        hide_env_values = true
    )]
    pub auth_secret: Option<String>,
    /// Kafka topic of the orders.
    #[arg(
        long,
        global = true,
        env = "SECKILL_TOPIC",
        default_value = "seckill.orders"
    )]
    pub topic: String,
    /// Partitions of the topic when the app creates it.
    #[arg(long, global = true, default_value_t = 3)]
    pub partitions: i32,
    /// Kafka consumer group of the order consumers.
    #[arg(long, global = true, default_value = "seckill-orders")]
    pub group: String,
    /// Redis namespace of the stock keys (the Redis Cluster hash tag).
    #[arg(
        long,
        global = true,
        env = "SECKILL_NAMESPACE",
        default_value = "flash-sale"
    )]
    pub namespace: String,
}

impl Services {
    /// The Kafka brokers given, or `None` for the embedded mock cluster.
    pub fn brokers(&self) -> Option<&str> {
        self.kafka_brokers
            .as_deref()
            .map(str::trim)
            .filter(|b| !b.is_empty())
    }
}

/// Limits and timings of the sale.
#[derive(Debug, Clone, Args)]
pub struct SaleSettings {
    /// Units of one SKU a buyer may hold across all their requests (1–1,000;
    /// recorded on the SKU when the admin route sets it up, and enforced
    /// again by the consumer in MySQL). Every instance of a sale must use the same.
    #[arg(long, global = true, default_value_t = 1)]
    pub per_user_limit: u64,
    /// Largest quantity of one request (1–1,000).
    #[arg(long, global = true, default_value_t = 10)]
    pub max_quantity: u32,
    /// Requests per second per client IP (token bucket rate).
    #[arg(long, global = true, default_value_t = 50)]
    pub ip_rate: u32,
    /// Burst per client IP.
    #[arg(long, global = true, default_value_t = 100)]
    pub ip_burst: u32,
    /// Requests per second per user.
    #[arg(long, global = true, default_value_t = 1)]
    pub user_rate: u32,
    /// Burst per user.
    #[arg(long, global = true, default_value_t = 3)]
    pub user_burst: u32,
    /// Requests per second reaching Redis from this instance (leaky bucket rate).
    #[arg(long, global = true, default_value_t = 20_000)]
    pub global_rate: u32,
    /// Requests the leaky bucket holds before it turns requests away.
    #[arg(long, global = true, default_value_t = 2_000)]
    pub global_capacity: u32,
    /// Purchase requests this instance works on at once (1–1,000,000); one
    /// more is answered 503 `overloaded` at once, before any limiter or
    /// Redis work (a bulkhead: a stalled dependency holds at most this many
    /// requests, the rest of the service keeps answering).
    #[arg(long, global = true, default_value_t = 10_000)]
    pub max_in_flight: u32,
    /// Take the client IP from the first `X-Forwarded-For` address (only
    /// behind a proxy that sets it; `demo` turns it on for its synthetic clients).
    #[arg(long, global = true, env = "SECKILL_TRUST_FORWARDED_FOR")]
    pub trust_forwarded_for: bool,
    /// How long a local sold-out flag answers before one request rechecks Redis (ms).
    #[arg(long, global = true, default_value_t = 500)]
    pub sold_out_recheck_ms: u64,
    /// Request ids whose over-the-limit answer this instance remembers, to
    /// replay it to a retry after the SKU sold out (grants need no memory:
    /// the sold-out flag loads every grant of the SKU).
    #[arg(long, global = true, default_value_t = 200_000)]
    pub remembered_answers: usize,
    /// Orders per Kafka batch.
    #[arg(long, global = true, default_value_t = 256)]
    pub batch_size: usize,
    /// Longest wait of an order before its batch goes to Kafka (ms).
    #[arg(long, global = true, default_value_t = 5)]
    pub batch_delay_ms: u64,
    /// Age of a deduction with no order before the reconciler republishes it (ms).
    #[arg(long, global = true, default_value_t = 10_000)]
    pub reconcile_grace_ms: u64,
    /// Time between reconciler passes (ms).
    #[arg(long, global = true, default_value_t = 2_000)]
    pub reconcile_every_ms: u64,
    /// Time after its first republish before the reconciler writes a
    /// deduction that is still not in MySQL straight to MySQL, without
    /// Kafka, through the consumer's idempotent transaction (ms).
    #[arg(long, global = true, default_value_t = 10_000)]
    pub reconcile_direct_after_ms: u64,
    /// Lifetime of the reconciler's lease in MySQL (one reconciler per sale
    /// at a time); the holder renews it, and another instance takes over
    /// this long after the holder died (ms).
    #[arg(long, global = true, default_value_t = 10_000)]
    pub reconcile_lease_ms: u64,
    /// A consumer with orders waiting and no progress of its group for this
    /// long recreates its Kafka client and rejoins the group (ms).
    #[arg(long, global = true, default_value_t = 15_000)]
    pub consumer_stuck_after_ms: u64,
    /// Who may buy: tokens, per-device limits, blacklist, challenge.
    #[command(flatten)]
    pub identity: crate::identity::settings::IdentitySettings,
    /// Overload protection: breakers, timeouts, the adaptive limit.
    #[command(flatten)]
    pub protection: crate::protection::ProtectionSettings,
}

/// A sale setting out of its range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--{flag} must be {min} to {max}, got {value}")]
pub struct RangeError {
    /// The flag, without its dashes.
    pub flag: &'static str,
    /// What was given.
    pub value: u64,
    /// Smallest valid value.
    pub min: u64,
    /// Largest valid value.
    pub max: u64,
}

/// Checks each `(flag, value, min, max)` of a settings group.
///
/// # Errors
///
/// The first value outside its range.
pub fn check_ranges(ranges: &[(&'static str, u64, u64, u64)]) -> Result<(), RangeError> {
    match ranges
        .iter()
        .find(|(_, value, min, max)| !(min..=max).contains(&value))
    {
        Some(&(flag, value, min, max)) => Err(RangeError {
            flag,
            value,
            min,
            max,
        }),
        None => Ok(()),
    }
}

impl SaleSettings {
    /// Every number with its flag and valid range (also in `--help`'s
    /// README table). The upper bounds keep every per-request and per-pass
    /// cost bounded; none is a limit a real sale reaches.
    pub fn ranges(&self) -> [(&'static str, u64, u64, u64); 18] {
        let n = |v: u32| u64::from(v);
        [
            ("per-user-limit", self.per_user_limit, 1, 1_000),
            ("max-quantity", n(self.max_quantity), 1, 1_000),
            ("ip-rate", n(self.ip_rate), 1, 10_000_000),
            ("ip-burst", n(self.ip_burst), 1, 10_000_000),
            ("user-rate", n(self.user_rate), 1, 10_000_000),
            ("user-burst", n(self.user_burst), 1, 10_000_000),
            ("global-rate", n(self.global_rate), 1, 10_000_000),
            ("global-capacity", n(self.global_capacity), 1, 10_000_000),
            ("max-in-flight", n(self.max_in_flight), 1, 1_000_000),
            ("sold-out-recheck-ms", self.sold_out_recheck_ms, 1, 60_000),
            (
                "remembered-answers",
                self.remembered_answers as u64,
                1,
                10_000_000,
            ),
            ("batch-size", self.batch_size as u64, 1, 10_000),
            ("batch-delay-ms", self.batch_delay_ms, 1, 10_000),
            ("reconcile-grace-ms", self.reconcile_grace_ms, 0, 86_400_000),
            ("reconcile-every-ms", self.reconcile_every_ms, 10, 3_600_000),
            (
                "reconcile-direct-after-ms",
                self.reconcile_direct_after_ms,
                0,
                3_600_000,
            ),
            (
                "reconcile-lease-ms",
                self.reconcile_lease_ms,
                1_000,
                600_000,
            ),
            (
                "consumer-stuck-after-ms",
                self.consumer_stuck_after_ms,
                1_000,
                600_000,
            ),
        ]
    }

    /// Checks every number against its range.
    ///
    /// # Errors
    ///
    /// The first setting out of range, naming its flag and range.
    pub fn validate(&self) -> Result<(), RangeError> {
        check_ranges(&self.ranges())?;
        self.identity.validate()?;
        self.protection.validate()?;
        Ok(())
    }

    /// The domain's rules of the sale.
    pub fn rules(&self) -> crate::domain::sale::SaleRules {
        crate::domain::sale::SaleRules {
            per_user_limit: self.per_user_limit,
            max_quantity: self.max_quantity,
            ip_rate: self.ip_rate,
            ip_burst: self.ip_burst,
            user_rate: self.user_rate,
            user_burst: self.user_burst,
            device_rate: self.identity.device_rate,
            device_burst: self.identity.device_burst,
            global_rate: self.global_rate,
            global_capacity: self.global_capacity,
            sold_out_recheck: Duration::from_millis(self.sold_out_recheck_ms),
            remembered_answers: self.remembered_answers,
        }
    }

    /// The defaults (tests start from them).
    ///
    /// # Errors
    ///
    /// A malformed environment variable of these settings.
    #[cfg(test)]
    pub fn defaults() -> Result<Self, clap::Error> {
        defaults()
    }
}

/// The shape of a load run.
#[derive(Debug, Clone, Args)]
pub struct LoadSettings {
    /// Requests to send.
    #[arg(long, default_value_t = 20_000)]
    pub requests: usize,
    /// Distinct users sending them.
    #[arg(long, default_value_t = 5_000)]
    pub users: u64,
    /// Distinct client IPs the users come from (sent as `X-Forwarded-For`;
    /// several users share one address, as behind a carrier NAT).
    #[arg(long, default_value_t = 1_000)]
    pub client_ips: u32,
    /// Units of stock on sale.
    #[arg(long, default_value_t = 1_000)]
    pub stock: u64,
    /// Requests in flight at once (virtual users).
    #[arg(long, default_value_t = 200)]
    pub concurrency: usize,
    /// Share of requests that resend an earlier request id (0.0–1.0).
    #[arg(long, default_value_t = 0.1)]
    pub retry_ratio: f64,
    /// The SKU put on sale; a new one per run when omitted, so earlier runs
    /// on the same database do not interfere.
    #[arg(long)]
    pub sku_id: Option<u64>,
    /// Where to write the HTML report.
    #[arg(long, default_value = "flash_sale_report.html")]
    pub report: PathBuf,
    /// Longest wait for the consumer to drain after the load (s).
    #[arg(long, default_value_t = 120)]
    pub drain_timeout_s: u64,
    /// Stop waiting for the consumer when no order arrived for this long (s).
    #[arg(long, default_value_t = 30)]
    pub drain_idle_s: u64,
    /// Timeout of one HTTP request (s); a request that times out counts as an error.
    #[arg(long, default_value_t = 30)]
    pub request_timeout_s: u64,
    /// No progress bar (logs and CI).
    #[arg(long)]
    pub quiet: bool,
    /// Attempts per second across all virtual users (0 = as fast as they
    /// go; at most 1,000,000): a paced run lasts long enough for a fault to
    /// land while stock is left.
    #[arg(long, default_value_t = 0)]
    pub rate: u32,
    /// Open loop: send attempt n at `n / --rate` seconds whether or not the
    /// earlier answers came back (at most `--concurrency` in flight), and
    /// measure each latency from that intended time, so a stalled service
    /// cannot slow the load down and hide its stall (no coordinated
    /// omission). Needs `--rate`.
    #[arg(long)]
    pub open_loop: bool,
    /// Also write the outcome as one JSON object to this file (counts and
    /// invariants, for scripts such as the chaos suite).
    #[arg(long)]
    pub summary_json: Option<PathBuf>,
}

impl LoadSettings {
    /// The defaults.
    ///
    /// # Errors
    ///
    /// Never in practice: no load setting reads the environment.
    pub fn defaults() -> Result<Self, clap::Error> {
        defaults()
    }
}

/// Parses an empty command line into `T`: its clap defaults, the one source of truth.
fn defaults<T: Args + FromArgMatches>() -> Result<T, clap::Error> {
    let command = T::augment_args(clap::Command::new("flash_sale"));
    T::from_arg_matches(&command.try_get_matches_from(["flash_sale"])?)
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

#[cfg(test)]
pub(crate) mod range_tests {
    use super::*;

    /// For every range of a settings group: one below its minimum and one
    /// above its maximum, set on `defaults` with `set`, make `validate`
    /// name that flag, value and range. `ranges` reads the group back, so a
    /// value that does not fit the field's type (and so cannot be given at
    /// all) is recognised and skipped.
    pub(crate) fn assert_every_range_is_checked<S: Clone, const N: usize>(
        defaults: &S,
        ranges: impl Fn(&S) -> [(&'static str, u64, u64, u64); N],
        set: impl Fn(&mut S, &'static str, u64),
        validate: impl Fn(&S) -> Result<(), RangeError>,
    ) {
        assert_eq!(validate(defaults), Ok(()));
        for (flag, _, min, max) in ranges(defaults) {
            for bad in [min.checked_sub(1), max.checked_add(1)]
                .into_iter()
                .flatten()
            {
                let mut settings = defaults.clone();
                set(&mut settings, flag, bad);
                if ranges(&settings).iter().any(|r| r.0 == flag && r.1 == bad) {
                    let error = validate(&settings).unwrap_err();
                    assert_eq!(
                        (error.flag, error.value, error.min, error.max),
                        (flag, bad, min, max)
                    );
                    assert!(error.to_string().starts_with(&format!("--{flag} must be")));
                }
            }
        }
    }

    #[test]
    fn every_number_is_checked_against_its_range() {
        assert_every_range_is_checked(
            &SaleSettings::defaults().unwrap(),
            SaleSettings::ranges,
            set,
            SaleSettings::validate,
        );
    }

    fn set(s: &mut SaleSettings, flag: &str, v: u64) {
        let n = u32::try_from(v).unwrap_or(u32::MAX);
        match flag {
            "per-user-limit" => s.per_user_limit = v,
            "max-quantity" => s.max_quantity = n,
            "ip-rate" => s.ip_rate = n,
            "ip-burst" => s.ip_burst = n,
            "user-rate" => s.user_rate = n,
            "user-burst" => s.user_burst = n,
            "global-rate" => s.global_rate = n,
            "global-capacity" => s.global_capacity = n,
            "max-in-flight" => s.max_in_flight = n,
            "sold-out-recheck-ms" => s.sold_out_recheck_ms = v,
            "remembered-answers" => s.remembered_answers = v as usize,
            "batch-size" => s.batch_size = v as usize,
            "batch-delay-ms" => s.batch_delay_ms = v,
            "reconcile-grace-ms" => s.reconcile_grace_ms = v,
            "reconcile-every-ms" => s.reconcile_every_ms = v,
            "reconcile-direct-after-ms" => s.reconcile_direct_after_ms = v,
            "reconcile-lease-ms" => s.reconcile_lease_ms = v,
            "consumer-stuck-after-ms" => s.consumer_stuck_after_ms = v,
            other => panic!("unknown flag {other}"),
        }
    }

    /// Checked through the sale's `validate`, which checks the identity group too.
    #[test]
    fn every_identity_number_is_checked_against_its_range() {
        assert_every_range_is_checked(
            &SaleSettings::defaults().unwrap(),
            |s| s.identity.ranges(),
            |s, flag, v| {
                let id = &mut s.identity;
                let n = u32::try_from(v).unwrap_or(u32::MAX);
                match flag {
                    "token-ttl-s" => id.token_ttl_s = v,
                    "device-rate" => id.device_rate = n,
                    "device-burst" => id.device_burst = n,
                    "blacklist-refresh-ms" => id.blacklist_refresh_ms = v,
                    "challenge-bits" => id.challenge_bits = n,
                    "challenge-ttl-s" => id.challenge_ttl_s = v,
                    other => panic!("unknown flag {other}"),
                }
            },
            SaleSettings::validate,
        );
    }
}
