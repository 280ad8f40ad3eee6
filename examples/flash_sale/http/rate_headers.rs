//! The rate-limit headers of a 429: `RateLimit-Policy` and `RateLimit` of
//! draft-ietf-httpapi-ratelimit-headers, rendered by `seckill-overload`'s
//! `Policy` (the same syntax its tower layer answers with).
//!
//! Each token bucket is described as its burst (`q`) over the seconds it
//! takes to refill (`w`, at least 1); `RateLimit` says nothing is left
//! (`r=0`) until `t`, the `Retry-After` seconds.

use axum::http::{HeaderMap, HeaderName};
use seckill::overload::ConfigError;
use seckill::overload::rate_limit::Policy;

use crate::domain::purchase::RateLimit;
use crate::domain::sale::SaleRules;

const POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// The policy of each limit of a sale.
#[derive(Debug, Clone)]
pub struct RatePolicies {
    ip: Policy,
    user: Policy,
    device: Policy,
    instance: Policy,
}

impl RatePolicies {
    /// The policies of `rules`' limits.
    ///
    /// # Errors
    ///
    /// A quota or window out of the header's range (not with validated rules).
    pub fn new(rules: &SaleRules) -> Result<Self, ConfigError> {
        let policy = |limit: RateLimit, rate: u32, burst: u32| {
            let window = u64::from(burst).div_ceil(u64::from(rate.max(1))).max(1);
            Policy::try_new(limit.name(), u64::from(burst), window)
        };
        Ok(Self {
            ip: policy(RateLimit::Ip, rules.ip_rate, rules.ip_burst)?,
            user: policy(RateLimit::User, rules.user_rate, rules.user_burst)?,
            device: policy(RateLimit::Device, rules.device_rate, rules.device_burst)?,
            instance: policy(
                RateLimit::Instance,
                rules.global_rate,
                rules.global_capacity,
            )?,
        })
    }

    /// Adds the headers of a refusal by `limit`, retry in `retry_secs`.
    pub fn insert(&self, limit: RateLimit, retry_secs: u64, headers: &mut HeaderMap) {
        let policy = match limit {
            RateLimit::Ip => &self.ip,
            RateLimit::User => &self.user,
            RateLimit::Device => &self.device,
            RateLimit::Instance => &self.instance,
        };
        headers.insert(POLICY, policy.header_value().clone());
        headers.insert(RATELIMIT, policy.ratelimit_value(0, retry_secs));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_limit_has_its_policy() {
        let rules = SaleRules {
            per_user_limit: 1,
            max_quantity: 1,
            ip_rate: 50,
            ip_burst: 100,
            user_rate: 1,
            user_burst: 3,
            device_rate: 2,
            device_burst: 5,
            global_rate: 20_000,
            global_capacity: 2_000,
            sold_out_recheck: std::time::Duration::from_millis(500),
            remembered_answers: 1,
        };
        let policies = RatePolicies::new(&rules).unwrap();
        let mut headers = HeaderMap::new();
        for (limit, policy, now) in [
            (RateLimit::Ip, "\"per-ip\";q=100;w=2", "\"per-ip\";r=0;t=1"),
            (
                RateLimit::User,
                "\"per-user\";q=3;w=3",
                "\"per-user\";r=0;t=1",
            ),
            (
                RateLimit::Device,
                "\"per-device\";q=5;w=3",
                "\"per-device\";r=0;t=1",
            ),
            (
                RateLimit::Instance,
                "\"per-instance\";q=2000;w=1",
                "\"per-instance\";r=0;t=1",
            ),
        ] {
            policies.insert(limit, 1, &mut headers);
            assert_eq!(headers[&POLICY], policy);
            assert_eq!(headers[&RATELIMIT], now);
        }
    }
}
