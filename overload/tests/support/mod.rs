//! What the integration tests share: the proptest configuration.
#![allow(dead_code, unreachable_pub, clippy::expect_used)]

use proptest::test_runner::{Config, RngSeed};

/// The seed every property test starts from unless `PROPTEST_RNG_SEED` says
/// otherwise, so that a run is the same on every machine.
pub const DEFAULT_SEED: u64 = 0x0e71_0ad5_2026_c0de;

/// Proptest settings for one test: `cases` cases (unless `PROPTEST_CASES`
/// is set, which proptest's default configuration reads) and a fixed RNG
/// seed: `PROPTEST_RNG_SEED` when set, else [`DEFAULT_SEED`].
pub fn proptest_config(cases: u32) -> Config {
    let mut config = Config::default();
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
    config.rng_seed = RngSeed::Fixed(seed);
    config
}
