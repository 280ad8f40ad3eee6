//! Defect 1 (a reused request id with another payload) and the bounds of
//! the log calls, through every client adapter.

use std::collections::HashSet;

use futures::future::join_all;
use redis::AsyncCommands;
use seckill_stock_lua::{
    Error, InvalidInput, LogKind, MAX_LOG_PAGE, Outcome, Refund, RestoredGrant,
};

use super::{Client, Topo, admin, cleanup, deduct_all, namespace, order, store, stores};

fn is_conflict(
    result: &Result<seckill_stock_lua::Decision, Error>,
    id: &str,
    first: &Outcome,
) -> bool {
    matches!(result, Err(Error::RequestConflict { request_id, stored }) if request_id == id && stored == first)
}

/// The same request id with the same payload replays; with another SKU,
/// quantity or user it is `RequestConflict` carrying the stored outcome, and
/// changes nothing. The fingerprint survives a refund and a restore; a
/// tombstone and a record without fingerprint (written before this
/// version) replay whatever the payload.
pub async fn same_id_other_request_conflicts<C: Client>(topo: Topo) {
    let ns = namespace();
    let store = store::<C>(topo, &ns).await;
    store.set_stock("a", 10).await.unwrap();
    store.set_stock("b", 10).await.unwrap();
    let first = order("r1", "alice", &[("a", 2), ("b", 1)], Some(5));
    let d = store.deduct(&first).await.unwrap();
    assert!(d.outcome.is_deducted() && !d.replayed);

    // A true replay, even with the items listed in another order and under
    // another per-user limit (the seller's policy, not the request).
    let reordered = order("r1", "alice", &[("b", 1), ("a", 2)], Some(3));
    let again = store.deduct(&reordered).await.unwrap();
    assert_eq!(again.outcome, Outcome::Deducted);
    assert!(again.replayed);

    let others = [
        order("r1", "alice", &[("a", 2), ("c", 1)], Some(5)), // another SKU
        order("r1", "alice", &[("a", 3), ("b", 1)], Some(5)), // another quantity
        order("r1", "bob", &[("a", 2), ("b", 1)], Some(5)),   // another user
        order("r1", "alice", &[("a", 2)], Some(5)),           // fewer items
    ];
    for other in &others {
        let got = store.deduct(other).await;
        assert!(
            is_conflict(&got, "r1", &Outcome::Deducted),
            "{other:?} gave {got:?}"
        );
    }
    let err = store.deduct(&others[0]).await.unwrap_err();
    assert!(err.to_string().contains("own id"), "{err}");
    assert_eq!(store.stock("a").await.unwrap(), 8);
    assert_eq!(store.stock("b").await.unwrap(), 9);
    assert_eq!(store.deduction_log_len("a").await.unwrap(), 1);
    assert_eq!(store.bought("a", "bob").await.unwrap(), 0);

    // A refusal is fingerprinted too.
    store.set_stock("z", 0).await.unwrap();
    let refused = order("r2", "alice", &[("z", 1)], None);
    let sold_out = Outcome::SoldOut { sku: "z".into() };
    assert_eq!(store.deduct(&refused).await.unwrap().outcome, sold_out);
    let got = store.deduct(&order("r2", "alice", &[("a", 1)], None)).await;
    assert!(is_conflict(&got, "r2", &sold_out), "{got:?}");
    assert_eq!(store.stock("a").await.unwrap(), 8);
    let replay = store.deduct(&refused).await.unwrap();
    assert!(replay.replayed && replay.outcome == sold_out);

    // The refund keeps the fingerprint: the retry still replays, a
    // conflicting request still conflicts, and the refund gives back the
    // record's items only.
    match store.refund("r1").await.unwrap() {
        Refund::Refunded { mut items } => {
            items.sort();
            assert_eq!(items, vec![("a".to_owned(), 2), ("b".to_owned(), 1)]);
        }
        other => panic!("refund gave {other:?}"),
    }
    let after_refund = store.deduct(&first).await.unwrap();
    assert!(after_refund.replayed && after_refund.outcome.is_deducted());
    let got = store.deduct(&others[1]).await;
    assert!(is_conflict(&got, "r1", &Outcome::Deducted), "{got:?}");
    assert_eq!(store.stock("a").await.unwrap(), 10);

    // A tombstone has no payload: any request with its id is cancelled.
    assert_eq!(store.refund("r3").await.unwrap(), Refund::NotFound);
    for user in ["x", "y"] {
        let d = store
            .deduct(&order("r3", user, &[("a", 1)], None))
            .await
            .unwrap();
        assert!(d.replayed && d.outcome == Outcome::Cancelled);
    }

    // A record written before fingerprints existed replays, unchecked.
    let mut admin = admin(topo).await;
    let legacy = format!("seckill:{{{ns}}}:req:legacy");
    let _: () = redis::cmd("HSET")
        .arg(&legacy)
        .arg(&[
            "o", "0", "s", "", "n", "0", "u", "old", "c", "1", "q:a", "1",
        ])
        .query_async(&mut admin)
        .await
        .unwrap();
    let _: () = admin.pexpire(&legacy, 60_000).await.unwrap();
    for payload in [
        order("legacy", "old", &[("a", 1)], None),
        order("legacy", "new", &[("b", 4)], None),
    ] {
        let d = store.deduct(&payload).await.unwrap();
        assert!(d.replayed && d.outcome.is_deducted());
    }
    assert_eq!(store.stock("a").await.unwrap(), 10);
    assert_eq!(store.stock("b").await.unwrap(), 10);

    // A restored grant carries the single-SKU fingerprint.
    let grant = RestoredGrant {
        request_id: "restored".into(),
        user_id: "carol".into(),
        quantity: 2,
        refunded: false,
    };
    assert_eq!(store.restore_grants("a", &[grant]).await.unwrap(), 1);
    let d = store
        .deduct(&order("restored", "carol", &[("a", 2)], Some(2)))
        .await
        .unwrap();
    assert!(d.replayed && d.outcome.is_deducted());
    let got = store
        .deduct(&order("restored", "carol", &[("a", 1)], None))
        .await;
    assert!(is_conflict(&got, "restored", &Outcome::Deducted), "{got:?}");
    assert_eq!(store.stock("a").await.unwrap(), 10);
    cleanup(topo, &ns).await;
}

/// 2,000 concurrent calls with one request id, half with payload A and half
/// with payload B: exactly one deduction; every call with the winner's
/// payload gets `Deducted` (all but one replayed), every other call
/// `RequestConflict` carrying `Deducted`.
pub async fn same_id_two_payloads_concurrently<C: Client>(topo: Topo) {
    let ns = namespace();
    let stores = stores::<C>(topo, &ns, 8).await;
    stores[0].set_stock("a", 100).await.unwrap();
    stores[0].set_stock("b", 100).await.unwrap();
    let payload_a = order("shared", "u", &[("a", 3)], None);
    let payload_b = order("shared", "u", &[("a", 1), ("b", 5)], None);
    let tasks: Vec<_> = (0..2_000)
        .map(|i| {
            let store = stores[i % stores.len()].clone();
            let payload = if i % 2 == 0 {
                payload_a.clone()
            } else {
                payload_b.clone()
            };
            tokio::spawn(async move {
                let mut attempts = 0;
                loop {
                    match store.deduct(&payload).await {
                        Err(Error::Redis { .. }) if attempts < 20 => attempts += 1,
                        other => return (i % 2, other),
                    }
                }
            })
        })
        .collect();
    let results: Vec<_> = join_all(tasks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let winners: HashSet<usize> = results
        .iter()
        .filter(|(_, r)| matches!(r, Ok(d) if !d.replayed))
        .map(|(side, _)| *side)
        .collect();
    assert_eq!(
        results
            .iter()
            .filter(|(_, r)| matches!(r, Ok(d) if !d.replayed))
            .count(),
        1
    );
    let winner = *winners.iter().next().unwrap();
    for (side, result) in &results {
        if *side == winner {
            assert!(
                matches!(result, Ok(d) if d.outcome == Outcome::Deducted),
                "{result:?}"
            );
        } else {
            assert!(
                is_conflict(result, "shared", &Outcome::Deducted),
                "{result:?}"
            );
        }
    }
    let (a_left, b_left) = if winner == 0 { (97, 100) } else { (99, 95) };
    assert_eq!(stores[0].stock("a").await.unwrap(), a_left);
    assert_eq!(stores[0].stock("b").await.unwrap(), b_left);
    assert_eq!(stores[0].deduction_log_len("a").await.unwrap(), 1);
    assert_eq!(
        stores[0].deduction_log_len("b").await.unwrap(),
        u64::from(winner == 1)
    );
    assert_eq!(
        stores[0].bought("a", "u").await.unwrap(),
        if winner == 0 { 3 } else { 1 }
    );
    cleanup(topo, &ns).await;
}

/// A log page is 1 to `MAX_LOG_PAGE` entries (refused outside, before
/// Redis); `trim_log` of a log longer than one trim batch drops exactly the
/// entries before the bound, over several bounded script calls.
pub async fn log_page_and_trim_are_bounded<C: Client>(topo: Topo) {
    let ns = namespace();
    let stores = stores::<C>(topo, &ns, 4).await;
    let store = &stores[0];
    for count in [0, MAX_LOG_PAGE + 1, usize::MAX] {
        match store.deduction_log("a", None, count).await {
            Err(Error::Invalid(InvalidInput::OutOfRange {
                min: 1, max, value, ..
            })) => {
                assert_eq!(max, MAX_LOG_PAGE as u64);
                assert_eq!(value, u64::try_from(count).unwrap());
            }
            other => panic!("count {count} gave {other:?}"),
        }
    }
    assert!(matches!(
        store.deduction_log("a", Some(""), 10).await,
        Err(Error::Invalid(InvalidInput::EmptyId {
            field: "log entry id"
        }))
    ));
    let err = store.deduction_log("a", None, 0).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "count (log page size) must be 1 to 10000, got 0"
    );

    store.set_stock("a", 5_000).await.unwrap();
    let orders = (0..2_600)
        .map(|i| order(&format!("t{i}"), &format!("u{i}"), &[("a", 1)], None))
        .collect();
    let decisions = deduct_all(&stores, orders).await;
    assert!(decisions.iter().all(|d| d.outcome.is_deducted()));
    let mut log = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .deduction_log("a", after.as_deref(), MAX_LOG_PAGE)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        log.extend(page);
    }
    assert_eq!(log.len(), 2_600);
    assert!(log.iter().all(|e| e.kind == LogKind::Deduction));
    // Drop the first 2,345 entries: three trim batches (1,000 + 1,000 + 345).
    assert_eq!(store.trim_log("a", &log[2_345].id).await.unwrap(), 2_345);
    assert_eq!(store.deduction_log_len("a").await.unwrap(), 255);
    let rest = store.deduction_log("a", None, MAX_LOG_PAGE).await.unwrap();
    assert_eq!(rest, log[2_345..]);
    assert_eq!(store.trim_log("a", &log[2_345].id).await.unwrap(), 0);
    cleanup(topo, &ns).await;
}
