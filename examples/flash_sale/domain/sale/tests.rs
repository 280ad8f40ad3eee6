//! The decision chain on an in-memory stock ledger and order queue: the
//! rules of the sale, without Redis or Kafka (their real behaviour is tested
//! in `tests/`).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;

use super::*;
use crate::domain::order::Decided;
use crate::domain::request_id::RequestId;

/// Units per SKU, the first answer per request id, units held per buyer.
#[derive(Default)]
struct MemoryStock {
    state: Mutex<MemoryState>,
    fail: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct MemoryState {
    units: HashMap<u64, u64>,
    answers: HashMap<String, Deduction>,
    held: HashMap<(u64, u64), u64>,
    calls: usize,
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
        global_rate: 1_000_000,
        global_capacity: 1_000_000,
        sold_out_recheck: Duration::from_secs(60),
        remembered_answers: 1_000,
    }
}

fn sale(rules: SaleRules) -> Sale<MemoryStock, MemoryQueue> {
    Sale::new(
        rules,
        MemoryStock::default(),
        MemoryQueue::default(),
        Arc::new(Metrics::default()),
    )
    .unwrap()
}

fn buy(id: &str, user: u64, sku: u64, quantity: u32) -> Purchase {
    Purchase {
        request_id: RequestId::parse(id).unwrap(),
        user_id: user,
        sku_id: sku,
        quantity,
    }
}

const IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

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
    let before = calls(&sale);
    assert_eq!(
        sale.purchase(IP, buy("d", 3, 7, 1)).await.unwrap(),
        Answer::SoldOut
    );
    // Retries after the sell-out get their first answers, from memory.
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
    assert!(matches!(answer, Answer::RateLimited { retry_after } if retry_after > Duration::ZERO));
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
