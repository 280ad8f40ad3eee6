//! Shared by the integration tests: the reproducible proptest configuration.
#![allow(dead_code, clippy::expect_used)]

use proptest::test_runner::{Config as ProptestConfig, RngSeed};

/// The seed every property test starts from unless `PROPTEST_RNG_SEED` says
/// otherwise, so that a failure on one machine replays on another.
pub(crate) const DEFAULT_SEED: u64 = 0x5EC0_0001_0005_F117;

/// A proptest configuration with `cases` cases (unless `PROPTEST_CASES` is
/// set, which proptest's default configuration already reads) and a fixed
/// seed: `PROPTEST_RNG_SEED` when set and not empty (a decimal `u64`), else [`DEFAULT_SEED`].
pub(crate) fn proptest_config(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    let seed = match std::env::var("PROPTEST_RNG_SEED") {
        Ok(seed) if !seed.trim().is_empty() => seed
            .trim()
            .parse()
            .expect("PROPTEST_RNG_SEED must be a decimal u64, e.g. PROPTEST_RNG_SEED=42"),
        _ => DEFAULT_SEED,
    };
    config.rng_seed = RngSeed::Fixed(seed);
    config
}
