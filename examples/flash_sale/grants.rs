//! Every grant of a SKU, for the local sold-out flag ([`GrantRecord`]):
//! the deduction log in Redis first, then the orders in MySQL.
//!
//! The order of the two reads is what makes the set exact while the
//! reconciler trims the log: it only trims entries that are durable (an
//! order or a refusal in MySQL), so an entry trimmed before the log read
//! is already in MySQL when MySQL is read after it. Read the other way
//! round, an entry trimmed between the two reads would be in neither.

use std::collections::HashSet;

use futures::future::BoxFuture;
use seckill::stock_lua::LogKind;

use crate::domain::ports::{GrantRecord, Service, Unavailable};
use crate::redis::stock::RedisStock;
use crate::store::Store;

/// The grants of every SKU, from Redis and MySQL. Cheap to clone.
#[derive(Clone)]
pub struct GrantLog {
    stock: RedisStock,
    store: Store,
}

impl GrantLog {
    /// Grants read from `stock`'s deduction logs and `store`'s orders.
    pub fn new(stock: RedisStock, store: Store) -> Self {
        Self { stock, store }
    }

    async fn read(&self, sku: u64) -> Result<HashSet<String>, Unavailable> {
        let log = self
            .stock
            .whole_log(sku)
            .await
            .map_err(|e| Unavailable::new(Service::Stock, e))?;
        let mut ids: HashSet<String> = log
            .into_iter()
            .filter(|e| e.kind == LogKind::Deduction)
            .map(|e| e.request_id)
            .collect();
        let durable = self
            .store
            .granted_requests(sku)
            .await
            .map_err(|e| Unavailable::new(Service::Database, e))?;
        ids.extend(durable);
        Ok(ids)
    }
}

impl GrantRecord for GrantLog {
    fn granted(&self, sku: u64) -> BoxFuture<'_, Result<HashSet<String>, Unavailable>> {
        Box::pin(self.read(sku))
    }
}
