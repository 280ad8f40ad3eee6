//! What the tests share: a handler log.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use seckill_batcher::{Batch, Trigger};
use tokio::time::Instant;

/// One handler call as the handler saw it.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub(crate) bucket: usize,
    pub(crate) trigger: Trigger,
    pub(crate) attempt: u32,
    pub(crate) items: Vec<u64>,
    pub(crate) at: Instant,
}

/// Every handler call, in the order they happened.
#[derive(Debug, Clone, Default)]
pub(crate) struct Log(Arc<Mutex<Vec<Call>>>);

impl Log {
    pub(crate) fn record(&self, batch: &Batch<u64>) {
        self.0.lock().unwrap().push(Call {
            bucket: batch.bucket(),
            trigger: batch.trigger(),
            attempt: batch.attempt(),
            items: batch.to_vec(),
            at: Instant::now(),
        });
    }

    pub(crate) fn calls(&self) -> Vec<Call> {
        self.0.lock().unwrap().clone()
    }

    /// (size, trigger) of each call.
    pub(crate) fn shape(&self) -> Vec<(usize, Trigger)> {
        self.calls()
            .iter()
            .map(|c| (c.items.len(), c.trigger))
            .collect()
    }

    pub(crate) fn items(&self) -> Vec<u64> {
        self.calls().into_iter().flat_map(|c| c.items).collect()
    }
}
