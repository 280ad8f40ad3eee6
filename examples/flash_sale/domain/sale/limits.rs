//! Turning the crowd away cheaply: per-IP, per-user and per-device token
//! buckets, and one leaky bucket in front of Redis for the whole instance.

use std::net::IpAddr;

use seckill::ratelimit::{ConfigError, Denied, Keyed, LeakyBucket, TokenBucket};

use super::SaleRules;
use crate::domain::buyer::Client;
use crate::domain::purchase::RateLimit;

/// Most clients (IPs, users or devices) tracked per limiter; idle ones are evicted.
const MAX_KEYS: usize = 1_000_000;

/// The instance's rate limits.
pub struct Limits {
    per_ip: Keyed<IpAddr, TokenBucket>,
    per_user: Keyed<u64, TokenBucket>,
    per_device: Keyed<u64, TokenBucket>,
    global: LeakyBucket,
}

impl Limits {
    /// Builds the limiters.
    ///
    /// # Errors
    ///
    /// A zero rate, burst or capacity (the app's settings are validated
    /// before; this is the limiter's own check).
    pub fn new(settings: &SaleRules) -> Result<Self, ConfigError> {
        let (ip_rate, ip_burst) = (settings.ip_rate, settings.ip_burst);
        let (user_rate, user_burst) = (settings.user_rate, settings.user_burst);
        let (device_rate, device_burst) = (settings.device_rate, settings.device_burst);
        // Validate once, so the factories below cannot fail.
        TokenBucket::try_new(ip_rate, ip_burst)?;
        TokenBucket::try_new(user_rate, user_burst)?;
        TokenBucket::try_new(device_rate, device_burst)?;
        Ok(Self {
            per_ip: Keyed::new(TokenBucket::new(ip_rate, ip_burst)).max_keys(MAX_KEYS),
            per_user: Keyed::new(TokenBucket::new(user_rate, user_burst)).max_keys(MAX_KEYS),
            per_device: Keyed::new(TokenBucket::new(device_rate, device_burst)).max_keys(MAX_KEYS),
            global: LeakyBucket::try_new(settings.global_rate, settings.global_capacity)?,
        })
    }

    /// Takes one request of `user` from `client` through the per-client
    /// limits (IP, user, then the bound device if any).
    ///
    /// # Errors
    ///
    /// The first limit that refused, with when to retry.
    pub fn check_client(&self, client: Client, user: u64) -> Result<(), (Denied, RateLimit)> {
        let refused = |limit| move |denied| (denied, limit);
        self.per_ip
            .try_acquire(&client.ip, 1)
            .map_err(refused(RateLimit::Ip))?;
        self.per_user
            .try_acquire(&user, 1)
            .map_err(refused(RateLimit::User))?;
        match client.device {
            Some(device) => self
                .per_device
                .try_acquire(&device, 1)
                .map_err(refused(RateLimit::Device)),
            None => Ok(()),
        }
    }

    /// Takes one request through the instance-wide bucket in front of Redis.
    ///
    /// # Errors
    ///
    /// The bucket is full.
    pub fn check_global(&self) -> Result<(), Denied> {
        self.global.try_acquire(1)
    }
}
