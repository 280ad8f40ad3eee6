//! The behaviour suite, written once and run through every client adapter
//! (`tests/redis_rs.rs`, `tests/fred.rs`) against the real Redis.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    dead_code,
    unreachable_pub
)]

mod conflict;
pub mod props;
#[allow(unused_imports)]
pub use conflict::*;

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use futures::future::join_all;
use redis::AsyncCommands;
use seckill_stock_lua::{
    Connection, Deduction, Error, InvalidInput, LogKind, MAX_ID_LEN, Outcome, Refund, ScriptMode,
    StockStore,
};

/// Which deployment a test runs on; the test script starts all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topo {
    Single,
    Cluster,
    Sentinel,
}

impl Topo {
    /// The URL: `REDIS_URL`, `REDIS_CLUSTER_URL`, `REDIS_SENTINEL_URL`,
    /// defaulting to what `scripts/redis-topologies.sh` starts.
    pub fn url(self) -> String {
        let (var, default) = match self {
            Topo::Single => ("REDIS_URL", "redis://127.0.0.1:6379"),
            Topo::Cluster => (
                "REDIS_CLUSTER_URL",
                "redis+cluster://127.0.0.1:17001,127.0.0.1:17002,127.0.0.1:17003,127.0.0.1:17004,127.0.0.1:17005,127.0.0.1:17006",
            ),
            Topo::Sentinel => (
                "REDIS_SENTINEL_URL",
                "redis+sentinel://127.0.0.1:17111,127.0.0.1:17112,127.0.0.1:17113/seckill",
            ),
        };
        std::env::var(var).unwrap_or_else(|_| default.to_owned())
    }

    /// Property-test cases: the full count on a single node, a third on
    /// the other topologies (the same code paths, more hops).
    pub fn cases(self, single: u32) -> u32 {
        match self {
            Topo::Single => single,
            _ => single.div_ceil(3),
        }
    }
}

pub fn unreachable(topo: Topo, err: impl std::fmt::Display) -> ! {
    panic!(
        "{topo:?} Redis is not reachable at {} ({err}). Start it with `bash scripts/services.sh` \
         and `bash scripts/redis-topologies.sh` (scripts/test.sh runs both).",
        topo.url()
    )
}

/// Thousands of requests queue on a few connections of a shared two-core
/// machine: allow more than the layer's default 5 s per response. (A
/// timeout is retried with the same request id anyway, see `deduct_all`.)
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// A client adapter under test: how to open one connection to a topology.
pub trait Client: Connection {
    fn connect(topo: Topo) -> impl Future<Output = Self> + Send;
}

/// A plain redis-rs connection for setup and inspection, whatever the
/// client under test: the server, the cluster (commands routed by key,
/// `SCRIPT FLUSH` and `FUNCTION DELETE` to every primary), or the
/// Sentinel group's primary of the moment.
pub async fn admin(topo: Topo) -> Admin {
    let url = topo.url();
    match seckill_redis::Topology::parse(&url).unwrap_or_else(|e| unreachable(topo, e)) {
        seckill_redis::Topology::Single { url } => {
            let client = redis::Client::open(url).unwrap_or_else(|e| unreachable(topo, e));
            let config =
                redis::AsyncConnectionConfig::new().set_response_timeout(Some(RESPONSE_TIMEOUT));
            Admin::Node(
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .unwrap_or_else(|e| unreachable(topo, e)),
            )
        }
        t @ seckill_redis::Topology::Cluster { .. } => Admin::Cluster(
            redis::cluster::ClusterClient::builder(t.node_urls())
                .response_timeout(RESPONSE_TIMEOUT)
                .build()
                .unwrap_or_else(|e| unreachable(topo, e))
                .get_async_connection()
                .await
                .unwrap_or_else(|e| unreachable(topo, e)),
        ),
        seckill_redis::Topology::Sentinel {
            sentinels, master, ..
        } => {
            let urls: Vec<String> = sentinels.iter().map(|s| format!("redis://{s}")).collect();
            let mut client = redis::sentinel::SentinelClient::build(
                urls,
                master,
                None,
                redis::sentinel::SentinelServerType::Master,
            )
            .unwrap_or_else(|e| unreachable(topo, e));
            Admin::Node(
                client
                    .get_async_connection()
                    .await
                    .unwrap_or_else(|e| unreachable(topo, e)),
            )
        }
        _ => unreachable(topo, "unknown topology"),
    }
}

/// See [`admin`].
#[derive(Clone)]
pub enum Admin {
    Node(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl redis::aio::ConnectionLike for Admin {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Admin::Node(c) => c.req_packed_command(cmd),
            Admin::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Admin::Node(c) => c.req_packed_commands(cmd, offset, count),
            Admin::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        0
    }
}

/// A fresh namespace per test: all engineers share one Redis server.
pub fn namespace() -> String {
    format!("test-{}", uuid::Uuid::new_v4().simple())
}

/// Deletes the keys of a test namespace.
pub async fn cleanup(topo: Topo, ns: &str) {
    let mut admin = admin(topo).await;
    // KEYS reaches every primary of a cluster; a namespace is one slot, so
    // its keys can go in one DEL.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("seckill:{{{ns}}}:*"))
        .query_async(&mut admin)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: () = admin.del(keys).await.unwrap();
    }
}

pub async fn store<C: Client>(topo: Topo, ns: &str) -> StockStore<C> {
    StockStore::new(C::connect(topo).await, ns).unwrap()
}

/// `connections` stores over separate connections, same namespace.
pub async fn stores<C: Client>(topo: Topo, ns: &str, connections: usize) -> Vec<StockStore<C>> {
    let mut all = Vec::with_capacity(connections);
    for _ in 0..connections {
        all.push(store::<C>(topo, ns).await);
    }
    all
}

pub fn order(
    request_id: &str,
    user_id: &str,
    items: &[(&str, u64)],
    limit: Option<u64>,
) -> Deduction {
    Deduction {
        request_id: request_id.to_owned(),
        user_id: user_id.to_owned(),
        items: items.iter().map(|(s, q)| ((*s).to_owned(), *q)).collect(),
        per_user_limit: limit,
    }
}

/// Runs `n` deductions concurrently (one task each), spread over `stores`.
async fn deduct_all<C: Client>(
    stores: &[StockStore<C>],
    orders: Vec<Deduction>,
) -> Vec<seckill_stock_lua::Decision> {
    let tasks: Vec<_> = orders
        .into_iter()
        .enumerate()
        .map(|(i, order)| {
            let store = stores[i % stores.len()].clone();
            tokio::spawn(async move {
                // A Redis error is ambiguous (the script may have run): the
                // caller retries with the same request id, as documented.
                let mut attempts = 0;
                loop {
                    match store.deduct(&order).await {
                        Err(Error::Redis { .. }) if attempts < 20 => attempts += 1,
                        other => return other.unwrap(),
                    }
                }
            })
        })
        .collect();
    join_all(tasks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect()
}

/// Issue test 1: 10,000 concurrent single-unit buyers over 16 connections
/// against stock 1,000 sell exactly 1,000 units, and the log holds exactly them.
pub async fn no_oversell<C: Client>(topo: Topo, mode: ScriptMode) {
    let ns = namespace();
    let stores: Vec<_> = stores::<C>(topo, &ns, 16)
        .await
        .into_iter()
        .map(|s| s.with_script_mode(mode))
        .collect();
    stores[0].set_stock("hot", 1_000).await.unwrap();
    let orders = (0..10_000)
        .map(|i| order(&format!("r{i}"), &format!("u{i}"), &[("hot", 1)], Some(1)))
        .collect();
    let decisions = deduct_all(&stores, orders).await;

    let deducted: HashSet<usize> = decisions
        .iter()
        .enumerate()
        .filter(|(_, d)| d.outcome == Outcome::Deducted)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(deducted.len(), 1_000);
    assert!(
        decisions
            .iter()
            .filter(|d| d.outcome != Outcome::Deducted)
            .all(|d| d.outcome == Outcome::SoldOut { sku: "hot".into() })
    );
    let store = &stores[0];
    assert_eq!(store.stock("hot").await.unwrap(), 0);
    assert!(store.is_sold_out("hot").await.unwrap());
    assert_eq!(store.sold_out().await.unwrap(), vec!["hot".to_owned()]);
    assert_eq!(store.deduction_log_len("hot").await.unwrap(), 1_000);

    // The log names exactly the requests that were told "deducted".
    let mut logged = HashSet::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .deduction_log("hot", after.as_deref(), 300)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        for entry in &page {
            assert_eq!(entry.kind, LogKind::Deduction);
            assert_eq!(entry.quantity, 1);
            assert_eq!(entry.user_id, format!("u{}", &entry.request_id[1..]));
            assert!(entry.time_ms > 1_600_000_000_000);
            logged.insert(entry.request_id[1..].parse::<usize>().unwrap());
        }
    }
    assert_eq!(logged, deducted);
    cleanup(topo, &ns).await;
}

/// Issue test 2: one request id sent 50 times at once deducts once, and all
/// 50 callers get the same outcome; 49 of them are told it is a replay.
pub async fn same_request_id_deducts_once<C: Client>(topo: Topo) {
    let ns = namespace();
    let stores = stores::<C>(topo, &ns, 4).await;
    stores[0].set_stock("a", 10).await.unwrap();
    let orders = vec![order("same", "u", &[("a", 3)], None); 50];
    let decisions = deduct_all(&stores, orders).await;
    assert!(decisions.iter().all(|d| d.outcome == Outcome::Deducted));
    assert_eq!(decisions.iter().filter(|d| !d.replayed).count(), 1);
    assert_eq!(stores[0].stock("a").await.unwrap(), 7);
    assert_eq!(stores[0].deduction_log_len("a").await.unwrap(), 1);
    assert_eq!(stores[0].bought("a", "u").await.unwrap(), 3);

    // A refusal is stored too: a retry after a restock still gets it.
    stores[0].set_stock("b", 0).await.unwrap();
    let refused = order("refused", "u", &[("b", 1)], None);
    let first = stores[0].deduct(&refused).await.unwrap();
    assert_eq!(first.outcome, Outcome::SoldOut { sku: "b".into() });
    stores[0].add_stock("b", 5).await.unwrap();
    let retry = stores[1].deduct(&refused).await.unwrap();
    assert_eq!(retry.outcome, first.outcome);
    assert!(retry.replayed);
    assert_eq!(stores[0].stock("b").await.unwrap(), 5);
    cleanup(topo, &ns).await;
}

/// Issue test 3: a multi-SKU request with one SKU short deducts nothing
/// anywhere; under concurrency pairs sell exactly as many as the scarcer SKU.
pub async fn multi_sku_all_or_nothing<C: Client>(topo: Topo) {
    let ns = namespace();
    let store = store::<C>(topo, &ns).await;
    for (sku, units) in [("a", 10), ("b", 1), ("c", 10)] {
        store.set_stock(sku, units).await.unwrap();
    }
    let short = order("r1", "u", &[("a", 2), ("b", 2), ("c", 2)], None);
    let d = store.deduct(&short).await.unwrap();
    assert_eq!(
        d.outcome,
        Outcome::Insufficient {
            sku: "b".into(),
            available: 1
        }
    );
    for (sku, units) in [("a", 10), ("b", 1), ("c", 10)] {
        assert_eq!(store.stock(sku).await.unwrap(), units, "{sku} changed");
        assert_eq!(store.deduction_log_len(sku).await.unwrap(), 0);
        assert_eq!(store.bought(sku, "u").await.unwrap(), 0);
    }
    assert_eq!(store.refund("r1").await.unwrap(), Refund::NothingDeducted);
    assert_eq!(store.stock("b").await.unwrap(), 1);

    let whole = order("r2", "u", &[("a", 2), ("b", 1), ("c", 3)], None);
    assert_eq!(
        store.deduct(&whole).await.unwrap().outcome,
        Outcome::Deducted
    );
    assert_eq!(store.stock("a").await.unwrap(), 8);
    assert_eq!(store.stock("b").await.unwrap(), 0);
    assert_eq!(store.stock("c").await.unwrap(), 7);
    assert!(store.is_sold_out("b").await.unwrap());
    assert!(!store.is_sold_out("a").await.unwrap());

    // Concurrency: 1,000 buyers of the pair (x, y); y is scarcer.
    let stores = stores::<C>(topo, &ns, 8).await;
    store.set_stock("x", 300).await.unwrap();
    store.set_stock("y", 120).await.unwrap();
    let orders = (0..1_000)
        .map(|i| {
            order(
                &format!("p{i}"),
                &format!("u{i}"),
                &[("x", 1), ("y", 1)],
                None,
            )
        })
        .collect();
    let decisions = deduct_all(&stores, orders).await;
    let sold = decisions.iter().filter(|d| d.outcome.is_deducted()).count();
    assert_eq!(sold, 120);
    assert_eq!(store.stock("x").await.unwrap(), 180);
    assert_eq!(store.stock("y").await.unwrap(), 0);
    assert_eq!(store.deduction_log_len("x").await.unwrap(), 120);
    assert_eq!(store.deduction_log_len("y").await.unwrap(), 120);
    cleanup(topo, &ns).await;
}

/// Issue test 4: a refund puts back exactly what was taken, once, even when
/// 100 refunds of one request race; an unknown id is reported and cancels a
/// late deduction with that id.
pub async fn refund_exactly_once<C: Client>(topo: Topo) {
    let ns = namespace();
    let stores = stores::<C>(topo, &ns, 4).await;
    let store = &stores[0];
    store.set_stock("a", 5).await.unwrap();
    store.set_stock("b", 2).await.unwrap();
    let buy = order("r1", "alice", &[("a", 3), ("b", 2)], Some(5));
    assert_eq!(store.request("r1").await.unwrap(), None);
    assert!(store.deduct(&buy).await.unwrap().outcome.is_deducted());
    assert!(store.is_sold_out("b").await.unwrap());
    let record = store.request("r1").await.unwrap().unwrap();
    assert_eq!(record.outcome, Outcome::Deducted);
    assert_eq!(record.user_id, "alice");
    let mut taken = record.items.clone();
    taken.sort();
    assert_eq!(taken, vec![("a".to_owned(), 3), ("b".to_owned(), 2)]);
    assert!(!record.refunded);

    let refunds = join_all((0..100).map(|i| {
        let store = stores[i % stores.len()].clone();
        tokio::spawn(async move { store.refund("r1").await.unwrap() })
    }))
    .await;
    let refunds: Vec<Refund> = refunds.into_iter().map(Result::unwrap).collect();
    let done: Vec<_> = refunds
        .iter()
        .filter(|r| matches!(r, Refund::Refunded { .. }))
        .collect();
    assert_eq!(done.len(), 1);
    let Refund::Refunded { items } = done[0] else {
        unreachable!()
    };
    let mut items = items.clone();
    items.sort();
    assert_eq!(items, vec![("a".to_owned(), 3), ("b".to_owned(), 2)]);
    assert_eq!(
        refunds
            .iter()
            .filter(|r| **r == Refund::AlreadyRefunded)
            .count(),
        99
    );
    assert_eq!(store.stock("a").await.unwrap(), 5);
    assert_eq!(store.stock("b").await.unwrap(), 2);
    assert!(!store.is_sold_out("b").await.unwrap());
    assert_eq!(store.bought("a", "alice").await.unwrap(), 0);
    assert_eq!(store.refund("r1").await.unwrap(), Refund::AlreadyRefunded);
    assert!(store.request("r1").await.unwrap().unwrap().refunded);
    let log = store.deduction_log("a", None, 10).await.unwrap();
    assert_eq!(
        log.iter().map(|e| (e.kind, e.quantity)).collect::<Vec<_>>(),
        vec![(LogKind::Deduction, 3), (LogKind::Refund, 3)]
    );
    // The deduction replays as deducted, and takes nothing again.
    let replay = store.deduct(&buy).await.unwrap();
    assert!(replay.replayed && replay.outcome.is_deducted());
    assert_eq!(store.stock("a").await.unwrap(), 5);

    // Unknown id: reported, and a late deduction with it is cancelled.
    assert_eq!(store.refund("ghost").await.unwrap(), Refund::NotFound);
    assert_eq!(store.refund("ghost").await.unwrap(), Refund::NotFound);
    let late = store
        .deduct(&order("ghost", "bob", &[("a", 1)], None))
        .await
        .unwrap();
    assert_eq!(late.outcome, Outcome::Cancelled);
    let tombstone = store.request("ghost").await.unwrap().unwrap();
    assert_eq!(tombstone.outcome, Outcome::Cancelled);
    assert!(tombstone.items.is_empty());
    // A refused request keeps its answer.
    let refused = store
        .deduct(&order("r2", "carol", &[("a", 9)], None))
        .await
        .unwrap();
    assert_eq!(
        store.request("r2").await.unwrap().unwrap().outcome,
        refused.outcome
    );
    assert_eq!(store.stock("a").await.unwrap(), 5);
    assert_eq!(store.deduction_log_len("a").await.unwrap(), 2);
    cleanup(topo, &ns).await;
}

/// Issue test 5: one user, 100 concurrent requests, limit 1 → one deduction.
pub async fn per_user_limit_under_concurrency<C: Client>(topo: Topo) {
    let ns = namespace();
    let stores = stores::<C>(topo, &ns, 8).await;
    stores[0].set_stock("a", 1_000).await.unwrap();
    let orders = (0..100)
        .map(|i| order(&format!("r{i}"), "greedy", &[("a", 1)], Some(1)))
        .collect();
    let decisions = deduct_all(&stores, orders).await;
    assert_eq!(
        decisions.iter().filter(|d| d.outcome.is_deducted()).count(),
        1
    );
    assert_eq!(
        decisions
            .iter()
            .filter(|d| d.outcome
                == Outcome::LimitExceeded {
                    sku: "a".into(),
                    bought: 1
                })
            .count(),
        99
    );
    assert_eq!(stores[0].stock("a").await.unwrap(), 999);
    assert_eq!(stores[0].bought("a", "greedy").await.unwrap(), 1);

    // Limit 5 with 2 units per request: 2 requests pass (4 units), then 4 + 2 > 5.
    let orders = (0..50)
        .map(|i| order(&format!("q{i}"), "pair", &[("a", 2)], Some(5)))
        .collect();
    let decisions = deduct_all(&stores, orders).await;
    assert_eq!(
        decisions.iter().filter(|d| d.outcome.is_deducted()).count(),
        2
    );
    assert_eq!(stores[0].bought("a", "pair").await.unwrap(), 4);

    // A refund gives the units back to the user's allowance.
    let first = decisions
        .iter()
        .position(|d| d.outcome.is_deducted())
        .unwrap();
    assert!(matches!(
        stores[0].refund(&format!("q{first}")).await.unwrap(),
        Refund::Refunded { .. }
    ));
    assert_eq!(stores[0].bought("a", "pair").await.unwrap(), 2);
    let again = order("q-again", "pair", &[("a", 2)], Some(5));
    assert!(
        stores[0]
            .deduct(&again)
            .await
            .unwrap()
            .outcome
            .is_deducted()
    );
    assert_eq!(stores[0].stock("a").await.unwrap(), 999 - 4);

    // Several items: the first SKU over the limit is named, nothing is taken.
    stores[0].set_stock("b", 10).await.unwrap();
    let both = order("two-skus", "pair", &[("b", 1), ("a", 2)], Some(5));
    assert_eq!(
        stores[0].deduct(&both).await.unwrap().outcome,
        Outcome::LimitExceeded {
            sku: "a".into(),
            bought: 4
        }
    );
    assert_eq!(stores[0].stock("b").await.unwrap(), 10);
    assert_eq!(stores[0].bought("b", "pair").await.unwrap(), 0);
    cleanup(topo, &ns).await;
}

/// Issue test 6: `SCRIPT FLUSH` between calls (or a deleted function
/// library) is invisible to callers.
pub async fn script_cache_survives_flush<C: Client>(topo: Topo) {
    let ns = namespace();
    let store = store::<C>(topo, &ns).await;
    let mut admin = admin(topo).await;
    store.set_stock("a", 100).await.unwrap();
    for i in 0..5 {
        let _: () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut admin)
            .await
            .unwrap();
        let d = store
            .deduct(&order(&format!("r{i}"), "u", &[("a", 1)], None))
            .await
            .unwrap();
        assert!(d.outcome.is_deducted());
        let _: () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut admin)
            .await
            .unwrap();
        store.add_stock("a", 1).await.unwrap();
        let _: () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut admin)
            .await
            .unwrap();
        assert!(matches!(
            store.refund(&format!("r{i}")).await.unwrap(),
            Refund::Refunded { .. }
        ));
    }
    assert_eq!(store.stock("a").await.unwrap(), 105);

    // Functions: delete the library under the store; the next call reloads it.
    let functions = store.clone().with_script_mode(ScriptMode::Functions);
    assert!(
        functions
            .deduct(&order("f1", "u", &[("a", 1)], None))
            .await
            .unwrap()
            .outcome
            .is_deducted()
    );
    // Another test may have deleted it already; either way it is gone now.
    delete_libraries(topo).await;
    assert!(
        functions
            .deduct(&order("f2", "u", &[("a", 1)], None))
            .await
            .unwrap()
            .outcome
            .is_deducted()
    );
    assert_eq!(store.stock("a").await.unwrap(), 103);
    cleanup(topo, &ns).await;
}

/// Regression: in Functions mode, 2,000 callers that find the library
/// missing together used to load it hundreds of times (one load per caller
/// that did not see the "loading" flag in time). Now one loads it while the
/// others wait.
pub async fn script_cache_library_loads_once<C: Client>(topo: Topo) {
    let ns = namespace();
    let store = store::<C>(topo, &ns)
        .await
        .with_script_mode(ScriptMode::Functions);
    store.set_stock("a", 2_000).await.unwrap();
    delete_libraries(topo).await;
    let before = store.script_loads();
    let calls = (0..2_000).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .deduct(&order(
                    &format!("r{i}"),
                    &format!("u{i}"),
                    &[("a", 1)],
                    None,
                ))
                .await
        })
    });
    for result in join_all(calls).await {
        assert!(result.unwrap().unwrap().outcome.is_deducted());
    }
    assert_eq!(store.stock("a").await.unwrap(), 0);
    assert_eq!(
        store.script_loads() - before,
        1,
        "2,000 callers found the library missing: one FUNCTION LOAD"
    );
    cleanup(topo, &ns).await;
}

/// Deletes every library of this crate on every primary.
async fn delete_libraries(topo: Topo) {
    let mut admin = admin(topo).await;
    let libraries: redis::Value = redis::cmd("FUNCTION")
        .arg("LIST")
        .arg("LIBRARYNAME")
        .arg("seckill_stock_*")
        .query_async(&mut admin)
        .await
        .unwrap();
    let mut names = Vec::new();
    library_names(&libraries, &mut names);
    for name in names {
        let _: Result<(), _> = redis::cmd("FUNCTION")
            .arg("DELETE")
            .arg(&name)
            .query_async(&mut admin)
            .await;
    }
}

/// Collects the values of `library_name` fields in a `FUNCTION LIST` reply.
fn library_names(value: &redis::Value, out: &mut Vec<String>) {
    use redis::Value as V;
    let items: Vec<&V> = match value {
        V::Array(items) | V::Set(items) => items.iter().collect(),
        V::Map(pairs) => pairs.iter().flat_map(|(k, v)| [k, v]).collect(),
        _ => return,
    };
    let mut prev_was_name_field = false;
    for item in items {
        let text = match item {
            V::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
            V::SimpleString(s) => Some(s.clone()),
            _ => None,
        };
        if prev_was_name_field && let Some(name) = &text {
            out.push(name.clone());
        }
        prev_was_name_field = text.as_deref() == Some("library_name");
        library_names(item, out);
    }
}

/// Bad input is refused before Redis is touched, each with its own error.
pub async fn bad_input_is_refused<C: Client>(topo: Topo) {
    let ns = namespace();
    let store = store::<C>(topo, &ns).await;
    store.set_stock("a", 10).await.unwrap();
    type Check = fn(&InvalidInput) -> bool;
    let cases: Vec<(Deduction, Check)> = vec![
        (order("r", "u", &[], None), |e| {
            *e == InvalidInput::EmptyItems
        }),
        (order("r", "u", &[("a", 0)], None), |e| {
            matches!(
                e,
                InvalidInput::OutOfRange {
                    value: 0,
                    min: 1,
                    ..
                }
            )
        }),
        (
            order("r", "u", &[("a", 1), ("a", 1)], None),
            |e| matches!(e, InvalidInput::DuplicateSku { sku } if sku == "a"),
        ),
        (
            order(&"x".repeat(MAX_ID_LEN + 1), "u", &[("a", 1)], None),
            |e| {
                matches!(
                    e,
                    InvalidInput::IdTooLong {
                        field: "request id",
                        ..
                    }
                )
            },
        ),
        (order("r", "", &[("a", 1)], None), |e| {
            matches!(e, InvalidInput::EmptyId { field: "user id" })
        }),
        (
            order("r", "u", &[("a", 1)], Some(0)),
            |e| matches!(e, InvalidInput::OutOfRange { field, value: 0, .. } if field == "per_user_limit"),
        ),
    ];
    for (bad, check) in cases {
        match store.deduct(&bad).await {
            Err(Error::Invalid(e)) => assert!(check(&e), "wrong error {e:?}"),
            other => panic!("{bad:?} gave {other:?}"),
        }
    }
    // The message says what to do.
    let err = store
        .deduct(&order("r", "u", &[("a", 1), ("a", 2)], None))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("merge"), "{err}");
    assert!(matches!(
        StockStore::new(C::connect(topo).await, "a{b}"),
        Err(Error::Invalid(InvalidInput::Namespace { .. }))
    ));
    assert!(matches!(
        store.clone().with_dedup_ttl(Duration::ZERO),
        Err(Error::Invalid(InvalidInput::DedupTtl { .. }))
    ));
    assert!(matches!(
        store.set_stock("a", seckill_stock_lua::MAX_STOCK + 1).await,
        Err(Error::Invalid(InvalidInput::OutOfRange {
            min: 0,
            max: seckill_stock_lua::MAX_STOCK,
            ..
        }))
    ));
    assert_eq!(store.stock("a").await.unwrap(), 10);
    assert_eq!(store.deduction_log_len("a").await.unwrap(), 0);

    // A SKU without stock is an error, and writes nothing: the same request
    // id works once the stock is set.
    let unknown = order("r-unknown", "u", &[("a", 1), ("nope", 1)], None);
    assert!(matches!(
        store.deduct(&unknown).await,
        Err(Error::UnknownSku { sku }) if sku == "nope"
    ));
    assert_eq!(store.stock("a").await.unwrap(), 10);
    store.set_stock("nope", 1).await.unwrap();
    let d = store.deduct(&unknown).await.unwrap();
    assert!(d.outcome.is_deducted() && !d.replayed);
    cleanup(topo, &ns).await;
}

/// Admin calls keep the stock and the sold-out mark in step; the dedup TTL is applied.
pub async fn admin_and_ttl<C: Client>(topo: Topo) {
    let ns = namespace();
    let store = store::<C>(topo, &ns)
        .await
        .with_dedup_ttl(Duration::from_secs(60))
        .unwrap();
    assert_eq!(store.stock("a").await.unwrap(), 0);
    store.set_stock("a", 0).await.unwrap();
    assert!(store.is_sold_out("a").await.unwrap());
    assert_eq!(
        store
            .deduct(&order("r0", "u", &[("a", 1)], None))
            .await
            .unwrap()
            .outcome,
        Outcome::SoldOut { sku: "a".into() }
    );
    assert_eq!(store.add_stock("a", 2).await.unwrap(), 2);
    assert!(!store.is_sold_out("a").await.unwrap());
    assert_eq!(
        store
            .deduct(&order("r1", "u", &[("a", 3)], None))
            .await
            .unwrap()
            .outcome,
        Outcome::Insufficient {
            sku: "a".into(),
            available: 2
        }
    );
    assert!(
        store
            .deduct(&order("r2", "u", &[("a", 2)], None))
            .await
            .unwrap()
            .outcome
            .is_deducted()
    );
    assert!(store.is_sold_out("a").await.unwrap());
    store.set_stock("a", 7).await.unwrap();
    assert!(!store.is_sold_out("a").await.unwrap());
    assert_eq!(store.stock("a").await.unwrap(), 7);
    assert!(matches!(
        store.add_stock("a", seckill_stock_lua::MAX_STOCK).await,
        Err(Error::Invalid(InvalidInput::OutOfRange { .. }))
    ));
    assert_eq!(store.stock("a").await.unwrap(), 7);

    let mut admin = admin(topo).await;
    let ttl: i64 = admin
        .pttl(format!("seckill:{{{ns}}}:req:r2"))
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 60_000, "ttl {ttl}");
    let default = StockStore::new(C::connect(topo).await, &ns).unwrap();
    assert!(
        default
            .deduct(&order("r3", "u", &[("a", 1)], None))
            .await
            .unwrap()
            .outcome
            .is_deducted()
    );
    let ttl: i64 = admin
        .pttl(format!("seckill:{{{ns}}}:req:r3"))
        .await
        .unwrap();
    assert!(ttl > 60_000 && ttl <= 86_400_000, "ttl {ttl}");

    // Trimming the log drops reconciled entries only.
    let log = store.deduction_log("a", None, 10).await.unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(
        store
            .deduction_log("a", Some(&log[0].id), 10)
            .await
            .unwrap(),
        log[1..]
    );
    assert_eq!(store.trim_log("a", &log[1].id).await.unwrap(), 1);
    assert_eq!(store.deduction_log("a", None, 10).await.unwrap(), log[1..]);
    cleanup(topo, &ns).await;
}

/// Redis lost a namespace (restarted empty): the grants written back from
/// a durable record answer their retries as before, refunded ones
/// included, buyers keep their units against the limit, and the SKU sells
/// nothing until its stock is set again.
pub async fn restore_after_data_loss<C: Client>(topo: Topo) {
    let ns = namespace();
    let store = store::<C>(topo, &ns).await;
    store.set_stock("a", 3).await.unwrap();
    for (id, user) in [("r1", "u1"), ("r2", "u2"), ("r3", "u3")] {
        let d = store
            .deduct(&order(id, user, &[("a", 1)], Some(1)))
            .await
            .unwrap();
        assert!(d.outcome.is_deducted());
    }
    store.refund("r3").await.unwrap();
    cleanup(topo, &ns).await;
    assert!(!store.is_stocked("a").await.unwrap());
    assert!(matches!(
        store.deduct(&order("r4", "u4", &[("a", 1)], Some(1))).await,
        Err(Error::UnknownSku { .. })
    ));
    let grant = |id: &str, user: &str, refunded| seckill_stock_lua::RestoredGrant {
        request_id: id.into(),
        user_id: user.into(),
        quantity: 1,
        refunded,
    };
    let grants: Vec<_> = (0..600)
        .map(|i| grant(&format!("bulk{i}"), &format!("b{i}"), false))
        .chain([
            grant("r1", "u1", false),
            grant("r2", "u2", false),
            grant("r3", "u3", true),
        ])
        .collect();
    assert_eq!(store.restore_grants("a", &grants).await.unwrap(), 603);
    // Written records are kept: a second restore writes nothing.
    assert_eq!(store.restore_grants("a", &grants).await.unwrap(), 0);
    assert!(
        !store.is_stocked("a").await.unwrap(),
        "the stock is set last, by the caller"
    );
    store.set_stock("a", 1).await.unwrap();
    assert!(store.is_stocked("a").await.unwrap());
    let replay = store
        .deduct(&order("r1", "u1", &[("a", 1)], Some(1)))
        .await
        .unwrap();
    assert!(replay.replayed && replay.outcome.is_deducted());
    let refunded = store.request("r3").await.unwrap().unwrap();
    assert!(refunded.refunded);
    assert_eq!(store.bought("a", "u2").await.unwrap(), 1);
    assert_eq!(store.bought("a", "u3").await.unwrap(), 0);
    // u2 is at the limit; u3 was refunded and buys the last unit.
    let over = store
        .deduct(&order("r5", "u2", &[("a", 1)], Some(1)))
        .await
        .unwrap();
    assert!(matches!(over.outcome, Outcome::LimitExceeded { .. }));
    let last = store
        .deduct(&order("r6", "u3", &[("a", 1)], Some(1)))
        .await
        .unwrap();
    assert!(last.outcome.is_deducted());
    assert!(matches!(
        store
            .restore_grants(
                "a",
                &[grant("r7", "u7", false)].map(|mut g| {
                    g.quantity = 0;
                    g
                })
            )
            .await,
        Err(Error::Invalid(InvalidInput::OutOfRange { value: 0, .. }))
    ));
    cleanup(topo, &ns).await;
}

/// Generates one `#[tokio::test]` per suite function for client `$client`
/// on topology `$topo`.
#[macro_export]
macro_rules! suite_tests {
    ($client:ty, $topo:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn same_id_other_request_conflicts() {
            suite::same_id_other_request_conflicts::<$client>($topo).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn same_id_two_payloads_concurrently() {
            suite::same_id_two_payloads_concurrently::<$client>($topo).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn log_page_and_trim_are_bounded() {
            suite::log_page_and_trim_are_bounded::<$client>($topo).await;
        }
        #[test]
        fn prop_sequences_match_the_model() {
            suite::props::sequences_match_the_model::<$client>($topo);
        }
        #[test]
        fn prop_concurrent_conservation() {
            suite::props::concurrent_conservation::<$client>($topo);
        }
        #[test]
        fn prop_invalid_input_rejected() {
            suite::props::invalid_input_rejected::<$client>($topo);
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn restore_after_data_loss() {
            suite::restore_after_data_loss::<$client>($topo).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn no_oversell_evalsha() {
            suite::no_oversell::<$client>($topo, seckill_stock_lua::ScriptMode::EvalSha).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn no_oversell_functions() {
            suite::no_oversell::<$client>($topo, seckill_stock_lua::ScriptMode::Functions).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn same_request_id_deducts_once() {
            suite::same_request_id_deducts_once::<$client>($topo).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn multi_sku_all_or_nothing() {
            suite::multi_sku_all_or_nothing::<$client>($topo).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn refund_exactly_once() {
            suite::refund_exactly_once::<$client>($topo).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn per_user_limit_under_concurrency() {
            suite::per_user_limit_under_concurrency::<$client>($topo).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn script_cache_survives_flush() {
            suite::script_cache_survives_flush::<$client>($topo).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn script_cache_library_loads_once() {
            suite::script_cache_library_loads_once::<$client>($topo).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn bad_input_is_refused() {
            suite::bad_input_is_refused::<$client>($topo).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn admin_and_ttl() {
            suite::admin_and_ttl::<$client>($topo).await;
        }
    };
}
