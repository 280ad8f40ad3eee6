//! The Redis limiters on every shared topology (a single server, a Redis
//! Cluster, a Sentinel group) through both clients of seckill-redis.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[macro_use]
mod support;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use seckill_ratelimit::{
    Algorithm, ConfigError, DenyReason, FailurePolicy, LuaScript, RedisLimiter,
};
use seckill_redis::{Arg, Call, Connection, Value};
use support::{
    Client, PrivateRedis, Topo, cmd, connect, connect_url, del, flush_scripts, pttl, redis_now,
    unique, zrange_with_scores,
};

async fn token_bucket_burst_then_rate<C: Connection>(conn: C, _topo: Topo) {
    let name = unique("tb");
    let limiter = support::limiter(
        conn.clone(),
        name.clone(),
        Algorithm::TokenBucket {
            rate_per_sec: 1,
            burst: 5,
        },
    )
    .unwrap();
    for _ in 0..5 {
        limiter.try_acquire("user:1", 1).await.unwrap();
    }
    let denied = limiter.try_acquire("user:1", 1).await.unwrap_err();
    assert_eq!(denied.reason, DenyReason::RateExceeded);
    assert!(denied.retry_after > Duration::ZERO && denied.retry_after <= Duration::from_secs(1));
    // Another key is not limited.
    limiter.try_acquire("user:2", 5).await.unwrap();
    // The key lives as long as the refill of 5 tokens at 1/s, never longer.
    let ttl = pttl(&conn, &format!("{{{name}:user:1}}:tb")).await;
    assert!((4_000..=5_001).contains(&ttl), "pttl {ttl}");
    assert_eq!(
        limiter.try_acquire("user:1", 6).await.unwrap_err().reason,
        DenyReason::ExceedsCapacity
    );
    assert_eq!(limiter.stats().errors, 0);
    assert!(limiter.last_error().is_none());
}

async fn go_zero_zero_ttl_case_works<C: Connection>(conn: C, _topo: Topo) {
    // go-zero's floor(2·burst/rate) is 0 here, and its SETEX fails forever.
    let name = unique("tb100");
    let limiter = support::limiter(
        conn.clone(),
        name.clone(),
        Algorithm::TokenBucket {
            rate_per_sec: 100,
            burst: 10,
        },
    )
    .unwrap();
    let started = Instant::now();
    limiter.try_acquire("k", 10).await.unwrap();
    let second = limiter.try_acquire("k", 10).await;
    if started.elapsed() < Duration::from_millis(100) {
        // A full refill takes 100 ms.
        assert!(second.unwrap_err().retry_after <= Duration::from_millis(100));
    }
    // -2: expired already (a full refill takes 100 ms); -1 would never expire.
    let ttl = pttl(&conn, &format!("{{{name}:k}}:tb")).await;
    assert!(ttl == -2 || (1..=101).contains(&ttl), "pttl {ttl}");
    assert_eq!(limiter.stats().errors, 0);
    assert!(!limiter.stats().on_policy);
}

async fn leaky_meter<C: Connection>(conn: C, _topo: Topo) {
    let name = unique("lb");
    let limiter = support::limiter(
        conn,
        name.clone(),
        Algorithm::LeakyBucket {
            rate_per_sec: 1,
            capacity: 3,
        },
    )
    .unwrap();
    limiter.try_acquire("m", 3).await.unwrap();
    let denied = limiter.try_acquire("m", 1).await.unwrap_err();
    assert_eq!(denied.reason, DenyReason::RateExceeded);
    // One unit drains in 1 s, counted from the first call by Redis's clock.
    assert!(
        denied.retry_after > Duration::ZERO && denied.retry_after <= Duration::from_secs(1),
        "{denied:?}"
    );
    assert_eq!(limiter.stats().errors, 0);
}

async fn pacer_spaces_callers<C: Connection>(conn: C, _topo: Topo) {
    let name = unique("pace");
    let pacer = Arc::new(
        support::limiter(
            conn.clone(),
            name.clone(),
            Algorithm::LeakyBucket {
                rate_per_sec: 1,
                capacity: 1,
            },
        )
        .unwrap(),
    );
    let before = redis_now(&conn).await;
    // Five callers book five consecutive 1 s slots; only the first can pass
    // within 900 ms, whatever the latency (the k-th slot starts k seconds
    // after the first call); a caller that gives up leaves its slot booked.
    let tasks: Vec<_> = (0..5)
        .map(|_| {
            let pacer = pacer.clone();
            tokio::spawn(async move {
                tokio::time::timeout(Duration::from_millis(900), pacer.acquire("p", 1)).await
            })
        })
        .collect();
    let mut passed = 0;
    for task in tasks {
        if let Ok(result) = task.await.unwrap() {
            result.unwrap();
            passed += 1;
        }
    }
    assert_eq!(passed, 1);
    assert_eq!(pacer.stats().errors, 0);
    let tat = support::number(&cmd(&conn, "GET", &format!("{{{name}:p}}:lb"), &[]).await);
    let span = tat as u64 - before;
    assert!((5_000_000..6_000_000).contains(&span), "span {span} us");
}

async fn sliding_window_is_exact<C: Connection>(conn: C, _topo: Topo) {
    let name = unique("sw");
    let limiter = support::limiter(
        conn.clone(),
        name.clone(),
        Algorithm::SlidingWindow {
            limit: 5,
            window: Duration::from_secs(10),
        },
    )
    .unwrap();
    limiter.try_acquire("ip", 2).await.unwrap();
    limiter.try_acquire("ip", 3).await.unwrap();
    let denied = limiter.try_acquire("ip", 1).await.unwrap_err();
    assert!(
        denied.retry_after > Duration::from_secs(9)
            && denied.retry_after <= Duration::from_secs(10)
    );
    // One key per (limiter, key), one member per admitted call (not per
    // permit), expiring one window after the last admission.
    let key = format!("{{{name}:ip}}:sw");
    assert_eq!(cmd(&conn, "ZCARD", &key, &[]).await, Value::Int(2));
    let ttl = pttl(&conn, &key).await;
    assert!((9_000..=10_002).contains(&ttl), "pttl {ttl}");
}

async fn fixed_window_counts<C: Connection>(conn: C, _topo: Topo) {
    let name = unique("fw");
    let window = Duration::from_secs(3600);
    let limiter = support::limiter(
        conn.clone(),
        name.clone(),
        Algorithm::FixedWindow { limit: 5, window },
    )
    .unwrap();
    let start = redis_now(&conn).await / 3_600_000_000;
    let mut admitted = 0;
    for _ in 0..10 {
        if limiter.try_acquire("sms", 1).await.is_ok() {
            admitted += 1;
        }
    }
    // Unless the hour turned meanwhile (then the count restarted).
    if redis_now(&conn).await / 3_600_000_000 == start {
        assert_eq!(admitted, 5);
        let denied = limiter.try_acquire("sms", 1).await.unwrap_err();
        assert!(denied.retry_after <= window);
        let ttl = pttl(&conn, &format!("{{{name}:sms}}:fw")).await;
        assert!(ttl > 0 && ttl <= 3_600_001, "pttl {ttl}");
    }
    assert_eq!(limiter.stats().errors, 0);
}

/// `SCRIPT FLUSH` on every node between calls: the limiter never notices,
/// and the script is loaded exactly once more.
async fn script_cache_survives_flush<C: Connection>(conn: C, topo: Topo) {
    let limiter = support::limiter(
        conn,
        unique("flush"),
        Algorithm::TokenBucket {
            rate_per_sec: 1,
            burst: 3,
        },
    )
    .unwrap();
    limiter.try_acquire("k", 1).await.unwrap();
    let script = LuaScript::TokenBucket.script();
    let loads = script.loads();
    flush_scripts(topo).await;
    limiter.try_acquire("k", 1).await.unwrap();
    limiter.try_acquire("k", 1).await.unwrap();
    assert_eq!(
        limiter.try_acquire("k", 1).await.unwrap_err().reason,
        DenyReason::RateExceeded
    );
    assert_eq!(limiter.stats().errors, 0);
    assert_eq!(script.loads(), loads + 1, "one SCRIPT LOAD after the flush");
}

async fn ttl_is_never_zero<C: Connection>(conn: C, _topo: Topo) {
    let name = unique("ttl");
    let fast = Duration::from_millis(1);
    for (suffix, algorithm) in [
        (
            "tb",
            Algorithm::TokenBucket {
                rate_per_sec: u32::MAX,
                burst: 1,
            },
        ),
        (
            "lb",
            Algorithm::LeakyBucket {
                rate_per_sec: u32::MAX,
                capacity: 1,
            },
        ),
        (
            "sw",
            Algorithm::SlidingWindow {
                limit: 1,
                window: fast,
            },
        ),
        (
            "fw",
            Algorithm::FixedWindow {
                limit: 1,
                window: fast,
            },
        ),
    ] {
        let limiter = support::limiter(conn.clone(), name.clone(), algorithm).unwrap();
        limiter.try_acquire(suffix, 1).await.unwrap();
        assert_eq!(
            limiter.stats().errors,
            0,
            "{suffix}: no invalid expire time"
        );
        // -2: already expired (fine); -1 would be a key that never expires.
        let ttl = pttl(&conn, &format!("{{{name}:{suffix}}}:{suffix}")).await;
        assert!(ttl != -1 && ttl <= 2, "{suffix}: pttl {ttl}");
    }
}

/// A key of the wrong type makes the script fail (`WRONGTYPE`): the call is
/// decided by the policy, the error keeps seckill-redis's classification as
/// its source, and no key of the limiter is left without expiry.
async fn a_script_error_leaves_no_key_without_ttl<C: Connection>(conn: C, _topo: Topo) {
    let name = unique("script-error");
    for (suffix, algorithm) in [
        (
            "tb",
            Algorithm::TokenBucket {
                rate_per_sec: 1,
                burst: 5,
            },
        ),
        (
            "lb",
            Algorithm::LeakyBucket {
                rate_per_sec: 1,
                capacity: 5,
            },
        ),
        (
            "sw",
            Algorithm::SlidingWindow {
                limit: 5,
                window: Duration::from_secs(60),
            },
        ),
        (
            "fw",
            Algorithm::FixedWindow {
                limit: 5,
                window: Duration::from_secs(60),
            },
        ),
    ] {
        let limiter = support::builder(conn.clone(), name.clone(), algorithm)
            .on_failure(FailurePolicy::FailClosed)
            .build()
            .unwrap();
        limiter.try_acquire("good", 1).await.unwrap();
        // The test plants a list (with an expiry) where the script's key goes.
        let planted = format!("{{{name}:bad}}:{suffix}");
        cmd(&conn, "RPUSH", &planted, &[Arg::Str("x")]).await;
        cmd(&conn, "PEXPIRE", &planted, &[Arg::Int(60_000)]).await;
        assert_eq!(
            limiter.try_acquire("bad", 1).await.unwrap_err().reason,
            DenyReason::BackendUnavailable,
            "{suffix}"
        );
        assert_eq!(limiter.stats().errors, 1, "{suffix}");
        let error = limiter.last_error().expect("the failure is kept");
        assert!(
            matches!(error.redis_error(), seckill_redis::Error::WrongType { .. }),
            "{suffix}: {error:?}"
        );
        let source = std::error::Error::source(&*error).expect("a source");
        assert!(
            source.downcast_ref::<seckill_redis::Error>().is_some(),
            "{suffix}: the source is the seckill-redis error: {source:?}"
        );
        let kind = cmd(&conn, "TYPE", &planted, &[]).await;
        assert_eq!(
            kind.as_str(),
            Some("list"),
            "{suffix}: the script wrote nothing"
        );
    }
    for suffix in ["tb", "lb", "sw", "fw"] {
        for key in [
            format!("{{{name}:good}}:{suffix}"),
            format!("{{{name}:bad}}:{suffix}"),
        ] {
            let ttl = pttl(&conn, &key).await;
            assert!(ttl > 0, "{key}: pttl {ttl}");
            del(&conn, &key).await;
        }
    }
}

/// Two app instances (`first` and `second`, through the same or the other
/// client), four tasks each, one shared limiter.
async fn shared_total<A: Connection, B: Connection>(
    first: A,
    second: B,
    algorithm: Algorithm,
) -> (u32, Duration) {
    let name = unique("shared");
    let first = Arc::new(support::limiter(first, name.clone(), algorithm).unwrap());
    let second = Arc::new(support::limiter(second, name.clone(), algorithm).unwrap());
    let started = Instant::now();
    let admitted = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (l, a) = (first.clone(), admitted.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..40 {
                if l.try_acquire("global", 1).await.is_ok() {
                    a.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
        let (l, a) = (second.clone(), admitted.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..40 {
                if l.try_acquire("global", 1).await.is_ok() {
                    a.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(first.stats().errors + second.stats().errors, 0);
    (admitted.load(Ordering::Relaxed), started.elapsed())
}

/// `shared_total` with the second instance on redis-rs, then on fred.
async fn shared_totals<C: Connection>(
    conn: C,
    topo: Topo,
    algorithm: Algorithm,
) -> Vec<(u32, Duration)> {
    let rs = connect(Client::RedisRs, topo).await.redis_rs();
    let fred = connect(Client::Fred, topo).await.fred();
    vec![
        shared_total(conn.clone(), rs, algorithm).await,
        shared_total(conn, fred, algorithm).await,
    ]
}

async fn two_instances_never_exceed_a_sliding_window_together<C: Connection>(conn: C, topo: Topo) {
    let algorithm = Algorithm::SlidingWindow {
        limit: 50,
        window: Duration::from_secs(600),
    };
    for (admitted, _) in shared_totals(conn, topo, algorithm).await {
        assert_eq!(admitted, 50);
    }
}

async fn two_instances_never_exceed_a_token_bucket_together<C: Connection>(conn: C, topo: Topo) {
    let algorithm = Algorithm::TokenBucket {
        rate_per_sec: 1,
        burst: 50,
    };
    for (admitted, elapsed) in shared_totals(conn, topo, algorithm).await {
        // The burst, plus at most one refill per second the test ran.
        assert!(admitted >= 50);
        assert!(
            u64::from(admitted) <= 50 + elapsed.as_secs() + 1,
            "{admitted} in {elapsed:?}"
        );
    }
}

async fn two_instances_never_exceed_a_leaky_meter_together<C: Connection>(conn: C, topo: Topo) {
    let algorithm = Algorithm::LeakyBucket {
        rate_per_sec: 1,
        capacity: 50,
    };
    for (admitted, elapsed) in shared_totals(conn, topo, algorithm).await {
        assert!(admitted >= 50);
        assert!(
            u64::from(admitted) <= 50 + elapsed.as_secs() + 1,
            "{admitted} in {elapsed:?}"
        );
    }
}

/// Limiter names and keys of every shape, braces included (a `}` shortens
/// the hash tag): each call touches one key in one slot, every pair keeps
/// its own count, and on a cluster the keys spread over several slots.
async fn keys_of_every_shape_work_on_every_slot<C: Connection>(conn: C, topo: Topo) {
    let run = unique("shapes");
    let names = [
        run.clone(),
        format!("{run}{{x}}"),
        format!("{{{run}}}"),
        format!("{run}}}"),
    ];
    let keys = ["user:1", "{user:2}", "}", "{", "a}b{c", "", "ключ"];
    let algorithm = Algorithm::FixedWindow {
        limit: 2,
        window: Duration::from_secs(3600),
    };
    // The slots of the plain name's keys.
    let mut slots = BTreeSet::new();
    for name in &names {
        let limiter = support::limiter(conn.clone(), name.clone(), algorithm).unwrap();
        for key in keys {
            let redis_key = format!("{{{name}:{key}}}:fw");
            // Unless the hour turns between the first and the last call.
            let hour = redis_now(&conn).await / 3_600_000_000;
            let results = [
                limiter.try_acquire(key, 1).await,
                limiter.try_acquire(key, 1).await,
                limiter.try_acquire(key, 1).await,
            ];
            if redis_now(&conn).await / 3_600_000_000 == hour {
                assert!(results[0].is_ok() && results[1].is_ok(), "{redis_key}");
                assert_eq!(
                    results[2].unwrap_err().reason,
                    DenyReason::RateExceeded,
                    "{redis_key}"
                );
            }
            let count = cmd(&conn, "HGET", &redis_key, &[Arg::Str("c")]).await;
            assert!(count.as_int().is_some(), "{redis_key}: {count:?}");
            assert!(pttl(&conn, &redis_key).await > 0, "{redis_key}");
            if topo == Topo::Cluster {
                // The slot is the documented tag's: up to the first `}`.
                let slot = keyslot(&conn, &redis_key).await;
                let tag = &redis_key[1..];
                let tag = &tag[..tag.find('}').unwrap()];
                assert_eq!(slot, keyslot(&conn, tag).await, "{redis_key}");
                if name == &run {
                    slots.insert(slot);
                }
            }
            del(&conn, &redis_key).await;
        }
        assert_eq!(limiter.stats().errors, 0, "{name}");
    }
    if topo == Topo::Cluster {
        assert!(slots.len() > 1, "keys spread over the slots: {slots:?}");
    }
}

/// `CLUSTER KEYSLOT key`, on any node.
async fn keyslot<C: Connection>(conn: &C, key: &str) -> i64 {
    let call = Call::Command {
        name: "CLUSTER",
        keys: &[],
        args: &[Arg::Str("KEYSLOT"), Arg::Str(key)],
    };
    seckill_redis::send(conn, call)
        .await
        .unwrap()
        .as_int()
        .unwrap()
}

/// Defect 2: with `limit: u32::MAX` the sliding window script added one
/// member per permit, billions in one call, blocking the Redis server for all
/// its clients. At the maximum limit, window and `n`, a call now adds one
/// member. Returns the script calls made.
async fn sliding_window_at_the_maximum<C: Connection>(conn: C, _topo: Topo) -> u64 {
    let name = unique("max");
    let max_window = Duration::from_millis(31_536_000_000);
    let limiter = support::builder(
        conn.clone(),
        name.clone(),
        Algorithm::SlidingWindow {
            limit: u32::MAX,
            window: max_window,
        },
    )
    .timeout(Duration::from_secs(60))
    .on_failure(FailurePolicy::FailClosed)
    .build()
    .unwrap();
    let hang = Duration::from_secs(30);
    let mut script_calls = 0;
    // The whole limit in one call, then a denial at the maximum.
    tokio::time::timeout(hang, limiter.try_acquire("k", u32::MAX))
        .await
        .expect("a call at the maximum hung")
        .unwrap();
    let denied = tokio::time::timeout(hang, limiter.try_acquire("k", u32::MAX))
        .await
        .expect("a call at the maximum hung")
        .unwrap_err();
    assert_eq!(denied.reason, DenyReason::RateExceeded);
    assert!(
        denied.retry_after > max_window - Duration::from_secs(60)
            && denied.retry_after <= max_window
    );
    script_calls += 2;
    // 300 more admitted calls of random sizes on another key, then denials.
    let mut granted = 0u64;
    for i in 0..300u32 {
        let n = 1 + i.wrapping_mul(2_654_435_761) % 1_000_000;
        limiter.try_acquire("many", n).await.unwrap();
        granted += u64::from(n);
    }
    for _ in 0..20 {
        let n = u32::MAX - 1000;
        assert!(limiter.try_acquire("many", n).await.is_err());
    }
    script_calls += 320;
    assert_eq!(limiter.stats().errors, 0);
    // One member per admitted call, whatever n.
    let (k, many) = (format!("{{{name}:k}}:sw"), format!("{{{name}:many}}:sw"));
    assert_eq!(cmd(&conn, "ZCARD", &k, &[]).await, Value::Int(1));
    assert_eq!(cmd(&conn, "ZCARD", &many, &[]).await, Value::Int(300));
    let newest = zrange_with_scores(&conn, &many, -1, -1).await;
    assert_eq!(
        newest[0].0,
        granted.to_string(),
        "the running total of permits"
    );
    // MEMORY USAGE names its key after a subcommand: a script routes it.
    let memory = seckill_redis::Script::new("return redis.call('MEMORY', 'USAGE', KEYS[1])")
        .run(&conn, &[&many], &[])
        .await
        .unwrap()
        .as_int()
        .unwrap();
    assert!(memory < 64 * 1024, "{memory} bytes for 300 members");
    let ttl = pttl(&conn, &k).await;
    assert!(ttl > 31_535_000_000 && ttl <= 31_536_000_002, "pttl {ttl}");
    del(&conn, &k).await;
    del(&conn, &many).await;
    script_calls
}

on_every_topology!(
    token_bucket_burst_then_rate,
    go_zero_zero_ttl_case_works,
    leaky_meter,
    pacer_spaces_callers,
    sliding_window_is_exact,
    fixed_window_counts,
    script_cache_survives_flush,
    ttl_is_never_zero,
    a_script_error_leaves_no_key_without_ttl,
    two_instances_never_exceed_a_sliding_window_together,
    two_instances_never_exceed_a_token_bucket_together,
    two_instances_never_exceed_a_leaky_meter_together,
    keys_of_every_shape_work_on_every_slot,
    sliding_window_at_the_maximum,
);

/// Calls per command on a server of this test's own (`INFO commandstats`).
async fn command_calls(conn: &mut redis::aio::MultiplexedConnection) -> HashMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .unwrap();
    info.lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_string(), calls))
        })
        .collect()
}

/// Defect 2 again, counting the commands the scripts run (`INFO
/// commandstats`), which is exact only on a `redis-server` of this test's
/// own (and a regression harms nobody).
async fn sliding_window_at_the_maximum_runs_bounded_commands(client: Client) {
    let redis = PrivateRedis::start(Topo::Single);
    let url = redis.url();
    let mut stats = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let conn = connect_url(client, &url).await;
    let before = command_calls(&mut stats).await;
    let script_calls = match conn {
        conn @ support::Conn::RedisRs(_) => {
            sliding_window_at_the_maximum(conn.redis_rs(), Topo::Single).await
        }
        conn @ support::Conn::Fred(_) => {
            sliding_window_at_the_maximum(conn.fred(), Topo::Single).await
        }
    };
    let after = command_calls(&mut stats).await;
    let delta = |c: &str| after.get(c).copied().unwrap_or(0) - before.get(c).copied().unwrap_or(0);
    assert_eq!(delta("zadd"), 301, "one member per admitted call");
    // Every command the scripts ran (TIME, ZRANGE, …): bounded per call; a
    // denial's binary search over 300 members takes about 9 probes. The
    // test's own reads and clients' handshakes are left out.
    let total: u64 = after
        .iter()
        .filter(|(c, _)| {
            ![
                "info",
                "evalsha",
                "eval",
                "script|load",
                "hello",
                "client|setinfo",
                "client|setname",
                "ping",
                "select",
                "zcard",
                "zrange",
                "pttl",
                "del",
                "memory|usage",
            ]
            .contains(&c.as_str())
        })
        .map(|(c, _)| after[c] - before.get(c).copied().unwrap_or(0))
        .sum();
    let zrange = delta("zrange");
    assert!(
        total + zrange <= script_calls * 20,
        "{total} + {zrange} commands for {script_calls} calls: {after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sliding_window_at_the_maximum_runs_bounded_commands_on_redis_rs() {
    sliding_window_at_the_maximum_runs_bounded_commands(Client::RedisRs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sliding_window_at_the_maximum_runs_bounded_commands_on_fred() {
    sliding_window_at_the_maximum_runs_bounded_commands(Client::Fred).await;
}

/// A connection for limiters that must never reach Redis.
#[derive(Clone)]
struct Offline;
impl Connection for Offline {
    async fn send(&self, call: Call<'_>) -> Result<Value, seckill_redis::Error> {
        unreachable!("never called: {call:?}")
    }
}

/// A connection whose every call fails, as Redis down would.
#[derive(Clone)]
struct Down;
impl Connection for Down {
    async fn send(&self, _call: Call<'_>) -> Result<Value, seckill_redis::Error> {
        Err(seckill_redis::Error::connection(std::io::Error::other(
            "connection refused",
        )))
    }
}

#[tokio::test]
async fn bad_configuration_is_an_error() {
    let err = |a| RedisLimiter::new(Offline, "x", a).unwrap_err().to_string();
    assert_eq!(
        err(Algorithm::TokenBucket {
            rate_per_sec: 0,
            burst: 1
        }),
        "rate_per_sec must be 1 to 4294967295, got 0"
    );
    assert_eq!(
        err(Algorithm::LeakyBucket {
            rate_per_sec: 1,
            capacity: 0
        }),
        "capacity must be 1 to 4294967295, got 0"
    );
    assert_eq!(
        err(Algorithm::SlidingWindow {
            limit: 1,
            window: Duration::from_micros(10)
        }),
        "window must be 1 ms to 365 days (31536000000 ms), got 10µs"
    );
    assert_eq!(
        err(Algorithm::TokenBucket {
            rate_per_sec: 1,
            burst: u32::MAX
        }),
        "burst / rate_per_sec (the full refill time) must be at most 365 days (31536000 s), \
         got 4294967295s"
    );
    // n above the burst and n == 0 never reach Redis, for the pacer too.
    let limiter = RedisLimiter::new(
        Offline,
        "x",
        Algorithm::TokenBucket {
            rate_per_sec: 1,
            burst: 2,
        },
    )
    .unwrap();
    assert_eq!(
        limiter.try_acquire("k", 3).await.unwrap_err().reason,
        DenyReason::ExceedsCapacity
    );
    limiter.try_acquire("k", 0).await.unwrap();
    let pacer = RedisLimiter::new(
        Offline,
        "x",
        Algorithm::LeakyBucket {
            rate_per_sec: 1,
            capacity: 2,
        },
    )
    .unwrap();
    assert_eq!(
        pacer.acquire("k", 3).await.unwrap_err().reason,
        DenyReason::ExceedsCapacity
    );
}

/// Defect 3: a window of `Duration::MAX` used to pass validation, then every
/// call failed in `PEXPIRE` after the script had written its key.
#[test]
fn windows_beyond_365_days_are_rejected() {
    for window in [
        Duration::MAX,
        Duration::from_secs(u64::MAX),
        Duration::from_millis(31_536_000_001),
    ] {
        for algorithm in [
            Algorithm::SlidingWindow { limit: 1, window },
            Algorithm::FixedWindow { limit: 1, window },
        ] {
            let err = RedisLimiter::new(Offline, "x", algorithm).unwrap_err();
            assert!(
                matches!(err, ConfigError::DurationOutOfRange { field: "window", got, .. } if got == window),
                "{err:?}"
            );
        }
    }
    RedisLimiter::new(
        Offline,
        "x",
        Algorithm::SlidingWindow {
            limit: 1,
            window: Duration::from_millis(31_536_000_000),
        },
    )
    .unwrap();
}

#[test]
fn builder_ranges_name_the_field() {
    let bucket = Algorithm::TokenBucket {
        rate_per_sec: 1,
        burst: 1,
    };
    let build =
        |b: seckill_ratelimit::RedisLimiterBuilder<Offline>| b.build().unwrap_err().to_string();
    assert_eq!(
        build(RedisLimiter::builder(Offline, "x", bucket).timeout(Duration::ZERO)),
        "timeout must be 1 ms to 60 s, got 0ns"
    );
    assert_eq!(
        build(RedisLimiter::builder(Offline, "x", bucket).timeout(Duration::from_secs(61))),
        "timeout must be 1 ms to 60 s, got 61s"
    );
    assert_eq!(
        build(
            RedisLimiter::builder(Offline, "x", bucket).probe_interval(Duration::from_secs(86_401))
        ),
        "probe_interval must be 0 to 24 hours, got 86401s"
    );
    assert_eq!(
        build(
            RedisLimiter::builder(Offline, "x", bucket)
                .on_failure(FailurePolicy::Fallback { instances: 0 })
        ),
        "instances must be 1 to 65536, got 0"
    );
    RedisLimiter::builder(Offline, "x", bucket)
        .on_failure(FailurePolicy::Fallback { instances: 65_536 })
        .timeout(Duration::from_secs(60))
        .probe_interval(Duration::ZERO)
        .build()
        .unwrap();
}

/// Defect 1: `new` built the in-process fallback eagerly (256 MiB for a
/// sliding window of 16,777,216), even under fail-closed, where it is never
/// used. It is built on the first call the fallback policy decides.
#[tokio::test]
async fn the_fallback_is_built_only_when_the_policy_needs_it() {
    let huge = Algorithm::SlidingWindow {
        limit: seckill_ratelimit::MAX_SLIDING_LIMIT,
        window: Duration::from_secs(3600),
    };
    let closed = RedisLimiter::builder(Down, "x", huge)
        .on_failure(FailurePolicy::FailClosed)
        .build()
        .unwrap();
    assert!(!closed.fallback_is_built());
    assert_eq!(
        closed.try_acquire("k", 1).await.unwrap_err().reason,
        DenyReason::BackendUnavailable
    );
    assert!(!closed.fallback_is_built(), "fail-closed never builds it");
    let error = closed.last_error().expect("the failure is kept");
    assert!(
        matches!(error.redis_error(), seckill_redis::Error::Connection { .. }),
        "{error:?}"
    );
    assert!(error.redis_error().is_retryable());
    let open = RedisLimiter::builder(Down, "x", huge)
        .on_failure(FailurePolicy::FailOpen)
        .build()
        .unwrap();
    open.try_acquire("k", 1).await.unwrap();
    assert!(!open.fallback_is_built());

    // The default policy (fallback) builds it on the first failure only.
    let fallback = RedisLimiter::new(Down, "x", huge).unwrap();
    assert!(!fallback.fallback_is_built());
    fallback.try_acquire("k", 1).await.unwrap();
    assert!(fallback.fallback_is_built());
    assert_eq!(fallback.stats().decided_by_policy, 1);
}
