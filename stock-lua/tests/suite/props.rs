//! Property tests: random stocks, random multi-SKU requests, replays,
//! conflicts and refunds through the real scripts on the real Redis,
//! checked against a model of the documented guarantees.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use futures::future::join_all;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use seckill_stock_lua::{
    Deduction, Error, InvalidInput, LogKind, MAX_DEDUP_TTL, MAX_ID_LEN, MAX_ITEMS, MAX_LOG_PAGE,
    MAX_QUANTITY, MAX_STOCK, Outcome, Refund, StockStore,
};

use super::{Client, Topo, admin, namespace};
use crate::support::proptest_config;

const SKUS: [&str; 4] = ["s0", "s1", "s2", "s3"];
const IDS: usize = 8;

/// A multi-thread runtime and one connection of client `C` on it.
fn runtime<C: Client>(topo: Topo) -> (tokio::runtime::Runtime, C) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let conn = rt.block_on(C::connect(topo));
    (rt, conn)
}

/// Deletes every key a property case can have written (no SCAN of the
/// shared server per case).
async fn delete_keys(topo: Topo, ns: &str, ids: impl Iterator<Item = String>) {
    let mut admin = admin(topo).await;
    let p = format!("seckill:{{{ns}}}:");
    let mut keys = vec![format!("{p}soldout")];
    for sku in SKUS {
        keys.extend(["stock:", "log:", "bought:"].map(|kind| format!("{p}{kind}{sku}")));
    }
    keys.extend(ids.map(|id| format!("{p}req:{id}")));
    let _: () = redis::cmd("DEL")
        .arg(keys)
        .query_async(&mut admin)
        .await
        .unwrap();
}

/// A buyer of the concurrent test: request id, user, items.
type Buyer = (usize, usize, Vec<(usize, u64)>);
/// The first decision of an id: outcome, user, sorted items.
type First = (Outcome, usize, Vec<(usize, u64)>);

#[derive(Debug, Clone)]
enum Op {
    Deduct {
        id: usize,
        user: usize,
        items: Vec<(usize, u64)>,
        limit: Option<u64>,
    },
    Refund {
        id: usize,
    },
}

fn items_strategy(max_items: usize, max_qty: u64) -> impl Strategy<Value = Vec<(usize, u64)>> {
    proptest::sample::subsequence((0..SKUS.len()).collect::<Vec<_>>(), 1..=max_items)
        .prop_shuffle()
        .prop_flat_map(move |skus| {
            let n = skus.len();
            (Just(skus), proptest::collection::vec(1..=max_qty, n))
        })
        .prop_map(|(skus, qty)| skus.into_iter().zip(qty).collect())
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..IDS, 0..3usize, items_strategy(3, 4), proptest::option::of(1..=6u64))
            .prop_map(|(id, user, items, limit)| Op::Deduct { id, user, items, limit }),
        1 => (0..IDS).prop_map(|id| Op::Refund { id }),
    ]
}

fn deduction(id: usize, user: usize, items: &[(usize, u64)], limit: Option<u64>) -> Deduction {
    Deduction {
        request_id: format!("id{id}"),
        user_id: format!("user{user}"),
        items: items
            .iter()
            .map(|&(s, q)| (SKUS[s].to_owned(), q))
            .collect(),
        per_user_limit: limit,
    }
}

/// What the documentation promises for one request id.
#[derive(Debug, Clone)]
struct Record {
    /// User and sorted items; `None` for a refund's tombstone.
    payload: Option<(usize, Vec<(usize, u64)>)>,
    outcome: Outcome,
    taken: Vec<(usize, u64)>,
    refunded: bool,
}

/// What a deduct call answered, in a comparable form.
#[derive(Debug, Clone, PartialEq)]
enum Answer {
    Decided { outcome: Outcome, replayed: bool },
    Conflict(Outcome),
}

#[derive(Debug, Default)]
struct Model {
    stock: Vec<u64>,
    bought: BTreeMap<(usize, usize), u64>,
    records: HashMap<usize, Record>,
    /// Per SKU: (request, user, quantity, is refund).
    log: Vec<Vec<(usize, usize, u64, bool)>>,
}

impl Model {
    fn deduct(
        &mut self,
        id: usize,
        user: usize,
        items: &[(usize, u64)],
        limit: Option<u64>,
    ) -> Answer {
        let mut sorted = items.to_vec();
        sorted.sort();
        if let Some(rec) = self.records.get(&id) {
            return match &rec.payload {
                Some(p) if *p != (user, sorted) => Answer::Conflict(rec.outcome.clone()),
                _ => Answer::Decided {
                    outcome: rec.outcome.clone(),
                    replayed: true,
                },
            };
        }
        let mut refusal = None;
        if let Some(limit) = limit {
            for &(s, q) in items {
                let b = self.bought.get(&(s, user)).copied().unwrap_or(0);
                if b + q > limit {
                    refusal = Some(Outcome::LimitExceeded {
                        sku: SKUS[s].into(),
                        bought: b,
                    });
                    break;
                }
            }
        }
        if refusal.is_none() {
            for &(s, q) in items {
                if self.stock[s] == 0 {
                    refusal = Some(Outcome::SoldOut {
                        sku: SKUS[s].into(),
                    });
                    break;
                }
                if self.stock[s] < q {
                    refusal = Some(Outcome::Insufficient {
                        sku: SKUS[s].into(),
                        available: self.stock[s],
                    });
                    break;
                }
            }
        }
        let outcome = refusal.unwrap_or(Outcome::Deducted);
        let mut taken = Vec::new();
        if outcome.is_deducted() {
            for &(s, q) in items {
                self.stock[s] -= q;
                *self.bought.entry((s, user)).or_default() += q;
                self.log[s].push((id, user, q, false));
            }
            taken = sorted.clone();
        }
        self.records.insert(
            id,
            Record {
                payload: Some((user, sorted)),
                outcome: outcome.clone(),
                taken,
                refunded: false,
            },
        );
        Answer::Decided {
            outcome,
            replayed: false,
        }
    }

    fn refund(&mut self, id: usize) -> Refund {
        let Some(rec) = self.records.get_mut(&id) else {
            self.records.insert(
                id,
                Record {
                    payload: None,
                    outcome: Outcome::Cancelled,
                    taken: vec![],
                    refunded: false,
                },
            );
            return Refund::NotFound;
        };
        match (&rec.outcome, rec.refunded) {
            (Outcome::Cancelled, _) => Refund::NotFound,
            (Outcome::Deducted, true) => Refund::AlreadyRefunded,
            (Outcome::Deducted, false) => {
                rec.refunded = true;
                let user = rec.payload.as_ref().map_or(0, |p| p.0);
                for &(s, q) in &rec.taken {
                    self.stock[s] += q;
                    let b = self.bought.entry((s, user)).or_default();
                    *b -= q;
                    self.log[s].push((id, user, q, true));
                }
                self.bought.retain(|_, b| *b > 0);
                Refund::Refunded {
                    items: rec
                        .taken
                        .iter()
                        .map(|&(s, q)| (SKUS[s].to_owned(), q))
                        .collect(),
                }
            }
            _ => Refund::NothingDeducted,
        }
    }
}

fn answer(result: Result<seckill_stock_lua::Decision, Error>, id: usize) -> Answer {
    match result {
        Ok(d) => Answer::Decided {
            outcome: d.outcome,
            replayed: d.replayed,
        },
        Err(Error::RequestConflict { request_id, stored }) => {
            assert_eq!(request_id, format!("id{id}"));
            Answer::Conflict(stored)
        }
        Err(e) => panic!("deduct failed: {e}"),
    }
}

fn sorted_refund(r: Refund) -> Refund {
    match r {
        Refund::Refunded { mut items } => {
            items.sort();
            Refund::Refunded { items }
        }
        other => other,
    }
}

/// Random stocks and random sequences of multi-SKU deductions (with
/// repeated ids, hence replays and conflicts) and refunds: every answer,
/// the stock, the per-user counts, the sold-out marks, the request records
/// and the deduction log equal the model's; stock + net sold = initial.
pub fn sequences_match_the_model<C: Client>(topo: Topo) {
    let (rt, conn) = runtime::<C>(topo);
    let strategy = (
        proptest::collection::vec(0..=12u64, SKUS.len()),
        proptest::collection::vec(op_strategy(), 1..=25),
    );
    let mut runner = TestRunner::new(proptest_config(topo.cases(24)));
    runner
        .run(&strategy, |(initial, ops)| {
            rt.block_on(run_sequence(topo, conn.clone(), initial, ops));
            Ok(())
        })
        .unwrap();
}

async fn run_sequence<C: Client>(topo: Topo, conn: C, initial: Vec<u64>, ops: Vec<Op>) {
    let ns = namespace();
    let store = StockStore::new(conn, &ns).unwrap();
    let mut model = Model {
        stock: initial.clone(),
        log: vec![Vec::new(); SKUS.len()],
        ..Model::default()
    };
    for (s, &units) in initial.iter().enumerate() {
        store.set_stock(SKUS[s], units).await.unwrap();
    }
    for op in &ops {
        match op {
            Op::Deduct {
                id,
                user,
                items,
                limit,
            } => {
                let got = answer(
                    store.deduct(&deduction(*id, *user, items, *limit)).await,
                    *id,
                );
                assert_eq!(got, model.deduct(*id, *user, items, *limit), "{op:?}");
            }
            Op::Refund { id } => {
                let got = sorted_refund(store.refund(&format!("id{id}")).await.unwrap());
                assert_eq!(got, sorted_refund(model.refund(*id)), "{op:?}");
            }
        }
    }
    let sold_out: HashSet<String> = store.sold_out().await.unwrap().into_iter().collect();
    for (s, sku) in SKUS.iter().enumerate() {
        let stock = store.stock(sku).await.unwrap();
        assert_eq!(
            u64::try_from(stock).unwrap(),
            model.stock[s],
            "stock of {sku}"
        );
        assert_eq!(
            sold_out.contains(*sku),
            model.stock[s] == 0,
            "sold-out mark of {sku}"
        );
        let log = store.deduction_log(sku, None, MAX_LOG_PAGE).await.unwrap();
        let got: Vec<_> = log
            .iter()
            .map(|e| {
                (
                    e.request_id.clone(),
                    e.user_id.clone(),
                    e.quantity,
                    e.kind == LogKind::Refund,
                )
            })
            .collect();
        let want: Vec<_> = model.log[s]
            .iter()
            .map(|&(id, u, q, r)| (format!("id{id}"), format!("user{u}"), q, r))
            .collect();
        assert_eq!(got, want, "log of {sku}");
        // Conservation, from the log: stock + (deducted - refunded) = initial.
        let net: i64 = log
            .iter()
            .map(|e| {
                if e.kind == LogKind::Refund {
                    -(e.quantity as i64)
                } else {
                    e.quantity as i64
                }
            })
            .sum();
        assert_eq!(stock + net, initial[s] as i64);
        for user in 0..3 {
            let want = model.bought.get(&(s, user)).copied().unwrap_or(0);
            assert_eq!(
                store.bought(sku, &format!("user{user}")).await.unwrap(),
                want
            );
        }
    }
    for id in 0..IDS {
        let got = store.request(&format!("id{id}")).await.unwrap();
        match (got, model.records.get(&id)) {
            (None, None) => {}
            (Some(got), Some(want)) => {
                assert_eq!(got.outcome, want.outcome);
                assert_eq!(got.refunded, want.refunded);
                let mut items = got.items.clone();
                items.sort();
                let want_items: Vec<_> = want
                    .taken
                    .iter()
                    .map(|&(s, q)| (SKUS[s].to_owned(), q))
                    .collect();
                assert_eq!(items, want_items);
            }
            (got, want) => panic!("record id{id}: {got:?} vs {want:?}"),
        }
    }
    delete_keys(topo, &ns, (0..IDS).map(|id| format!("id{id}"))).await;
}

/// Random stocks and a few hundred concurrent random multi-SKU buyers
/// (ids repeated with other payloads, one per-user limit): never oversold,
/// stock + sold = initial, each id deducts at most once and its other
/// calls replay or conflict with its first outcome, the limit holds, the
/// log matches the grants; then every grant refunded by two racing calls:
/// exactly one `Refunded` each, stock back to the initial, counts 0.
pub fn concurrent_conservation<C: Client>(topo: Topo) {
    let (rt, _conn) = runtime::<C>(topo);
    let strategy = (
        proptest::collection::vec(0..=60u64, 3),
        proptest::option::of(1..=4u64),
        proptest::collection::vec((0..150usize, 0..40usize, items_strategy(3, 3)), 100..=300),
    );
    let mut runner = TestRunner::new(proptest_config(topo.cases(4)));
    runner
        .run(&strategy, |(initial, limit, buyers)| {
            rt.block_on(run_concurrent::<C>(topo, initial, limit, buyers));
            Ok(())
        })
        .unwrap();
}

async fn run_concurrent<C: Client>(
    topo: Topo,
    initial: Vec<u64>,
    limit: Option<u64>,
    buyers: Vec<Buyer>,
) {
    let ns = namespace();
    let stores = super::stores::<C>(topo, &ns, 4).await;
    let store = &stores[0];
    // Only SKUs s0..s2 get stock; s3 is never asked for.
    let buyers: Vec<_> = buyers
        .into_iter()
        .map(|(id, user, items)| {
            (
                id,
                user,
                items
                    .into_iter()
                    .filter(|(s, _)| *s < 3)
                    .collect::<Vec<_>>(),
            )
        })
        .filter(|(_, _, items)| !items.is_empty())
        .collect();
    for (s, &units) in initial.iter().enumerate() {
        store.set_stock(SKUS[s], units).await.unwrap();
    }
    let tasks: Vec<_> = buyers
        .iter()
        .enumerate()
        .map(|(i, (id, user, items))| {
            let store = stores[i % stores.len()].clone();
            let d = deduction(*id, *user, items, limit);
            let id = *id;
            tokio::spawn(async move { answer(store.deduct(&d).await, id) })
        })
        .collect();
    let answers: Vec<Answer> = join_all(tasks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();

    // Per id: the first (non-replayed) decision, and its payload.
    let mut first: HashMap<usize, First> = HashMap::new();
    for ((id, user, items), a) in buyers.iter().zip(&answers) {
        if let Answer::Decided {
            outcome,
            replayed: false,
        } = a
        {
            let mut sorted = items.clone();
            sorted.sort();
            assert!(
                first
                    .insert(*id, (outcome.clone(), *user, sorted))
                    .is_none(),
                "id{id} decided twice"
            );
        }
    }
    for ((id, user, items), a) in buyers.iter().zip(&answers) {
        let (outcome, first_user, first_items) = first.get(id).expect("every id is decided once");
        let mut sorted = items.clone();
        sorted.sort();
        let same = *user == *first_user && sorted == *first_items;
        match a {
            Answer::Decided {
                outcome: o,
                replayed: true,
            } => assert!(same && o == outcome),
            Answer::Decided {
                replayed: false, ..
            } => assert!(same),
            Answer::Conflict(o) => assert!(!same && o == outcome),
        }
    }
    let mut sold = [0u64; 3];
    let mut held: HashMap<(usize, usize), u64> = HashMap::new();
    let mut grants: Vec<HashSet<(String, String, u64)>> = vec![HashSet::new(); 3];
    for (id, (outcome, user, items)) in &first {
        if outcome.is_deducted() {
            for &(s, q) in items {
                sold[s] += q;
                *held.entry((s, *user)).or_default() += q;
                grants[s].insert((format!("id{id}"), format!("user{user}"), q));
            }
        }
    }
    for s in 0..3 {
        let stock = store.stock(SKUS[s]).await.unwrap();
        assert!(stock >= 0, "oversold {}", SKUS[s]);
        assert_eq!(stock as u64 + sold[s], initial[s]);
        let log = store
            .deduction_log(SKUS[s], None, MAX_LOG_PAGE)
            .await
            .unwrap();
        let logged: HashSet<_> = log
            .iter()
            .map(|e| (e.request_id.clone(), e.user_id.clone(), e.quantity))
            .collect();
        assert_eq!(log.len(), grants[s].len());
        assert_eq!(logged, grants[s]);
    }
    for (&(s, user), &units) in &held {
        if let Some(limit) = limit {
            assert!(units <= limit);
        }
        assert_eq!(
            store.bought(SKUS[s], &format!("user{user}")).await.unwrap(),
            units
        );
    }

    // Refund every id twice, concurrently.
    let refunds: Vec<_> = first
        .keys()
        .flat_map(|id| [*id, *id])
        .enumerate()
        .map(|(i, id)| {
            let store = stores[i % stores.len()].clone();
            tokio::spawn(async move { (id, store.refund(&format!("id{id}")).await.unwrap()) })
        })
        .collect();
    let refunds: Vec<_> = join_all(refunds)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    for (id, (outcome, _, _)) in &first {
        let mine: Vec<_> = refunds
            .iter()
            .filter(|(i, _)| i == id)
            .map(|(_, r)| r)
            .collect();
        if outcome.is_deducted() {
            assert_eq!(
                mine.iter()
                    .filter(|r| matches!(r, Refund::Refunded { .. }))
                    .count(),
                1
            );
            assert_eq!(
                mine.iter()
                    .filter(|r| ***r == Refund::AlreadyRefunded)
                    .count(),
                1
            );
        } else {
            assert!(mine.iter().all(|r| **r == Refund::NothingDeducted));
        }
    }
    for s in 0..3 {
        assert_eq!(store.stock(SKUS[s]).await.unwrap() as u64, initial[s]);
    }
    for &(s, user) in held.keys() {
        assert_eq!(
            store.bought(SKUS[s], &format!("user{user}")).await.unwrap(),
            0
        );
    }
    delete_keys(topo, &ns, (0..150).map(|id| format!("id{id}"))).await;
}

/// A string of `len` bytes.
fn text(prefix: char, len: usize) -> String {
    std::iter::repeat_n(prefix, len).collect()
}

/// What `deduct` must refuse, in the documented order of the checks.
fn expected_error(d: &Deduction) -> Option<InvalidInput> {
    let id = |field: &'static str, s: &str| {
        if s.is_empty() {
            Some(InvalidInput::EmptyId { field })
        } else if s.len() > MAX_ID_LEN {
            Some(InvalidInput::IdTooLong {
                field,
                len: s.len(),
                max: MAX_ID_LEN,
            })
        } else {
            None
        }
    };
    if let Some(e) = id("request id", &d.request_id).or_else(|| id("user id", &d.user_id)) {
        return Some(e);
    }
    if d.items.is_empty() {
        return Some(InvalidInput::EmptyItems);
    }
    if d.items.len() > MAX_ITEMS {
        return Some(InvalidInput::TooManyItems {
            count: d.items.len(),
            max: MAX_ITEMS,
        });
    }
    for (i, (sku, qty)) in d.items.iter().enumerate() {
        if let Some(e) = id("SKU", sku) {
            return Some(e);
        }
        if !(1..=MAX_QUANTITY).contains(qty) {
            return Some(InvalidInput::OutOfRange {
                field: format!("quantity of SKU {sku:?}"),
                value: *qty,
                min: 1,
                max: MAX_QUANTITY,
            });
        }
        if d.items[..i].iter().any(|(s, _)| s == sku) {
            return Some(InvalidInput::DuplicateSku { sku: sku.clone() });
        }
    }
    match d.per_user_limit {
        Some(l) if !(1..=MAX_QUANTITY).contains(&l) => Some(InvalidInput::OutOfRange {
            field: "per_user_limit".into(),
            value: l,
            min: 1,
            max: MAX_QUANTITY,
        }),
        _ => None,
    }
}

fn amount() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(MAX_QUANTITY),
        Just(MAX_QUANTITY + 1),
        Just(u64::MAX),
        1..=100u64
    ]
}

fn id_len() -> impl Strategy<Value = usize> {
    prop_oneof![Just(0), Just(MAX_ID_LEN), Just(MAX_ID_LEN + 1), 1..=8usize]
}

/// Random requests and settings around every documented bound: whatever is
/// out of range is refused with exactly the documented error, naming the
/// field and its range, before Redis is touched (nothing is ever written:
/// the SKUs have no stock, so a request that reached Redis would answer
/// `UnknownSku`); what is in range is accepted.
pub fn invalid_input_rejected<C: Client>(topo: Topo) {
    let (rt, conn) = runtime::<C>(topo);
    let ns = namespace();
    let store = StockStore::new(conn, &ns).unwrap();
    let item = || (id_len(), amount(), 0..3usize);
    let strategy = (
        id_len(),
        id_len(),
        prop_oneof![
            proptest::collection::vec(item(), 0..=4),
            proptest::collection::vec(item(), 63..=66)
        ],
        proptest::option::of(amount()),
        (0..=MAX_DEDUP_TTL.as_millis() as u64 + 2, 0..=3u32),
        prop_oneof![
            Just(0usize),
            Just(MAX_LOG_PAGE),
            Just(MAX_LOG_PAGE + 1),
            1..=100usize
        ],
        prop_oneof![
            Just(MAX_STOCK),
            Just(MAX_STOCK + 1),
            Just(u64::MAX),
            0..=10u64
        ],
    );
    let mut runner = TestRunner::new(proptest_config(topo.cases(64)));
    runner
        .run(
            &strategy,
            |(req_len, user_len, items, limit, (ttl_ms, ttl_kind), page, units)| {
                rt.block_on(async {
                    let d = Deduction {
                        request_id: text('r', req_len),
                        user_id: text('u', user_len),
                        // Items named by index, or all "k0" (repeats), or of
                        // a bad length (empty, over-long).
                        items: items
                            .iter()
                            .enumerate()
                            .map(|(i, (len, qty, dup))| {
                                let name = match *len {
                                    0 => String::new(),
                                    n if n > MAX_ID_LEN => text('x', n),
                                    _ if *dup == 0 => "k0".to_owned(),
                                    _ => format!("k{i}"),
                                };
                                (name, *qty)
                            })
                            .collect(),
                        per_user_limit: limit,
                    };
                    match (store.deduct(&d).await, expected_error(&d)) {
                        (Err(Error::Invalid(got)), Some(want)) => {
                            assert_eq!(got, want);
                            assert!(
                                Error::Invalid(got).to_string().contains(" to "),
                                "message names the range"
                            );
                        }
                        (Err(Error::UnknownSku { .. }), None) => {}
                        (got, want) => panic!("{d:?}: got {got:?}, want {want:?}"),
                    }

                    let ttl = match ttl_kind {
                        0 => Duration::from_millis(ttl_ms),
                        1 => Duration::from_micros(999),
                        2 => MAX_DEDUP_TTL + Duration::from_nanos(1),
                        _ => Duration::MAX,
                    };
                    let valid = ttl >= Duration::from_millis(1) && ttl <= MAX_DEDUP_TTL;
                    match store.clone().with_dedup_ttl(ttl) {
                        Ok(_) => assert!(valid, "{ttl:?} accepted"),
                        Err(Error::Invalid(InvalidInput::DedupTtl { ttl: t })) => {
                            assert!(!valid && t == ttl)
                        }
                        Err(e) => panic!("{e}"),
                    }

                    match store.deduction_log("k", None, page).await {
                        Ok(entries) => {
                            assert!((1..=MAX_LOG_PAGE).contains(&page) && entries.is_empty())
                        }
                        Err(Error::Invalid(InvalidInput::OutOfRange {
                            value,
                            min: 1,
                            max,
                            ..
                        })) => {
                            assert!(page == 0 || page > MAX_LOG_PAGE);
                            assert_eq!((value, max), (page as u64, MAX_LOG_PAGE as u64));
                        }
                        Err(e) => panic!("{e}"),
                    }

                    // Out-of-range stock is refused before Redis; in-range
                    // stock is not tried here (it would write).
                    if units > MAX_STOCK {
                        assert_eq!(
                            store.set_stock("k", units).await.unwrap_err().to_string(),
                            format!("stock of SKU \"k\" must be 0 to {MAX_STOCK}, got {units}")
                        );
                        assert!(matches!(
                            store.add_stock("k", units).await,
                            Err(Error::Invalid(InvalidInput::OutOfRange { min: 1, .. }))
                        ));
                    }
                    if units == 0 {
                        assert!(matches!(
                            store.add_stock("k", 0).await,
                            Err(Error::Invalid(InvalidInput::OutOfRange {
                                value: 0,
                                min: 1,
                                ..
                            }))
                        ));
                    }
                });
                Ok(())
            },
        )
        .unwrap();
    // Nothing at all was written in the namespace.
    rt.block_on(async {
        let mut admin = admin(topo).await;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("seckill:{{{ns}}}:*"))
            .query_async(&mut admin)
            .await
            .unwrap();
        assert!(keys.is_empty(), "{keys:?}");
    });
}
