//! The identity flags: token lifetime, per-device limits, blacklist
//! refresh, the challenge. Each number has a range, checked at start.

use std::time::Duration;

use clap::Args;

use super::challenge::BITS_MAX;
use crate::config::{RangeError, check_ranges};

/// Who may buy, and what they must prove.
#[derive(Debug, Clone, Args)]
pub struct IdentitySettings {
    /// Serve `POST /api/v1/demo/token`, which mints a token for any user id:
    /// a demo's stand-in for a login service, never for production (`demo`
    /// turns it on).
    #[arg(long, global = true, env = "SECKILL_DEMO_TOKENS")]
    pub demo_tokens: bool,
    /// Lifetime of a token minted by the demo endpoint or the load generator (s, 1–86,400).
    #[arg(long, global = true, default_value_t = 3_600)]
    pub token_ttl_s: u64,
    /// Requests per second per device bound into a token (1–10,000,000).
    #[arg(long, global = true, default_value_t = 2)]
    pub device_rate: u32,
    /// Burst per device (1–10,000,000).
    #[arg(long, global = true, default_value_t = 5)]
    pub device_burst: u32,
    /// How often each instance reads the shared blacklist's version from
    /// Redis, reloading the lists when it changed (ms, 100–60,000).
    #[arg(long, global = true, default_value_t = 1_000)]
    pub blacklist_refresh_ms: u64,
    /// Leading zero bits of the proof-of-work challenge a purchase must
    /// carry (0 = no challenge, 1–24; each bit doubles the client's work).
    #[arg(long, global = true, default_value_t = 0)]
    pub challenge_bits: u32,
    /// Lifetime of a challenge puzzle (s, 1–3,600).
    #[arg(long, global = true, default_value_t = 120)]
    pub challenge_ttl_s: u64,
}

impl IdentitySettings {
    /// Every number with its flag and valid range.
    pub fn ranges(&self) -> [(&'static str, u64, u64, u64); 6] {
        [
            ("token-ttl-s", self.token_ttl_s, 1, 86_400),
            ("device-rate", u64::from(self.device_rate), 1, 10_000_000),
            ("device-burst", u64::from(self.device_burst), 1, 10_000_000),
            (
                "blacklist-refresh-ms",
                self.blacklist_refresh_ms,
                100,
                60_000,
            ),
            (
                "challenge-bits",
                u64::from(self.challenge_bits),
                0,
                u64::from(BITS_MAX),
            ),
            ("challenge-ttl-s", self.challenge_ttl_s, 1, 3_600),
        ]
    }

    /// Checks every number against its range.
    ///
    /// # Errors
    ///
    /// The first setting out of range.
    pub fn validate(&self) -> Result<(), RangeError> {
        check_ranges(&self.ranges())
    }

    /// Lifetime of minted tokens.
    pub fn token_ttl(&self) -> Duration {
        Duration::from_secs(self.token_ttl_s)
    }
}
