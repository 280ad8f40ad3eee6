//! What the tests share: a handler log, and the proptest configuration.
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

/// The seed every property test starts from unless `PROPTEST_RNG_SEED` says
/// otherwise, so that a run is the same on every machine.
pub(crate) const DEFAULT_SEED: u64 = 0x5ec1_1ba7_c4e5_2026;

/// Proptest settings for one test: `cases` cases (unless `PROPTEST_CASES`
/// is set, which proptest's default configuration reads) and a fixed RNG
/// seed: `PROPTEST_RNG_SEED` when set, else [`DEFAULT_SEED`].
pub(crate) fn proptest_config(cases: u32) -> proptest::test_runner::Config {
    let mut config = proptest::test_runner::Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    let seed = match std::env::var("PROPTEST_RNG_SEED") {
        Ok(seed) => seed
            .trim()
            .parse()
            .expect("PROPTEST_RNG_SEED must be an unsigned 64-bit integer"),
        Err(_) => DEFAULT_SEED,
    };
    config.rng_seed = proptest::test_runner::RngSeed::Fixed(seed);
    config
}
