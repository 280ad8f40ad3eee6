//! Test support shared by the test binaries: the proptest configuration.
#![allow(dead_code, unreachable_pub)]

use proptest::test_runner::{Config as ProptestConfig, RngSeed};

/// The seed used when `PROPTEST_RNG_SEED` is not set, so every run of the
/// property tests draws the same cases.
pub const DEFAULT_SEED: u64 = 0x5EC1_C115_70C4;

/// The proptest configuration of every property test in this crate: `cases`
/// cases unless `PROPTEST_CASES` is set (proptest's default config reads it),
/// and a fixed seed, `PROPTEST_RNG_SEED` when set, else [`DEFAULT_SEED`].
pub fn proptest_config(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    let seed = std::env::var("PROPTEST_RNG_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(DEFAULT_SEED);
    config.rng_seed = RngSeed::Fixed(seed);
    // The tests run against a shared Redis: no forked processes, no
    // persisted failure files in the source tree.
    config.failure_persistence = None;
    config
}
