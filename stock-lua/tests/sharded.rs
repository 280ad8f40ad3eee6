//! Hot-SKU stock sharding: one SKU's stock over buckets on different
//! primaries. Exactness across buckets, on the Cluster (where it matters),
//! a single node and the Sentinel group, through redis-rs and fred.
#![cfg(all(feature = "redis", feature = "fred"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod suite;
mod support;

use std::collections::HashSet;
use std::sync::Arc;

use futures::future::join_all;
use seckill_redis::redis_rs::AnyConnection;
use seckill_stock_lua::{Error, InvalidInput, Outcome, Refund, ShardedStock};
use suite::{Topo, namespace, order};

impl suite::Client for AnyConnection {
    async fn connect(topo: Topo) -> Self {
        seckill_redis::redis_rs::connect(&topo.url())
            .await
            .unwrap_or_else(|e| suite::unreachable(topo, e))
    }
}

impl suite::Client for fred::clients::Client {
    async fn connect(topo: Topo) -> Self {
        seckill_redis::fred::connect(&topo.url())
            .await
            .unwrap_or_else(|e| suite::unreachable(topo, e))
    }
}

const BUCKETS: usize = 3;

/// A deduction as a client makes it: a call that failed with a retryable
/// error (a timeout on a busy two-core machine) is sent again with the same
/// request id, which replays whatever the first attempt decided.
async fn deduct<C: seckill_redis::Connection>(
    stock: &ShardedStock<C>,
    d: &seckill_stock_lua::Deduction,
) -> seckill_stock_lua::Decision {
    for _ in 0..20 {
        match stock.deduct(d).await {
            Ok(decision) => return decision,
            Err(Error::Redis { source }) if source.is_retryable() => continue,
            Err(e) => panic!("{}: {e}", d.request_id),
        }
    }
    panic!("{}: 20 attempts failed", d.request_id)
}

async fn sharded<C: suite::Client>(topo: Topo) -> (ShardedStock<C>, String) {
    let ns = namespace();
    (
        ShardedStock::new(C::connect(topo).await, &ns, BUCKETS).unwrap(),
        ns,
    )
}

async fn cleanup<C: seckill_redis::Connection>(topo: Topo, stock: &ShardedStock<C>) {
    for bucket in stock.buckets() {
        suite::cleanup(topo, bucket.namespace()).await;
    }
}

/// On a cluster made by `redis-cli --cluster create`, each bucket's keys
/// live on a different primary.
async fn buckets_on_distinct_primaries<C: seckill_redis::Connection>(
    topo: Topo,
    stock: &ShardedStock<C>,
) {
    if topo != Topo::Cluster {
        return;
    }
    let mut admin = suite::admin(topo).await;
    let slots: redis::Value = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(&mut admin)
        .await
        .unwrap();
    let redis::Value::Array(ranges) = slots else {
        panic!("CLUSTER SLOTS: {slots:?}")
    };
    let owner = |slot: i64| -> String {
        for range in &ranges {
            let redis::Value::Array(parts) = range else {
                continue;
            };
            let (redis::Value::Int(low), redis::Value::Int(high), redis::Value::Array(node)) =
                (&parts[0], &parts[1], &parts[2])
            else {
                continue;
            };
            if (*low..=*high).contains(&slot) {
                return format!("{:?}", node[1]);
            }
        }
        panic!("slot {slot} has no owner")
    };
    let mut primaries = HashSet::new();
    for bucket in stock.buckets() {
        let key = format!("seckill:{{{}}}:stock:x", bucket.namespace());
        let slot: i64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(&key)
            .query_async(&mut admin)
            .await
            .unwrap();
        primaries.insert(owner(slot));
    }
    assert_eq!(primaries.len(), BUCKETS, "one bucket per primary");
}

/// 3,000 buyers, 500 units over 3 buckets: exactly 500 granted, no id
/// granted twice, and every bucket emptied before anyone is told sold out.
async fn hot_sku_sells_exactly<C: suite::Client>(topo: Topo) {
    let (stock, _) = sharded::<C>(topo).await;
    buckets_on_distinct_primaries(topo, &stock).await;
    stock.set_stock("hot", 500).await.unwrap();
    let stock = Arc::new(stock);
    let calls = (0..3_000).map(|i| {
        let stock = stock.clone();
        tokio::spawn(async move {
            let d = order(&format!("r{i}"), &format!("u{i}"), &[("hot", 1)], Some(1));
            (i, deduct(&stock, &d).await)
        })
    });
    let mut granted = HashSet::new();
    let mut sold_out = 0;
    for result in join_all(calls).await {
        let (i, decision) = result.unwrap();
        match decision.outcome {
            Outcome::Deducted => assert!(granted.insert(i)),
            Outcome::SoldOut { .. } => sold_out += 1,
            other => panic!("request {i}: {other:?}"),
        }
    }
    assert_eq!(granted.len(), 500);
    assert_eq!(sold_out, 2_500);
    assert_eq!(stock.stock("hot").await.unwrap(), 0);
    assert!(stock.is_sold_out("hot").await.unwrap());
    // Replays agree with the first answers and change nothing.
    for i in [0, 1, 2, 1_000, 2_999] {
        let d = order(&format!("r{i}"), &format!("u{i}"), &[("hot", 1)], Some(1));
        let again = stock.deduct(&d).await.unwrap();
        assert!(again.replayed);
        assert_eq!(again.outcome.is_deducted(), granted.contains(&i));
    }
    // Refunded units come back to their bucket and sell again, once each.
    let back: Vec<usize> = granted.iter().copied().take(50).collect();
    for i in &back {
        assert!(matches!(
            stock.refund(&format!("r{i}")).await.unwrap(),
            Refund::Refunded { .. }
        ));
        assert_eq!(
            stock.refund(&format!("r{i}")).await.unwrap(),
            Refund::AlreadyRefunded
        );
    }
    assert_eq!(stock.stock("hot").await.unwrap(), 50);
    let late = (0..200).map(|i| {
        let stock = stock.clone();
        tokio::spawn(async move {
            let d = order(
                &format!("late{i}"),
                &format!("late{i}"),
                &[("hot", 1)],
                Some(1),
            );
            deduct(&stock, &d).await.outcome.is_deducted()
        })
    });
    let sold_again = join_all(late)
        .await
        .into_iter()
        .filter(|r| *r.as_ref().unwrap())
        .count();
    assert_eq!(sold_again, 50);
    assert_eq!(stock.stock("hot").await.unwrap(), 0);
    cleanup(topo, &stock).await;
}

/// A request whose home bucket is empty lands in another; replays find it
/// there even after the home bucket is refilled.
async fn replay_after_landing_elsewhere<C: suite::Client>(topo: Topo) {
    let (stock, _) = sharded::<C>(topo).await;
    stock.set_stock("a", 30).await.unwrap();
    let d = order("wanderer", "w", &[("a", 1)], None);
    // Empty every bucket but the last one the request tries.
    let home = stock.home_bucket("wanderer");
    for (i, bucket) in stock.buckets().iter().enumerate() {
        if i != (home + BUCKETS - 1) % BUCKETS {
            bucket.set_stock("a", 0).await.unwrap();
        }
    }
    let first = stock.deduct(&d).await.unwrap();
    assert_eq!(first.outcome, Outcome::Deducted);
    assert!(!first.replayed);
    assert_eq!(stock.stock("a").await.unwrap(), 9);
    // Refill every bucket: a replay must not deduct again anywhere.
    for bucket in stock.buckets() {
        bucket.add_stock("a", 10).await.unwrap();
    }
    for _ in 0..3 {
        let again = stock.deduct(&d).await.unwrap();
        assert_eq!(again.outcome, Outcome::Deducted);
        assert!(again.replayed, "{again:?}");
    }
    assert_eq!(stock.stock("a").await.unwrap(), 39);
    let record = stock.request("wanderer").await.unwrap().unwrap();
    assert!(record.outcome.is_deducted());
    assert_eq!(record.items, vec![("a".to_owned(), 1)]);
    assert_eq!(stock.bought("a", "w").await.unwrap(), 1);
    cleanup(topo, &stock).await;
}

/// One buyer, limit 2, 60 concurrent requests over 3 buckets: exactly 2
/// granted; refused and refunded requests give their reservation back.
async fn per_user_limit_across_buckets<C: suite::Client>(topo: Topo) {
    let (stock, _) = sharded::<C>(topo).await;
    stock.set_stock("a", 300).await.unwrap();
    let stock = Arc::new(stock);
    let calls = (0..60).map(|i| {
        let stock = stock.clone();
        tokio::spawn(async move {
            let d = order(&format!("p{i}"), "greedy", &[("a", 1)], Some(2));
            (i, deduct(&stock, &d).await.outcome)
        })
    });
    let mut granted = Vec::new();
    for result in join_all(calls).await {
        let (i, outcome) = result.unwrap();
        match outcome {
            Outcome::Deducted => granted.push(i),
            Outcome::LimitExceeded { bought, .. } => assert!(bought <= 2),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(granted.len(), 2);
    assert_eq!(stock.reserved("a", "greedy").await.unwrap(), 2);
    assert_eq!(stock.bought("a", "greedy").await.unwrap(), 2);
    assert_eq!(stock.stock("a").await.unwrap(), 298);
    // A refund gives the slot back, once.
    let id = format!("p{}", granted[0]);
    assert!(matches!(
        stock.refund(&id).await.unwrap(),
        Refund::Refunded { .. }
    ));
    assert_eq!(stock.refund(&id).await.unwrap(), Refund::AlreadyRefunded);
    assert_eq!(stock.reserved("a", "greedy").await.unwrap(), 1);
    let next = order("p-next", "greedy", &[("a", 1)], Some(2));
    assert!(stock.deduct(&next).await.unwrap().outcome.is_deducted());
    let over = order("p-over", "greedy", &[("a", 1)], Some(2));
    assert!(matches!(
        stock.deduct(&over).await.unwrap().outcome,
        Outcome::LimitExceeded { bought: 2, .. }
    ));
    // Sold out everywhere: the reservation is released, not leaked.
    stock.set_stock("b", 0).await.unwrap();
    let none = order("p-none", "greedy", &[("b", 1)], Some(2));
    assert!(matches!(
        stock.deduct(&none).await.unwrap().outcome,
        Outcome::SoldOut { .. }
    ));
    assert_eq!(stock.reserved("b", "greedy").await.unwrap(), 0);
    // And its replay does not reserve again.
    assert!(stock.deduct(&none).await.unwrap().replayed);
    assert_eq!(stock.reserved("b", "greedy").await.unwrap(), 0);
    cleanup(topo, &stock).await;
}

/// A refund that overtakes its deduction cancels it in whichever bucket it
/// lands; restocking fills the emptiest buckets first.
async fn refund_first_and_restock<C: suite::Client>(topo: Topo) {
    let (stock, _) = sharded::<C>(topo).await;
    stock.set_stock("a", 9).await.unwrap();
    assert_eq!(stock.refund("early").await.unwrap(), Refund::NotFound);
    let d = order("early", "e", &[("a", 1)], Some(1));
    assert_eq!(stock.deduct(&d).await.unwrap().outcome, Outcome::Cancelled);
    assert_eq!(stock.reserved("a", "e").await.unwrap(), 0);
    assert_eq!(stock.stock("a").await.unwrap(), 9);

    stock.buckets()[0].set_stock("a", 0).await.unwrap();
    stock.buckets()[1].set_stock("a", 2).await.unwrap();
    stock.buckets()[2].set_stock("a", 10).await.unwrap();
    assert_eq!(stock.add_stock("a", 12).await.unwrap(), 24);
    let mut levels = Vec::new();
    for bucket in stock.buckets() {
        levels.push(bucket.stock("a").await.unwrap());
    }
    assert_eq!(levels, vec![7, 7, 10]);
    cleanup(topo, &stock).await;
}

/// Redis lost everything: the grants written back land where replays
/// look, and the per-user limit still counts them.
async fn restore_after_loss<C: suite::Client>(topo: Topo) {
    let (stock, _) = sharded::<C>(topo).await;
    stock.set_stock("a", 12).await.unwrap();
    let mut grants = Vec::new();
    for i in 0..6 {
        let d = order(
            &format!("g{i}"),
            &format!("u{}", i % 3),
            &[("a", 1)],
            Some(2),
        );
        assert!(deduct(&stock, &d).await.outcome.is_deducted());
        grants.push(seckill_stock_lua::RestoredGrant {
            request_id: format!("g{i}"),
            user_id: format!("u{}", i % 3),
            quantity: 1,
            refunded: i == 5,
        });
    }
    cleanup(topo, &stock).await;
    assert!(!stock.is_stocked("a").await.unwrap());
    assert_eq!(stock.restore_grants("a", &grants).await.unwrap(), 6);
    // Twice is harmless.
    stock.restore_grants("a", &grants).await.unwrap();
    stock.set_stock("a", 7).await.unwrap();
    assert!(stock.is_stocked("a").await.unwrap());
    for i in 0..5 {
        let d = order(
            &format!("g{i}"),
            &format!("u{}", i % 3),
            &[("a", 1)],
            Some(2),
        );
        let again = stock.deduct(&d).await.unwrap();
        assert!(
            again.replayed && again.outcome.is_deducted(),
            "g{i}: {again:?}"
        );
    }
    // u0 and u1 hold 2 each (g5, u2's second, was refunded): over the limit.
    let over = order("over", "u0", &[("a", 1)], Some(2));
    assert!(matches!(
        stock.deduct(&over).await.unwrap().outcome,
        Outcome::LimitExceeded { .. }
    ));
    let fine = order("fine", "u2", &[("a", 1)], Some(2));
    assert!(stock.deduct(&fine).await.unwrap().outcome.is_deducted());
    assert_eq!(stock.stock("a").await.unwrap(), 6);
    cleanup(topo, &stock).await;
}

#[tokio::test]
async fn bad_bucket_counts_are_refused() {
    let conn = <AnyConnection as suite::Client>::connect(Topo::Single).await;
    for n in [0, 65] {
        assert!(matches!(
            ShardedStock::new(conn.clone(), "x", n),
            Err(Error::Invalid(InvalidInput::Buckets { buckets })) if buckets == n
        ));
    }
    let long = "n".repeat(63);
    assert!(matches!(
        ShardedStock::new(conn.clone(), &long, 3),
        Err(Error::Invalid(InvalidInput::Namespace { .. }))
    ));
    // One bucket is a plain store's namespace.
    let one = ShardedStock::new(conn, "plain", 1).unwrap();
    assert_eq!(one.buckets()[0].namespace(), "plain");
}

macro_rules! on_every_topology {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn redis_rs_cluster() {
                super::$case::<AnyConnection>(Topo::Cluster).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn redis_rs_single() {
                super::$case::<AnyConnection>(Topo::Single).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn redis_rs_sentinel() {
                super::$case::<AnyConnection>(Topo::Sentinel).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn fred_cluster() {
                super::$case::<fred::clients::Client>(Topo::Cluster).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn fred_single() {
                super::$case::<fred::clients::Client>(Topo::Single).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn fred_sentinel() {
                super::$case::<fred::clients::Client>(Topo::Sentinel).await;
            }
        }
    )*};
}

on_every_topology!(
    hot_sku_sells_exactly,
    replay_after_landing_elsewhere,
    per_user_limit_across_buckets,
    refund_first_and_restock,
    restore_after_loss,
);
