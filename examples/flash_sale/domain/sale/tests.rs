//! The decision chain on an in-memory stock ledger and order queue: the
//! rules of the sale, without Redis or Kafka (their real behaviour is tested
//! in `tests/`).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;

use futures::future::BoxFuture;

use super::*;
use crate::domain::buyer::Client;
use crate::domain::order::Decided;
use crate::domain::request_id::RequestId;

/// Units per SKU, the first answer per request id, units held per buyer.
/// Clones share the ledger (two instances of a sale on one Redis).
#[derive(Default, Clone)]
struct MemoryStock {
    state: Arc<Mutex<MemoryState>>,
    fail: Arc<std::sync::atomic::AtomicBool>,
}

#[derive(Default)]
struct MemoryState {
    units: HashMap<u64, u64>,
    answers: HashMap<String, Deduction>,
    held: HashMap<(u64, u64), u64>,
    granted: HashMap<u64, HashSet<String>>,
    calls: usize,
}

impl GrantRecord for MemoryStock {
    fn granted(&self, sku: u64) -> BoxFuture<'_, Result<HashSet<String>, Unavailable>> {
        let ids = self.state.lock().unwrap().granted.get(&sku).cloned();
        Box::pin(async move { Ok(ids.unwrap_or_default()) })
    }
}

impl StockLedger for MemoryStock {
    async fn deduct(&self, p: &Purchase, limit: u64) -> Result<Deduction, Unavailable> {
        if self.fail.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(Unavailable::new(
                crate::domain::ports::Service::Stock,
                "down",
            ));
        }
        let mut s = self.state.lock().unwrap();
        s.calls += 1;
        if let Some(first) = s.answers.get(p.request_id.as_str()) {
            return Ok(match *first {
                Deduction::Granted { .. } => Deduction::Granted { replayed: true },
                Deduction::SoldOut { .. } => Deduction::SoldOut { replayed: true },
                other => other,
            });
        }
        let Some(&left) = s.units.get(&p.sku_id) else {
            return Ok(Deduction::UnknownSku);
        };
        let qty = u64::from(p.quantity);
        let held = s.held.get(&(p.user_id, p.sku_id)).copied().unwrap_or(0);
        let answer = if held + qty > limit {
            Deduction::LimitExceeded
        } else if left == 0 {
            Deduction::SoldOut { replayed: false }
        } else if left < qty {
            Deduction::Insufficient {
                available: left,
                replayed: false,
            }
        } else {
            s.units.insert(p.sku_id, left - qty);
            *s.held.entry((p.user_id, p.sku_id)).or_default() += qty;
            s.granted
                .entry(p.sku_id)
                .or_default()
                .insert(p.request_id.to_string());
            Deduction::Granted { replayed: false }
        };
        s.answers.insert(p.request_id.to_string(), answer);
        Ok(answer)
    }

    async fn set_units(&self, sku: u64, units: u64) -> Result<(), Unavailable> {
        self.state.lock().unwrap().units.insert(sku, units);
        Ok(())
    }

    async fn units_left(&self, sku: u64) -> Result<u64, Unavailable> {
        Ok(self
            .state
            .lock()
            .unwrap()
            .units
            .get(&sku)
            .copied()
            .unwrap_or(0))
    }

    async fn decided(&self, _: &RequestId) -> Result<Option<Decided>, Unavailable> {
        Ok(None)
    }
}

/// Orders handed off, or closed.
#[derive(Default)]
struct MemoryQueue {
    orders: Mutex<Vec<Order>>,
    closed: std::sync::atomic::AtomicBool,
}

impl OrderQueue for MemoryQueue {
    async fn enqueue(&self, order: Order) -> Result<(), Order> {
        if self.closed.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(order);
        }
        self.orders.lock().unwrap().push(order);
        Ok(())
    }
}

fn rules() -> SaleRules {
    SaleRules {
        per_user_limit: 1,
        max_quantity: 10,
        ip_rate: 1_000,
        ip_burst: 1_000,
        user_rate: 1_000,
        user_burst: 1_000,
        device_rate: 1_000,
        device_burst: 1_000,
        global_rate: 1_000_000,
        global_capacity: 1_000_000,
        sold_out_recheck: Duration::from_secs(60),
        remembered_answers: 1_000,
    }
}

fn sale(rules: SaleRules) -> Sale<MemoryStock, MemoryQueue> {
    instance(rules, MemoryStock::default())
}

/// One instance of a sale on `stock` (clones of one stock: several instances).
fn instance(rules: SaleRules, stock: MemoryStock) -> Sale<MemoryStock, MemoryQueue> {
    let grants = Arc::new(stock.clone());
    Sale::new(
        rules,
        stock,
        MemoryQueue::default(),
        grants,
        Arc::new(Metrics::default()),
    )
    .unwrap()
}

/// Waits until the flag of `sku` knows its grants (they load in the background).
async fn grants_loaded(sale: &Sale<MemoryStock, MemoryQueue>, sku: u64) {
    for _ in 0..5_000 {
        if !matches!(sale.sold_out.check(sku, "-"), sold_out::Check::Unknown) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("the grants of SKU {sku} never loaded");
}

fn buy(id: &str, user: u64, sku: u64, quantity: u32) -> Purchase {
    Purchase {
        request_id: RequestId::parse(id).unwrap(),
        user_id: user,
        sku_id: sku,
        quantity,
    }
}

const IP: Client = Client::at(IpAddr::V4(Ipv4Addr::LOCALHOST));

#[tokio::test]
async fn a_device_is_limited_across_the_users_on_it() {
    let sale = sale(SaleRules {
        device_rate: 1,
        device_burst: 2,
        ..rules()
    });
    let phone = Client {
        device: Some(
            crate::domain::buyer::DeviceId::parse("phone")
                .unwrap()
                .key(),
        ),
        ..IP
    };
    sale.restock(7, 10).await.unwrap();
    // Three users on one device: the third is over the device's burst,
    // and nothing was decided for it (no ledger call). The same users
    // without the device are not limited by it.
    for (id, user) in [("a", 1), ("b", 2)] {
        assert_eq!(
            sale.purchase(phone, buy(id, user, 7, 1)).await.unwrap(),
            Answer::Queued
        );
    }
    let before = calls(&sale);
    assert!(matches!(
        sale.purchase(phone, buy("c", 3, 7, 1)).await.unwrap(),
        Answer::RateLimited {
            limit: RateLimit::Device,
            ..
        }
    ));
    assert_eq!(calls(&sale), before);
    assert_eq!(
        sale.purchase(IP, buy("c", 3, 7, 1)).await.unwrap(),
        Answer::Queued
    );
}

fn calls(sale: &Sale<MemoryStock, MemoryQueue>) -> usize {
    sale.stock.state.lock().unwrap().calls
}

#[tokio::test]
async fn grants_queue_once_and_replays_answer_the_same() {
    let sale = sale(rules());
    sale.restock(7, 2).await.unwrap();
    assert_eq!(
        sale.purchase(IP, buy("a", 1, 7, 1)).await.unwrap(),
        Answer::Queued
    );
    assert_eq!(
        sale.purchase(IP, buy("a", 1, 7, 1)).await.unwrap(),
        Answer::Queued
    );
    assert_eq!(sale.queue.orders.lock().unwrap().len(), 1);
    assert_eq!(
        sale.purchase(IP, buy("b", 1, 7, 1)).await.unwrap(),
        Answer::LimitExceeded
    );
    assert_eq!(
        sale.purchase(IP, buy("c", 2, 7, 5)).await.unwrap(),
        Answer::LimitExceeded
    );
    assert!(matches!(
        sale.purchase(IP, buy("d", 3, 8, 1)).await,
        Err(PurchaseError::UnknownSku(8))
    ));
}

#[tokio::test]
async fn a_limit_of_n_is_n_units_across_requests() {
    let sale = sale(SaleRules {
        per_user_limit: 3,
        ..rules()
    });
    sale.restock(1, 100).await.unwrap();
    assert_eq!(
        sale.purchase(IP, buy("a", 1, 1, 1)).await.unwrap(),
        Answer::Queued
    );
    assert_eq!(
        sale.purchase(IP, buy("b", 1, 1, 2)).await.unwrap(),
        Answer::Queued
    );
    assert_eq!(
        sale.purchase(IP, buy("c", 1, 1, 1)).await.unwrap(),
        Answer::LimitExceeded
    );
    assert_eq!(
        sale.purchase(IP, buy("d", 2, 1, 4)).await.unwrap(),
        Answer::LimitExceeded
    );
    assert_eq!(
        sale.purchase(IP, buy("e", 2, 1, 3)).await.unwrap(),
        Answer::Queued
    );
    let units: u32 = sale
        .queue
        .orders
        .lock()
        .unwrap()
        .iter()
        .map(|o| o.quantity)
        .sum();
    assert_eq!(units, 6);
}

#[tokio::test]
async fn the_flag_answers_without_the_ledger_and_keeps_first_answers() {
    let sale = sale(rules());
    sale.restock(7, 1).await.unwrap();
    assert_eq!(
        sale.purchase(IP, buy("a", 1, 7, 1)).await.unwrap(),
        Answer::Queued
    );
    assert_eq!(
        sale.purchase(IP, buy("b", 1, 7, 1)).await.unwrap(),
        Answer::LimitExceeded
    );
    assert_eq!(
        sale.purchase(IP, buy("c", 2, 7, 1)).await.unwrap(),
        Answer::SoldOut
    );
    grants_loaded(&sale, 7).await;
    let before = calls(&sale);
    assert_eq!(
        sale.purchase(IP, buy("d", 3, 7, 1)).await.unwrap(),
        Answer::SoldOut
    );
    // Retries after the sell-out get their first answers, from the flag
    // (every grant) and from memory (over the limit).
    assert_eq!(
        sale.purchase(IP, buy("a", 1, 7, 1)).await.unwrap(),
        Answer::Queued
    );
    assert_eq!(
        sale.purchase(IP, buy("b", 1, 7, 1)).await.unwrap(),
        Answer::LimitExceeded
    );
    assert_eq!(calls(&sale), before);
    assert_eq!(sale.metrics.sold_out_local.get(), 3);
    // A restock here clears the flag.
    sale.restock(7, 1).await.unwrap();
    assert_eq!(
        sale.purchase(IP, buy("e", 4, 7, 1)).await.unwrap(),
        Answer::Queued
    );
}

#[tokio::test]
async fn insufficient_is_not_sold_out() {
    let sale = sale(SaleRules {
        per_user_limit: 10,
        ..rules()
    });
    sale.restock(1, 2).await.unwrap();
    assert_eq!(
        sale.purchase(IP, buy("a", 1, 1, 3)).await.unwrap(),
        Answer::Insufficient { available: 2 }
    );
    assert_eq!(
        sale.purchase(IP, buy("b", 1, 1, 2)).await.unwrap(),
        Answer::Queued
    );
}

#[tokio::test]
async fn rate_limited_requests_decide_nothing() {
    let sale = sale(SaleRules {
        user_rate: 1,
        user_burst: 1,
        ..rules()
    });
    sale.restock(1, 10).await.unwrap();
    assert_eq!(
        sale.purchase(IP, buy("a", 1, 1, 1)).await.unwrap(),
        Answer::Queued
    );
    let answer = sale.purchase(IP, buy("b", 1, 1, 1)).await.unwrap();
    assert!(matches!(
        answer,
        Answer::RateLimited { retry_after, limit: RateLimit::User } if retry_after > Duration::ZERO
    ));
    assert_eq!(calls(&sale), 1);
}

#[tokio::test]
async fn a_ledger_failure_is_an_error_and_a_closed_queue_still_answers_queued() {
    let sale = sale(rules());
    sale.restock(1, 10).await.unwrap();
    sale.stock
        .fail
        .store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(matches!(
        sale.purchase(IP, buy("a", 1, 1, 1)).await,
        Err(PurchaseError::Unavailable(_))
    ));
    sale.stock
        .fail
        .store(false, std::sync::atomic::Ordering::Relaxed);
    sale.queue
        .closed
        .store(true, std::sync::atomic::Ordering::Relaxed);
    // Granted in the ledger: the reconciler finds it in the deduction log.
    assert_eq!(
        sale.purchase(IP, buy("a", 1, 1, 1)).await.unwrap(),
        Answer::Queued
    );
    assert!(sale.queue.orders.lock().unwrap().is_empty());
}

#[tokio::test]
async fn thousands_of_buyers_never_oversell() {
    let sale = Arc::new(sale(rules()));
    sale.restock(1, 500).await.unwrap();
    let tasks: Vec<_> = (0..3_000u64)
        .map(|user| {
            let sale = Arc::clone(&sale);
            tokio::spawn(async move {
                sale.purchase(IP, buy(&format!("u{user}"), user, 1, 1))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut queued = 0;
    for task in tasks {
        if task.await.unwrap() == Answer::Queued {
            queued += 1;
        }
    }
    assert_eq!(queued, 500);
    assert_eq!(sale.queue.orders.lock().unwrap().len(), 500);
}

#[tokio::test]
async fn a_grant_replayed_on_another_instance_after_the_sell_out_is_queued() {
    let stock = MemoryStock::default();
    let first = instance(rules(), stock.clone());
    let second = instance(rules(), stock);
    first.restock(7, 1).await.unwrap();
    assert_eq!(
        first.purchase(IP, buy("a", 1, 7, 1)).await.unwrap(),
        Answer::Queued
    );
    // The second instance learns of the sell-out from the ledger.
    assert_eq!(
        second.purchase(IP, buy("b", 2, 7, 1)).await.unwrap(),
        Answer::SoldOut
    );
    grants_loaded(&second, 7).await;
    let before = calls(&second);
    assert_eq!(
        second.purchase(IP, buy("a", 1, 7, 1)).await.unwrap(),
        Answer::Queued
    );
    assert_eq!(
        second.purchase(IP, buy("c", 3, 7, 1)).await.unwrap(),
        Answer::SoldOut
    );
    assert_eq!(calls(&second), before, "the flag answered both");
    assert_eq!(second.queue.orders.lock().unwrap().len(), 0);
}

/// 3,000 buyers for 300 units on two instances; one request in five is
/// sent twice at the same moment, once to each instance. Every request id
/// gets one answer as far as granted-or-not goes, and grants are exactly
/// the stock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_replays_on_two_instances_never_change_a_grant() {
    let stock = MemoryStock::default();
    // One client address for everyone: no rate limit may get in the way.
    let open = SaleRules {
        ip_rate: 10_000_000,
        ip_burst: 10_000_000,
        ..rules()
    };
    let a = Arc::new(instance(open.clone(), stock.clone()));
    let b = Arc::new(instance(open, stock.clone()));
    a.restock(1, 300).await.unwrap();
    b.restock(1, 300).await.unwrap();
    let tasks: Vec<_> = (0..3_000u64)
        .map(|user| {
            let (a, b) = (Arc::clone(&a), Arc::clone(&b));
            tokio::spawn(async move {
                let id = format!("u{user}");
                let one = a.purchase(IP, buy(&id, user, 1, 1));
                if user % 5 == 0 {
                    let (x, y) = tokio::join!(one, b.purchase(IP, buy(&id, user, 1, 1)));
                    vec![x.unwrap(), y.unwrap()]
                } else {
                    vec![one.await.unwrap()]
                }
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    // And every request once more, on each instance, after the sell-out.
    grants_loaded(&a, 1).await;
    grants_loaded(&b, 1).await;
    for (user, first) in answers.iter_mut().enumerate() {
        let id = format!("u{user}");
        let user = user as u64;
        first.push(a.purchase(IP, buy(&id, user, 1, 1)).await.unwrap());
        first.push(b.purchase(IP, buy(&id, user, 1, 1)).await.unwrap());
    }
    let mut granted = 0;
    for (user, seen) in answers.iter().enumerate() {
        let queued = seen.iter().filter(|x| **x == Answer::Queued).count();
        assert!(
            queued == 0 || queued == seen.len(),
            "request u{user} got {seen:?}"
        );
        if queued > 0 {
            granted += 1;
        }
    }
    assert_eq!(granted, 300);
    let handed = a.queue.orders.lock().unwrap().len() + b.queue.orders.lock().unwrap().len();
    assert_eq!(handed, 300);
}
