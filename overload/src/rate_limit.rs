//! Keyed rate limits as a tower layer: `seckill-ratelimit`'s [`Keyed`]
//! limiters in front of an HTTP service, keyed by what a [`KeyExtractor`]
//! reads from the request (client IP, a header, the path, or a closure),
//! answering `429 Too Many Requests` with `Retry-After` and the IETF
//! `RateLimit` / `RateLimit-Policy` headers.
//!
//! Two ways to use it, one design:
//!
//! - [`RateLimiter`], a plain handle (an `Arc` inside, cheap to clone):
//!   [`RateLimiter::check`] on a request or [`RateLimiter::check_key`] on a
//!   key, answering `Ok(())` or a [`RateLimited`] error, synchronously.
//! - [`RateLimitLayer`] / [`RateLimitService`], the same handle as a tower
//!   layer for any `Service<http::Request<B>, Response = http::Response<RB>>`
//!   (an axum `Router`, a hyper service).
//!
//! # Headers
//!
//! The headers follow the structured-field syntax of
//! [draft-ietf-httpapi-ratelimit-headers-10] (the same as in -09):
//!
//! ```text
//! HTTP/1.1 429 Too Many Requests
//! retry-after: 3
//! ratelimit-policy: "per-ip";q=10;w=2
//! ratelimit: "per-ip";r=0;t=3
//! ```
//!
//! - `Retry-After` is [`Denied::retry_after`] in whole seconds, rounded up,
//!   at least 1 (and at most 999,999,999,999,999, the largest structured-field
//!   integer, for a request that can never pass).
//! - `RateLimit-Policy` is the [`Policy`] given to the builder: its name, its
//!   quota `q` and its window `w` in seconds. It is also added to admitted
//!   responses unless [`RateLimiterBuilder::policy_on_success`] turns it off.
//! - `RateLimit` is sent on refusals only, with `r=0` and `t` equal to
//!   `Retry-After`: [`Keyed`] does not report how many units a key has left,
//!   and a guessed `r` on admitted responses would mislead clients.
//!
//! # Costs
//!
//! A request costs one [`Keyed::try_acquire`] (a read lock on one of 64
//! shards and one compare-and-swap for a known key) plus the extractor. A
//! refusal is answered from [`Service::call`] without calling the inner
//! service and without awaiting anything: the returned future is ready at
//! its first poll.
//!
//! [draft-ietf-httpapi-ratelimit-headers-10]: https://datatracker.ietf.org/doc/draft-ietf-httpapi-ratelimit-headers/10/

use std::borrow::Borrow;
use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderName, HeaderValue, Request, Response, StatusCode, header};
use seckill_ratelimit::{DenyReason, Keyed, KeyedLimiter};
use tower_layer::Layer;
use tower_service::Service;

use crate::config::ConfigError;

pub use seckill_ratelimit::Denied;

/// The largest structured-field integer (RFC 8941 §3.3.1): the upper bound of
/// a [`Policy`]'s quota and window, and of the `Retry-After` / `t` values sent.
pub const MAX_SF_INTEGER: u64 = 999_999_999_999_999;

/// The longest [`Policy`] name accepted: 64 bytes.
pub const MAX_POLICY_NAME_LEN: usize = 64;

/// The largest `max_len` of [`HeaderKey`] and [`RoutePath`]: 4096 bytes.
pub const MAX_KEY_LEN: usize = 4096;

/// The default `max_len` of [`HeaderKey`] and [`RoutePath`]: 256 bytes.
pub const DEFAULT_MAX_KEY_LEN: usize = 256;

/// The `RateLimit-Policy` header name (lower case, as HTTP/2 sends it).
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// The `RateLimit` header name (lower case, as HTTP/2 sends it).
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

fn check_range(
    field: &'static str,
    range: &'static str,
    got: u64,
    min: u64,
    max: u64,
) -> Result<(), ConfigError> {
    if (min..=max).contains(&got) {
        Ok(())
    } else {
        Err(ConfigError::new(field, range, got))
    }
}

/// What a policy name may hold.
const POLICY_NAME_RANGE: &str =
    "1 to 64 bytes of printable ASCII (0x20 to 0x7E) other than '\"' and '\\'";

/// The quota policy advertised in `RateLimit-Policy` and named in `RateLimit`.
///
/// It describes the limiter to clients; it does not configure it (the
/// [`Keyed`] map's template limiter does). For a token bucket of `burst`
/// tokens refilled at `rate` per second, `q = burst` and `w = ceil(burst /
/// rate)` describe it.
///
/// | field | valid range |
/// |---|---|
/// | `name` | 1 to 64 bytes of printable ASCII other than `"` and `\` |
/// | `quota` | 1 to 999,999,999,999,999 ([`MAX_SF_INTEGER`]) |
/// | `window_secs` | 1 to 999,999,999,999,999 seconds ([`MAX_SF_INTEGER`]) |
///
/// # Examples
///
/// ```
/// use seckill_overload::rate_limit::Policy;
///
/// let policy = Policy::try_new("per-ip", 10, 2).unwrap();
/// assert_eq!(policy.header_value(), "\"per-ip\";q=10;w=2");
/// let err = Policy::try_new("per-ip", 0, 2).unwrap_err();
/// assert_eq!(err.to_string(), "quota must be 1 to 999999999999999, got 0");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    name: Arc<str>,
    quota: u64,
    window_secs: u64,
    header: HeaderValue,
}

impl Policy {
    /// A policy named `name` of `quota` units per `window_secs` seconds.
    ///
    /// # Errors
    ///
    /// [`ConfigError`], or [`ConfigError`]
    /// naming `quota` or `window_secs` (ranges in the table above).
    pub fn try_new(name: &str, quota: u64, window_secs: u64) -> Result<Self, ConfigError> {
        let name_ok = (1..=MAX_POLICY_NAME_LEN).contains(&name.len())
            && name
                .bytes()
                .all(|b| (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\');
        if !name_ok {
            return Err(ConfigError::new(
                "policy name",
                POLICY_NAME_RANGE,
                format!("{name:?}"),
            ));
        }
        check_range("quota", "1 to 999999999999999", quota, 1, MAX_SF_INTEGER)?;
        check_range(
            "window_secs",
            "1 to 999999999999999",
            window_secs,
            1,
            MAX_SF_INTEGER,
        )?;
        let header = HeaderValue::try_from(format!("\"{name}\";q={quota};w={window_secs}"))
            .map_err(|_| ConfigError::new("policy name", POLICY_NAME_RANGE, format!("{name:?}")))?;
        Ok(Self {
            name: name.into(),
            quota,
            window_secs,
            header,
        })
    }

    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Units per window (`q`).
    pub fn quota(&self) -> u64 {
        self.quota
    }

    /// The window in seconds (`w`).
    pub fn window_secs(&self) -> u64 {
        self.window_secs
    }

    /// The `RateLimit-Policy` header value: `"name";q=<quota>;w=<window>`.
    pub fn header_value(&self) -> &HeaderValue {
        &self.header
    }

    /// A `RateLimit` header value: `"name";r=<remaining>;t=<reset_secs>`.
    pub fn ratelimit_value(&self, remaining: u64, reset_secs: u64) -> HeaderValue {
        let value = format!("\"{}\";r={remaining};t={reset_secs}", self.name);
        // The name was checked to be printable ASCII, so this cannot fail;
        // fall back to the bare name rather than panic.
        HeaderValue::try_from(value).unwrap_or_else(|_| HeaderValue::from_static("\"\";r=0"))
    }
}

/// What to do with a request whose key cannot be extracted (no header, no
/// `SocketAddr` in the extensions, a closure answering `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnMissing {
    /// Let it through, unlimited (the default): a missing key is a
    /// configuration matter (no `ConnectInfo`), not the client's fault.
    /// A client can skip a header-keyed limit by omitting the header: use
    /// [`OnMissing::Reject`] when the header is mandatory.
    #[default]
    Pass,
    /// Answer `400 Bad Request` (empty body) without calling the inner service.
    Reject,
}

/// Reads a request's rate-limit key.
///
/// Implemented for closures `Fn(&http::Request<B>) -> Option<K>`, and by
/// [`ClientIp`], [`HeaderKey`] and [`RoutePath`]. `None` means "no key";
/// [`OnMissing`] decides what happens then.
///
/// Every distinct key takes a place in the [`Keyed`] map (bounded by its
/// `max_keys`), so keep keys short: the extractors here bound their key's
/// length.
///
/// # Examples
///
/// ```
/// use seckill_overload::rate_limit::KeyExtractor;
///
/// // Per user, from an `X-User-Id` header parsed as a number.
/// let per_user = |req: &http::Request<()>| -> Option<u64> {
///     req.headers().get("x-user-id")?.to_str().ok()?.parse().ok()
/// };
/// let req = http::Request::builder().header("x-user-id", "42").body(()).unwrap();
/// assert_eq!(per_user.extract(&req), Some(42));
/// ```
pub trait KeyExtractor<B> {
    /// The key: it must be `Hash + Eq + Clone + Send + Sync` to sit in a [`Keyed`] map.
    type Key;

    /// The request's key, or `None` when it has none.
    fn extract(&self, req: &Request<B>) -> Option<Self::Key>;
}

impl<B, K, F> KeyExtractor<B> for F
where
    F: Fn(&Request<B>) -> Option<K>,
{
    type Key = K;

    #[inline]
    fn extract(&self, req: &Request<B>) -> Option<K> {
        self(req)
    }
}

/// Keys by the client's IP address, read from a [`SocketAddr`] in the
/// request's extensions.
///
/// What it reads: the peer address of the TCP connection, as the server put
/// it into the extensions. [`ClientIp::new`] reads a plain `SocketAddr`
/// extension; for axum, whose `into_make_service_with_connect_info::<SocketAddr>()`
/// inserts `axum::extract::ConnectInfo<SocketAddr>`, use
/// `ClientIp::from_extension(|c: &ConnectInfo<SocketAddr>| c.0)`. A request
/// without that extension has no key ([`OnMissing`] applies).
///
/// **Behind a reverse proxy or load balancer** the peer address is the
/// proxy's, so every client would share one limit. Then choose: key by the
/// header your proxy sets (`X-Forwarded-For`'s last hop you trust, or
/// `Forwarded`) with a closure, and only if clients cannot reach the app
/// around the proxy (otherwise they forge the header).
///
/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) count as the IPv4 address.
/// IPv6 addresses are keyed by their first 64 bits by default (one
/// subscriber usually holds a whole /64 and could otherwise rotate through
/// it); [`ClientIp::try_ipv6_prefix`] changes that, valid range 1 to 128.
///
/// # Examples
///
/// ```
/// use std::net::{IpAddr, SocketAddr};
/// use seckill_overload::rate_limit::{ClientIp, KeyExtractor};
///
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert("203.0.113.7:50000".parse::<SocketAddr>().unwrap());
/// let ip: Option<IpAddr> = ClientIp::new().extract(&req);
/// assert_eq!(ip, Some("203.0.113.7".parse().unwrap()));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ClientIp<T = SocketAddr> {
    read: fn(&T) -> SocketAddr,
    ipv6_prefix: u8,
}

fn identity(addr: &SocketAddr) -> SocketAddr {
    *addr
}

impl ClientIp<SocketAddr> {
    /// Reads a `SocketAddr` extension.
    pub fn new() -> Self {
        Self::from_extension(identity)
    }
}

impl Default for ClientIp<SocketAddr> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> ClientIp<T> {
    /// Reads the extension of type `T` (e.g. axum's `ConnectInfo<SocketAddr>`)
    /// and takes the address from it with `read`.
    pub fn from_extension(read: fn(&T) -> SocketAddr) -> Self {
        Self {
            read,
            ipv6_prefix: 64,
        }
    }

    /// Keys IPv6 clients by their first `bits` bits; valid range 1 to 128,
    /// default 64 (128 keys every address on its own).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming `ipv6_prefix`.
    pub fn try_ipv6_prefix(mut self, bits: u8) -> Result<Self, ConfigError> {
        check_range("ipv6_prefix", "1 to 128", u64::from(bits), 1, 128)?;
        self.ipv6_prefix = bits;
        Ok(self)
    }

    fn key_of(&self, ip: IpAddr) -> IpAddr {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.ipv6_prefix))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
            v4 => v4,
        }
    }
}

impl<B, T: Send + Sync + 'static> KeyExtractor<B> for ClientIp<T> {
    type Key = IpAddr;

    #[inline]
    fn extract(&self, req: &Request<B>) -> Option<IpAddr> {
        let addr = (self.read)(req.extensions().get::<T>()?);
        Some(self.key_of(addr.ip()))
    }
}

/// Keys by the first value of a header (e.g. `X-Device-Id`), as raw bytes.
///
/// A request without the header, or with an empty value, has no key
/// ([`OnMissing`] applies). A value longer than `max_len` bytes is keyed by
/// its first `max_len` bytes, so a long value cannot make a key cost more
/// memory and cannot escape the limit either; valid range 1 to
/// [`MAX_KEY_LEN`] (4096), default [`DEFAULT_MAX_KEY_LEN`] (256).
///
/// # Examples
///
/// ```
/// use http::HeaderName;
/// use seckill_overload::rate_limit::{HeaderKey, KeyExtractor};
///
/// let device = HeaderKey::new(HeaderName::from_static("x-device-id"));
/// let req = http::Request::builder().header("x-device-id", "d-17").body(()).unwrap();
/// assert_eq!(device.extract(&req).unwrap(), "d-17");
/// ```
#[derive(Debug, Clone)]
pub struct HeaderKey {
    name: HeaderName,
    max_len: usize,
}

impl HeaderKey {
    /// Keys by header `name`.
    pub fn new(name: HeaderName) -> Self {
        Self {
            name,
            max_len: DEFAULT_MAX_KEY_LEN,
        }
    }

    /// Keys by at most the first `max_len` bytes of the value; valid range 1
    /// to 4096, default 256.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming `max_len`.
    pub fn try_max_len(mut self, max_len: usize) -> Result<Self, ConfigError> {
        check_max_len(max_len)?;
        self.max_len = max_len;
        Ok(self)
    }
}

fn check_max_len(max_len: usize) -> Result<(), ConfigError> {
    check_range(
        "max_len",
        "1 to 4096",
        u64::try_from(max_len).unwrap_or(u64::MAX),
        1,
        MAX_KEY_LEN as u64,
    )
}

impl<B> KeyExtractor<B> for HeaderKey {
    type Key = HeaderValue;

    #[inline]
    fn extract(&self, req: &Request<B>) -> Option<HeaderValue> {
        let value = req.headers().get(&self.name)?;
        let bytes = value.as_bytes();
        if bytes.is_empty() {
            None
        } else if bytes.len() <= self.max_len {
            Some(value.clone())
        } else {
            HeaderValue::from_bytes(&bytes[..self.max_len]).ok()
        }
    }
}

/// Keys by the request's path (`/api/v1/seckill`), without the query.
///
/// Every distinct path is its own key: for routes with parameters
/// (`/orders/{id}`) key by the route template instead, e.g. with a closure
/// reading axum's `MatchedPath` extension (set when the layer is added with
/// `Router::route_layer`). A path longer than `max_len` bytes is keyed by
/// its first `max_len` bytes; valid range 1 to [`MAX_KEY_LEN`] (4096),
/// default [`DEFAULT_MAX_KEY_LEN`] (256). Every request has a path, so this
/// extractor never answers `None`.
///
/// # Examples
///
/// ```
/// use seckill_overload::rate_limit::{KeyExtractor, RoutePath};
///
/// let req = http::Request::builder().uri("/api/v1/seckill?x=1").body(()).unwrap();
/// assert_eq!(RoutePath::new().extract(&req).as_deref(), Some("/api/v1/seckill"));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct RoutePath {
    max_len: usize,
}

impl RoutePath {
    /// Keys by the path, at most 256 bytes of it.
    pub fn new() -> Self {
        Self {
            max_len: DEFAULT_MAX_KEY_LEN,
        }
    }

    /// Keys by at most the first `max_len` bytes of the path; valid range 1
    /// to 4096, default 256.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming `max_len`.
    pub fn try_max_len(mut self, max_len: usize) -> Result<Self, ConfigError> {
        check_max_len(max_len)?;
        self.max_len = max_len;
        Ok(self)
    }
}

impl Default for RoutePath {
    fn default() -> Self {
        Self::new()
    }
}

impl<B> KeyExtractor<B> for RoutePath {
    type Key = String;

    #[inline]
    fn extract(&self, req: &Request<B>) -> Option<String> {
        let path = req.uri().path();
        let mut end = path.len().min(self.max_len);
        while !path.is_char_boundary(end) {
            end -= 1;
        }
        Some(path[..end].to_owned())
    }
}

/// A request the rate limiter turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RateLimited {
    /// The key is over its limit: answered `429 Too Many Requests`.
    #[error("rate limited ({reason}): retry after {retry_after:?}")]
    Limited {
        /// How long until the same request can pass ([`Denied::retry_after`]).
        retry_after: Duration,
        /// Why the limiter said no.
        reason: DenyReason,
    },
    /// No key could be extracted and the policy is [`OnMissing::Reject`]:
    /// answered `400 Bad Request`.
    #[error(
        "the request has no rate-limit key and missing keys are rejected (OnMissing::Reject): send what the key extractor reads, or configure OnMissing::Pass"
    )]
    MissingKey,
}

impl RateLimited {
    /// The status the layer answers with: 429 or 400.
    pub fn status(&self) -> StatusCode {
        match self {
            RateLimited::Limited { .. } => StatusCode::TOO_MANY_REQUESTS,
            RateLimited::MissingKey => StatusCode::BAD_REQUEST,
        }
    }

    /// The `Retry-After` seconds of a [`RateLimited::Limited`]: whole seconds
    /// rounded up, at least 1, at most [`MAX_SF_INTEGER`] (a request that
    /// can never pass has `retry_after == Duration::MAX`).
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            RateLimited::Limited { retry_after, .. } => Some(whole_secs_up(*retry_after)),
            RateLimited::MissingKey => None,
        }
    }
}

fn whole_secs_up(d: Duration) -> u64 {
    let secs = d.as_secs();
    let secs = if d.subsec_nanos() > 0 {
        secs.saturating_add(1)
    } else {
        secs
    };
    secs.clamp(1, MAX_SF_INTEGER)
}

/// Counters of a [`RateLimiter`], read by [`RateLimiter::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RateLimitStats {
    /// Requests (or keys) admitted by the limiter.
    pub admitted: u64,
    /// Requests refused because their key was over its limit (429).
    pub limited: u64,
    /// Requests without a key let through ([`OnMissing::Pass`]).
    pub missing_passed: u64,
    /// Requests without a key refused ([`OnMissing::Reject`], 400).
    pub missing_rejected: u64,
    /// Keys held in the [`Keyed`] map now.
    pub keys: usize,
}

#[derive(Debug, Default)]
struct Counters {
    admitted: AtomicU64,
    limited: AtomicU64,
    missing_passed: AtomicU64,
    missing_rejected: AtomicU64,
}

struct Shared<K, L: KeyedLimiter, X, S> {
    keyed: Keyed<K, L, S>,
    extractor: X,
    policy: Policy,
    on_missing: OnMissing,
    policy_on_success: bool,
    counters: Counters,
}

/// A keyed rate limiter for HTTP requests: a [`Keyed`] map, a
/// [`KeyExtractor`] and the [`Policy`] it advertises. Cheap to clone (an
/// `Arc` inside); every clone shares the map and the counters.
///
/// Build it with [`RateLimiter::builder`]; use it as a tower layer with
/// [`RateLimiter::layer`], or call [`RateLimiter::check`] yourself.
///
/// # Examples
///
/// ```
/// use std::net::{IpAddr, SocketAddr};
/// use seckill_overload::rate_limit::{ClientIp, Policy, RateLimiter};
/// use seckill_ratelimit::{Keyed, TokenBucket};
///
/// // Per client IP: bursts of 10, then 5 per second.
/// let keyed: Keyed<IpAddr, TokenBucket> = Keyed::new(TokenBucket::new(5, 10));
/// let limiter = RateLimiter::builder(keyed, ClientIp::new(), Policy::try_new("per-ip", 10, 2)?)
///     .build();
///
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert("203.0.113.7:50000".parse::<SocketAddr>()?);
/// for _ in 0..10 {
///     assert!(limiter.check(&req).is_ok());
/// }
/// let refused = limiter.check(&req).unwrap_err();
/// let response: http::Response<String> = limiter.response(&refused);
/// assert_eq!(response.status(), 429);
/// assert_eq!(response.headers()["ratelimit"], "\"per-ip\";r=0;t=1");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RateLimiter<K, L: KeyedLimiter, X, S = RandomState> {
    shared: Arc<Shared<K, L, X, S>>,
}

impl<K, L: KeyedLimiter, X, S> Clone for RateLimiter<K, L, X, S> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<K, L: KeyedLimiter, X, S> std::fmt::Debug for RateLimiter<K, L, X, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("keyed", &self.shared.keyed)
            .field("policy", &self.shared.policy)
            .field("on_missing", &self.shared.on_missing)
            .finish_non_exhaustive()
    }
}

/// Builds a [`RateLimiter`]; from [`RateLimiter::builder`].
#[must_use = "call build()"]
pub struct RateLimiterBuilder<K, L: KeyedLimiter, X, S = RandomState> {
    keyed: Keyed<K, L, S>,
    extractor: X,
    policy: Policy,
    on_missing: OnMissing,
    policy_on_success: bool,
}

impl<K, L: KeyedLimiter, X, S> std::fmt::Debug for RateLimiterBuilder<K, L, X, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiterBuilder")
            .field("policy", &self.policy)
            .field("on_missing", &self.on_missing)
            .finish_non_exhaustive()
    }
}

impl<K, L: KeyedLimiter, X, S> RateLimiterBuilder<K, L, X, S> {
    /// What to do with a request without a key; default [`OnMissing::Pass`].
    pub fn on_missing(mut self, on_missing: OnMissing) -> Self {
        self.on_missing = on_missing;
        self
    }

    /// Whether admitted responses carry the `RateLimit-Policy` header too;
    /// default `true` (refusals always carry it).
    pub fn policy_on_success(mut self, yes: bool) -> Self {
        self.policy_on_success = yes;
        self
    }

    /// The limiter.
    #[must_use]
    pub fn build(self) -> RateLimiter<K, L, X, S> {
        RateLimiter {
            shared: Arc::new(Shared {
                keyed: self.keyed,
                extractor: self.extractor,
                policy: self.policy,
                on_missing: self.on_missing,
                policy_on_success: self.policy_on_success,
                counters: Counters::default(),
            }),
        }
    }
}

impl<K, L, X, S> RateLimiter<K, L, X, S>
where
    K: Hash + Eq + Clone + Send + Sync,
    L: KeyedLimiter,
    S: BuildHasher,
{
    /// A builder over `keyed` (its template limiter and `max_keys` /
    /// `idle_ttl` bounds, validated by `seckill-ratelimit`), keyed by
    /// `extractor`, advertising `policy`. Each request costs one unit.
    pub fn builder(
        keyed: Keyed<K, L, S>,
        extractor: X,
        policy: Policy,
    ) -> RateLimiterBuilder<K, L, X, S> {
        RateLimiterBuilder {
            keyed,
            extractor,
            policy,
            on_missing: OnMissing::Pass,
            policy_on_success: true,
        }
    }

    /// Admits `req` or says why not; never waits.
    ///
    /// # Errors
    ///
    /// [`RateLimited::Limited`] when its key is over the limit,
    /// [`RateLimited::MissingKey`] when it has no key and the policy is
    /// [`OnMissing::Reject`].
    #[inline]
    pub fn check<B>(&self, req: &Request<B>) -> Result<(), RateLimited>
    where
        X: KeyExtractor<B, Key = K>,
    {
        let shared = &*self.shared;
        match shared.extractor.extract(req) {
            Some(key) => self.check_key(&key),
            None => match shared.on_missing {
                OnMissing::Pass => {
                    shared
                        .counters
                        .missing_passed
                        .fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
                OnMissing::Reject => {
                    shared
                        .counters
                        .missing_rejected
                        .fetch_add(1, Ordering::Relaxed);
                    Err(RateLimited::MissingKey)
                }
            },
        }
    }

    /// Admits one unit for `key` or says why not; never waits. For calls
    /// that are not HTTP requests.
    ///
    /// # Errors
    ///
    /// [`RateLimited::Limited`] when `key` is over the limit.
    #[inline]
    pub fn check_key<Q>(&self, key: &Q) -> Result<(), RateLimited>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let counters = &self.shared.counters;
        match self.shared.keyed.try_acquire(key, 1) {
            Ok(()) => {
                counters.admitted.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(denied) => {
                counters.limited.fetch_add(1, Ordering::Relaxed);
                Err(RateLimited::Limited {
                    retry_after: denied.retry_after,
                    reason: denied.reason,
                })
            }
        }
    }

    /// The response the layer sends for `refused`, with an empty
    /// (`Default`) body: 429 with `Retry-After`, `RateLimit-Policy` and
    /// `RateLimit` (`r=0`, `t` = `Retry-After`), or 400 for a missing key.
    pub fn response<B: Default>(&self, refused: &RateLimited) -> Response<B> {
        let mut response = Response::new(B::default());
        *response.status_mut() = refused.status();
        if let Some(secs) = refused.retry_after_secs() {
            let policy = &self.shared.policy;
            let headers = response.headers_mut();
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
            headers.insert(RATELIMIT_POLICY, policy.header_value().clone());
            headers.insert(RATELIMIT, policy.ratelimit_value(0, secs));
        }
        response
    }

    /// The counters, and the keys held now.
    pub fn stats(&self) -> RateLimitStats {
        let c = &self.shared.counters;
        RateLimitStats {
            admitted: c.admitted.load(Ordering::Relaxed),
            limited: c.limited.load(Ordering::Relaxed),
            missing_passed: c.missing_passed.load(Ordering::Relaxed),
            missing_rejected: c.missing_rejected.load(Ordering::Relaxed),
            keys: self.shared.keyed.len(),
        }
    }

    /// The advertised policy.
    pub fn policy(&self) -> &Policy {
        &self.shared.policy
    }

    /// The keyed map (to [`Keyed::remove`] a key or [`Keyed::evict_idle`]).
    pub fn keyed(&self) -> &Keyed<K, L, S> {
        &self.shared.keyed
    }

    /// This limiter as a tower layer (sharing its map and counters).
    pub fn layer(&self) -> RateLimitLayer<K, L, X, S> {
        RateLimitLayer {
            limiter: self.clone(),
        }
    }
}

/// A tower [`Layer`] wrapping services in a [`RateLimitService`]; from
/// [`RateLimiter::layer`] or [`RateLimitLayer::new`].
pub struct RateLimitLayer<K, L: KeyedLimiter, X, S = RandomState> {
    limiter: RateLimiter<K, L, X, S>,
}

impl<K, L: KeyedLimiter, X, S> RateLimitLayer<K, L, X, S> {
    /// The layer of `limiter`.
    pub fn new(limiter: RateLimiter<K, L, X, S>) -> Self {
        Self { limiter }
    }
}

impl<K, L: KeyedLimiter, X, S> Clone for RateLimitLayer<K, L, X, S> {
    fn clone(&self) -> Self {
        Self {
            limiter: self.limiter.clone(),
        }
    }
}

impl<K, L: KeyedLimiter, X, S> std::fmt::Debug for RateLimitLayer<K, L, X, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("limiter", &self.limiter)
            .finish()
    }
}

impl<Svc, K, L: KeyedLimiter, X, S> Layer<Svc> for RateLimitLayer<K, L, X, S> {
    type Service = RateLimitService<Svc, K, L, X, S>;

    fn layer(&self, inner: Svc) -> Self::Service {
        RateLimitService {
            inner,
            limiter: self.limiter.clone(),
        }
    }
}

/// A service admitting requests through a [`RateLimiter`].
///
/// Its error is the inner service's: a refusal is an HTTP answer (429 or
/// 400), not an error, so the layer composes with axum (which needs
/// `Infallible`). The inner response body must be `Default` (axum's `Body`
/// and `String` are) for the refusal's empty body; map another body type
/// first (e.g. into `axum::body::Body`).
///
/// `poll_ready` is the inner service's (backpressure passes through); a
/// refused request is answered by `call` without calling the inner service,
/// with a future that is ready at its first poll. Dropping the future drops
/// the inner call; the unit taken by an admitted request is not given back
/// (a limit counts attempts).
pub struct RateLimitService<Svc, K, L: KeyedLimiter, X, S = RandomState> {
    inner: Svc,
    limiter: RateLimiter<K, L, X, S>,
}

impl<Svc: Clone, K, L: KeyedLimiter, X, S> Clone for RateLimitService<Svc, K, L, X, S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            limiter: self.limiter.clone(),
        }
    }
}

impl<Svc: std::fmt::Debug, K, L: KeyedLimiter, X, S> std::fmt::Debug
    for RateLimitService<Svc, K, L, X, S>
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitService")
            .field("inner", &self.inner)
            .field("limiter", &self.limiter)
            .finish()
    }
}

impl<Svc, K, L: KeyedLimiter, X, S> RateLimitService<Svc, K, L, X, S> {
    /// The limiter in front of the inner service.
    pub fn limiter(&self) -> &RateLimiter<K, L, X, S> {
        &self.limiter
    }

    /// The inner service.
    pub fn get_ref(&self) -> &Svc {
        &self.inner
    }
}

impl<Svc, B, RB, K, L, X, S> Service<Request<B>> for RateLimitService<Svc, K, L, X, S>
where
    Svc: Service<Request<B>, Response = Response<RB>>,
    RB: Default,
    K: Hash + Eq + Clone + Send + Sync,
    L: KeyedLimiter,
    X: KeyExtractor<B, Key = K>,
    S: BuildHasher,
{
    type Response = Response<RB>;
    type Error = Svc::Error;
    type Future = ResponseFuture<Svc::Future, RB>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match self.limiter.check(&req) {
            Ok(()) => {
                let shared = &self.limiter.shared;
                let policy = shared
                    .policy_on_success
                    .then(|| shared.policy.header_value().clone());
                ResponseFuture {
                    kind: Kind::Inner {
                        future: self.inner.call(req),
                        policy,
                    },
                }
            }
            Err(refused) => ResponseFuture {
                kind: Kind::Refused {
                    response: Some(self.limiter.response(&refused)),
                },
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`RateLimitService::call`]: the inner call, or a
    /// refusal that is ready at once.
    pub struct ResponseFuture<F, RB> {
        #[pin]
        kind: Kind<F, RB>,
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    enum Kind<F, RB> {
        Inner {
            #[pin]
            future: F,
            policy: Option<HeaderValue>,
        },
        Refused {
            response: Option<Response<RB>>,
        },
    }
}

impl<F, RB> std::fmt::Debug for ResponseFuture<F, RB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, RB, E> Future for ResponseFuture<F, RB>
where
    F: Future<Output = Result<Response<RB>, E>>,
    RB: Default,
{
    type Output = Result<Response<RB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future, policy } => {
                let mut response = std::task::ready!(future.poll(cx))?;
                if let Some(policy) = policy.take() {
                    response
                        .headers_mut()
                        .entry(RATELIMIT_POLICY)
                        .or_insert(policy);
                }
                Poll::Ready(Ok(response))
            }
            // Polled again after completion (a contract breach): answer the
            // same status with an empty body rather than panic.
            KindProj::Refused { response } => {
                Poll::Ready(Ok(response.take().unwrap_or_else(|| {
                    let mut response = Response::new(RB::default());
                    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
                    response
                })))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_seconds_round_up_and_clamp() {
        assert_eq!(whole_secs_up(Duration::ZERO), 1);
        assert_eq!(whole_secs_up(Duration::from_millis(1)), 1);
        assert_eq!(whole_secs_up(Duration::from_secs(1)), 1);
        assert_eq!(whole_secs_up(Duration::from_millis(1001)), 2);
        assert_eq!(whole_secs_up(Duration::MAX), MAX_SF_INTEGER);
    }

    #[test]
    fn ipv6_prefix_masks_and_mapped_v4_is_v4() {
        let ip = ClientIp::new();
        let parse = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            ip.key_of(parse("2001:db8:1:2:3:4:5:6")),
            parse("2001:db8:1:2::")
        );
        assert_eq!(ip.key_of(parse("::ffff:203.0.113.7")), parse("203.0.113.7"));
        let exact = ClientIp::new().try_ipv6_prefix(128).unwrap();
        assert_eq!(exact.key_of(parse("2001:db8::9")), parse("2001:db8::9"));
    }
}
