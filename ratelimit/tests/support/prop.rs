//! The one proptest configuration every test of this crate uses: a fixed
//! seed, so a failure reproduces, and an explicit number of cases per test.
//!
//! - `PROPTEST_RNG_SEED=<u64>` runs with another seed (the default is [`SEED`]).
//! - `PROPTEST_CASES=<n>` runs `n` cases in every test instead of its own count.
#![allow(dead_code, unreachable_pub)]

use proptest::test_runner::{Config as ProptestConfig, RngSeed};

/// The seed used when `PROPTEST_RNG_SEED` is not set.
pub const SEED: u64 = 0x5EC_0C11_2026;

/// `cases` cases (unless `PROPTEST_CASES` is set) from a fixed seed (unless
/// `PROPTEST_RNG_SEED` is set), on top of proptest's defaults.
pub fn proptest_config(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    let seed = std::env::var("PROPTEST_RNG_SEED")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(SEED);
    config.rng_seed = RngSeed::Fixed(seed);
    config
}
