//! Virtual users: concurrent tasks that send purchase requests over HTTP,
//! some of them retries of an earlier request, and record every answer.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use serde_json::json;

use crate::identity::token::TokenKeys;

/// What one answer said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// 202 `queued`: granted.
    Queued,
    /// `sold_out` (also `insufficient` with none left).
    SoldOut,
    /// `insufficient`: fewer units left than asked for.
    Insufficient,
    /// `limit_exceeded`: the user already bought their share.
    LimitExceeded,
    /// `cancelled`: refunded earlier.
    Cancelled,
    /// 429 `rate_limited`: not decided.
    RateLimited,
    /// Any other HTTP status (400, 404, 503, …).
    Http(u16),
    /// A 2xx answer whose `status` is missing or unknown.
    Unexpected,
    /// No HTTP answer (connection refused, reset, timeout).
    Transport,
}

impl Outcome {
    /// Reads an answer's HTTP status and JSON body.
    pub fn from_answer(http: u16, body: &[u8]) -> Self {
        let status = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("status").and_then(|s| s.as_str()).map(str::to_owned));
        match (http, status.as_deref()) {
            (202, Some("queued")) => Outcome::Queued,
            (429, _) => Outcome::RateLimited,
            (200, Some("sold_out")) => Outcome::SoldOut,
            (200, Some("insufficient")) => Outcome::Insufficient,
            (200, Some("limit_exceeded")) => Outcome::LimitExceeded,
            (200, Some("cancelled")) => Outcome::Cancelled,
            (200..=299, _) => Outcome::Unexpected,
            (other, _) => Outcome::Http(other),
        }
    }

    /// Whether the sale decided the request (Redis gives a retry the same answer).
    pub fn is_decided(self) -> bool {
        matches!(
            self,
            Outcome::Queued
                | Outcome::SoldOut
                | Outcome::Insufficient
                | Outcome::LimitExceeded
                | Outcome::Cancelled
        )
    }

    /// Whether the request may have been decided without the load learning
    /// the answer (an error after the deduction, a lost connection).
    pub fn is_unknown(self) -> bool {
        match self {
            Outcome::Transport | Outcome::Unexpected => true,
            Outcome::Http(status) => status >= 500,
            _ => false,
        }
    }

    /// The label in the report.
    pub fn label(self) -> String {
        match self {
            Outcome::Queued => "queued".into(),
            Outcome::SoldOut => "sold_out".into(),
            Outcome::Insufficient => "insufficient".into(),
            Outcome::LimitExceeded => "limit_exceeded".into(),
            Outcome::Cancelled => "cancelled".into(),
            Outcome::RateLimited => "rate_limited".into(),
            Outcome::Http(status) => format!("http {status}"),
            Outcome::Unexpected => "unexpected answer".into(),
            Outcome::Transport => "no answer (transport error)".into(),
        }
    }
}

/// One request sent and its answer.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// When the answer arrived, from the start of the load.
    pub at: Duration,
    /// Time from sending to the answer.
    pub latency: Duration,
    /// The answer.
    pub outcome: Outcome,
    /// Index of the request (in [`LoadRun::requests`]) this was an attempt of.
    pub request: usize,
    /// Whether this attempt resent an earlier request.
    pub retry: bool,
}

/// A distinct request: its id and buyer.
#[derive(Debug, Clone)]
pub struct SentRequest {
    /// The request id.
    pub request_id: String,
    /// The buyer.
    pub user_id: u64,
}

/// The shape of the load.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Base URL of the instance.
    pub target: String,
    /// The SKU on sale.
    pub sku_id: u64,
    /// Attempts to send, retries included.
    pub requests: usize,
    /// Users `1..=users`.
    pub users: u64,
    /// Distinct client IPs.
    pub client_ips: u32,
    /// Attempts in flight at once.
    pub concurrency: usize,
    /// Share of attempts that resend an earlier request.
    pub retry_ratio: f64,
    /// Attempts per second across all virtual users (0 = unpaced).
    pub rate: u32,
    /// Send each attempt at its due time whatever the earlier ones do
    /// (needs `rate`; `concurrency` caps the attempts in flight).
    pub open_loop: bool,
    /// Timeout of one attempt.
    pub timeout: Duration,
    /// Seed of the virtual users' choices.
    pub seed: u64,
    /// Mints each virtual user's bearer token (the load holds the
    /// instance's token secret, as a login service would).
    pub keys: Arc<TokenKeys>,
    /// Lifetime of the minted tokens.
    pub token_ttl: Duration,
}

/// Everything the load saw.
#[derive(Debug, Default)]
pub struct LoadRun {
    /// Every attempt, in no particular order.
    pub samples: Vec<Sample>,
    /// Every distinct request.
    pub requests: Vec<SentRequest>,
    /// From the first request to the last answer.
    pub elapsed: Duration,
    /// Retries whose answer contradicted an earlier decision of their
    /// request, by (first, later) answer (see [`RetryCheck`]).
    pub inconsistent: BTreeMap<(Outcome, Outcome), u64>,
}

impl LoadRun {
    /// Ids of the requests answered `queued` at least once.
    pub fn queued_ids(&self) -> HashSet<String> {
        self.ids_where(|outcomes| outcomes.contains(&Outcome::Queued))
    }

    /// Ids of the requests whose fate the load does not know: only unknown
    /// answers, no decided one (the server may have queued them).
    pub fn unknown_ids(&self) -> HashSet<String> {
        self.ids_where(|outcomes| {
            outcomes.iter().any(|o| o.is_unknown()) && !outcomes.iter().any(|o| o.is_decided())
        })
    }

    /// Retries whose decided answer differed from their request's first.
    pub fn inconsistent_retries(&self) -> u64 {
        self.inconsistent.values().sum()
    }

    fn ids_where(&self, keep: impl Fn(&[Outcome]) -> bool) -> HashSet<String> {
        let mut by_request: HashMap<usize, Vec<Outcome>> = HashMap::new();
        for sample in &self.samples {
            by_request
                .entry(sample.request)
                .or_default()
                .push(sample.outcome);
        }
        by_request
            .into_iter()
            .filter(|(_, outcomes)| keep(outcomes))
            .filter_map(|(i, _)| self.requests.get(i).map(|r| r.request_id.clone()))
            .collect()
    }
}

/// A small, fast pseudo-random generator (SplitMix64): the load needs
/// spread, not secrecy, and no extra dependency.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    /// A generator started at `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0; 0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        // Multiply-shift: unbiased enough for picking users.
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A number in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The synthetic client address of `user`: users share `ips` addresses
/// round robin, from 10.0.0.0 up.
pub fn client_ip(user: u64, ips: u32) -> Ipv4Addr {
    let index = (user.saturating_sub(1) % u64::from(ips.max(1))) as u32;
    Ipv4Addr::from(0x0A00_0000 | (index & 0x00FF_FFFF))
}

/// State the virtual users share.
struct Shared {
    plan: Plan,
    client: reqwest::Client,
    url: String,
    next_slot: AtomicUsize,
    requests: Mutex<Vec<SentRequest>>,
    retries: Mutex<RetryCheck>,
    started: Instant,
    progress: ProgressBar,
}

/// Sends `plan.requests` attempts from `plan.concurrency` virtual users.
///
/// # Errors
///
/// The HTTP client could not be built.
pub async fn run(plan: Plan, progress: ProgressBar) -> Result<LoadRun, reqwest::Error> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(plan.concurrency)
        .timeout(plan.timeout)
        .tcp_nodelay(true)
        .build()?;
    let url = format!("{}/api/v1/seckill", plan.target.trim_end_matches('/'));
    let concurrency = plan.concurrency.max(1);
    let seed = plan.seed;
    let shared = Arc::new(Shared {
        requests: Mutex::new(Vec::with_capacity(plan.requests)),
        plan,
        client,
        url,
        next_slot: AtomicUsize::new(0),
        retries: Mutex::new(RetryCheck::default()),
        started: Instant::now(),
        progress,
    });
    let mut samples = Vec::with_capacity(shared.plan.requests);
    if shared.plan.open_loop && shared.plan.rate > 0 {
        samples = open_loop(Arc::clone(&shared), seed).await;
    } else {
        let mut users = tokio::task::JoinSet::new();
        for i in 0..concurrency {
            let rng = SplitMix::new(seed ^ (i as u64).wrapping_mul(0xA24B_AED4_963E_E407));
            users.spawn(virtual_user(Arc::clone(&shared), rng));
        }
        while let Some(joined) = users.join_next().await {
            // A virtual user only ends by running out of slots; a panic in one
            // (none is reachable) would only lose its samples.
            if let Ok(mut own) = joined {
                samples.append(&mut own);
            }
        }
    }
    let elapsed = shared.started.elapsed();
    shared.progress.finish_and_clear();
    let requests = std::mem::take(&mut *lock(&shared.requests));
    let inconsistent = std::mem::take(&mut *lock(&shared.retries)).into_inconsistent();
    Ok(LoadRun {
        samples,
        requests,
        elapsed,
        inconsistent,
    })
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One virtual user: takes slots until none is left.
async fn virtual_user(shared: Arc<Shared>, mut rng: SplitMix) -> Vec<Sample> {
    let plan = &shared.plan;
    let mut samples = Vec::new();
    loop {
        let slot = shared.next_slot.fetch_add(1, Ordering::Relaxed);
        if slot >= plan.requests {
            break;
        }
        let intended = match due(&shared, slot) {
            Some(due) => {
                tokio::time::sleep_until(due.into()).await;
                due
            }
            None => Instant::now(),
        };
        let (index, request, retry) = pick(&shared, &mut rng);
        samples.push(attempt(&shared, index, request, retry, intended).await);
    }
    samples
}

/// When slot `n` is due (`n / rate` seconds after the start), or `None`
/// when the run is unpaced.
fn due(shared: &Shared, slot: usize) -> Option<Instant> {
    let rate = shared.plan.rate;
    (rate > 0).then(|| shared.started + Duration::from_secs_f64(slot as f64 / f64::from(rate)))
}

/// The open loop: slot `n` is sent at its due time whether or not earlier
/// answers came back, with at most `concurrency` in flight (a send that
/// waits for room is late, and its lateness counts in its latency).
async fn open_loop(shared: Arc<Shared>, seed: u64) -> Vec<Sample> {
    let plan = &shared.plan;
    let room = Arc::new(tokio::sync::Semaphore::new(plan.concurrency.max(1)));
    let mut rng = SplitMix::new(seed);
    let mut in_flight = tokio::task::JoinSet::new();
    let mut samples = Vec::with_capacity(plan.requests);
    for slot in 0..plan.requests {
        let intended = due(&shared, slot).unwrap_or_else(Instant::now);
        tokio::time::sleep_until(intended.into()).await;
        // Collect what finished, so the set stays as small as the flight.
        while let Some(done) = in_flight.try_join_next() {
            samples.extend(done.ok());
        }
        let Ok(permit) = Arc::clone(&room).acquire_owned().await else {
            break;
        };
        let (index, request, retry) = pick(&shared, &mut rng);
        let shared = Arc::clone(&shared);
        in_flight.spawn(async move {
            let sample = attempt(&shared, index, request, retry, intended).await;
            drop(permit);
            sample
        });
    }
    while let Some(done) = in_flight.join_next().await {
        samples.extend(done.ok());
    }
    samples
}

/// Sends one attempt and records its answer; the latency counts from
/// `intended`, the moment the schedule wanted it sent (so a sender that
/// fell behind cannot hide a stall: no coordinated omission).
async fn attempt(
    shared: &Shared,
    index: usize,
    request: SentRequest,
    retry: bool,
    intended: Instant,
) -> Sample {
    let plan = &shared.plan;
    let body = json!({
        "request_id": request.request_id,
        "user_id": request.user_id,
        "sku_id": plan.sku_id,
        "quantity": 1,
    });
    // A token per attempt (an HMAC: about a microsecond), as each
    // buyer's client holds its own; a signing failure is not reachable
    // with an HS256 key, and would show as a 401 answer.
    let token = plan
        .keys
        .mint_for(request.user_id, None, plan.token_ttl)
        .unwrap_or_default();
    let outcome = match shared
        .client
        .post(&shared.url)
        .bearer_auth(token)
        .header(
            "x-forwarded-for",
            client_ip(request.user_id, plan.client_ips).to_string(),
        )
        .json(&body)
        .send()
        .await
    {
        Ok(response) => {
            let status = response.status().as_u16();
            match response.bytes().await {
                Ok(bytes) => Outcome::from_answer(status, &bytes),
                Err(_) => Outcome::Transport,
            }
        }
        Err(_) => Outcome::Transport,
    };
    let latency = intended.elapsed();
    lock(&shared.retries).record(index, outcome);
    shared.progress.inc(1);
    Sample {
        at: shared.started.elapsed(),
        latency,
        outcome,
        request: index,
        retry,
    }
}

/// A new request, or with `retry_ratio` a resend of an earlier one.
fn pick(shared: &Shared, rng: &mut SplitMix) -> (usize, SentRequest, bool) {
    let plan = &shared.plan;
    let retry = rng.unit() < plan.retry_ratio;
    let mut requests = lock(&shared.requests);
    if retry && !requests.is_empty() {
        let index = rng.below(requests.len() as u64) as usize;
        if let Some(request) = requests.get(index) {
            return (index, request.clone(), true);
        }
    }
    let request = SentRequest {
        request_id: uuid::Uuid::new_v4().simple().to_string(),
        user_id: 1 + rng.below(plan.users.max(1)),
    };
    requests.push(request.clone());
    (requests.len() - 1, request, false)
}

/// The on-the-fly check that a retry gets its request's first answer.
///
/// Redis decides a request once and answers every retry the same. A
/// `sold_out` may instead come from the instance's local sold-out flag,
/// which answers without asking Redis, so the request was not decided:
/// a `sold_out` never pins a request's answer, and a later different
/// decision is no contradiction. Counted: two different binding answers of
/// one request, and a `sold_out` after a binding `queued` (the client was
/// told it got the unit, then that it did not). A `sold_out` after a
/// binding refusal (`limit_exceeded`, `insufficient`) is no change of
/// answer: the buyer was refused both times, and once a SKU is sold out
/// every instance answers any request it does not know as granted with
/// `sold_out`, whatever refused it earlier.
#[derive(Debug, Default)]
pub struct RetryCheck {
    binding: HashMap<usize, Outcome>,
    inconsistent: BTreeMap<(Outcome, Outcome), u64>,
}

impl RetryCheck {
    /// Records an answer of request `index` (undecided ones are ignored).
    pub fn record(&mut self, index: usize, outcome: Outcome) {
        if !outcome.is_decided() {
            return;
        }
        let first = if outcome == Outcome::SoldOut {
            self.binding
                .get(&index)
                .copied()
                .filter(|first| *first == Outcome::Queued)
        } else {
            Some(*self.binding.entry(index).or_insert(outcome))
        };
        if let Some(first) = first.filter(|first| *first != outcome) {
            *self.inconsistent.entry((first, outcome)).or_default() += 1;
        }
    }

    /// Contradicting answers by (first, later).
    pub fn into_inconsistent(self) -> BTreeMap<(Outcome, Outcome), u64> {
        self.inconsistent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_from_status_and_body() {
        let cases = [
            (
                202,
                r#"{"status":"queued","request_id":"a"}"#,
                Outcome::Queued,
            ),
            (200, r#"{"status":"sold_out"}"#, Outcome::SoldOut),
            (
                200,
                r#"{"status":"insufficient","available":2}"#,
                Outcome::Insufficient,
            ),
            (
                200,
                r#"{"status":"limit_exceeded"}"#,
                Outcome::LimitExceeded,
            ),
            (200, r#"{"status":"cancelled"}"#, Outcome::Cancelled),
            (429, r#"{"status":"rate_limited"}"#, Outcome::RateLimited),
            (200, r#"{"status":"what"}"#, Outcome::Unexpected),
            (200, "not json", Outcome::Unexpected),
            (503, r#"{"error":"down"}"#, Outcome::Http(503)),
            (400, r#"{"error":"bad"}"#, Outcome::Http(400)),
        ];
        for (status, body, expected) in cases {
            assert_eq!(
                Outcome::from_answer(status, body.as_bytes()),
                expected,
                "{status} {body}"
            );
        }
        assert!(Outcome::Queued.is_decided());
        assert!(!Outcome::RateLimited.is_decided());
        assert!(Outcome::Http(503).is_unknown());
        assert!(!Outcome::Http(400).is_unknown());
        assert!(Outcome::Transport.is_unknown());
    }

    #[test]
    fn users_share_client_ips_round_robin() {
        assert_eq!(client_ip(1, 1_000), Ipv4Addr::new(10, 0, 0, 0));
        assert_eq!(client_ip(2, 1_000), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(client_ip(1_001, 1_000), Ipv4Addr::new(10, 0, 0, 0));
        assert_eq!(client_ip(300, 1_000), Ipv4Addr::new(10, 0, 1, 43));
        let distinct: HashSet<_> = (1..=5_000).map(|u| client_ip(u, 1_000)).collect();
        assert_eq!(distinct.len(), 1_000);
        assert_eq!(client_ip(7, 0), Ipv4Addr::new(10, 0, 0, 0));
    }

    #[test]
    fn random_numbers_stay_in_range_and_spread() {
        let mut rng = SplitMix::new(42);
        let mut seen = [0u32; 10];
        for _ in 0..100_000 {
            let n = rng.below(10);
            seen[n as usize] += 1;
            let u = rng.unit();
            assert!((0.0..1.0).contains(&u));
        }
        // Each bucket near 10,000 (a loose bound: this is about spread, not quality).
        assert!(
            seen.iter().all(|&n| (9_000..11_000).contains(&n)),
            "{seen:?}"
        );
        assert_eq!(rng.below(0), 0);
    }

    #[test]
    fn retries_must_repeat_the_binding_answer() {
        use Outcome::*;
        let mut check = RetryCheck::default();
        // Request 0: queued, replayed queued, then the local flag says sold_out.
        for outcome in [RateLimited, Queued, Queued, Transport, SoldOut] {
            check.record(0, outcome);
        }
        // Request 1: a local sold_out first (undecided), then Redis decides.
        for outcome in [SoldOut, LimitExceeded, LimitExceeded, SoldOut] {
            check.record(1, outcome);
        }
        // Request 2: two different Redis decisions.
        for outcome in [LimitExceeded, Queued] {
            check.record(2, outcome);
        }
        // Request 3: sold out every time.
        for outcome in [SoldOut, SoldOut] {
            check.record(3, outcome);
        }
        assert_eq!(
            check.into_inconsistent(),
            BTreeMap::from([((Queued, SoldOut), 1), ((LimitExceeded, Queued), 1),])
        );
    }

    #[test]
    fn queued_and_unknown_ids_come_from_every_attempt() {
        let request = |id: &str| SentRequest {
            request_id: id.into(),
            user_id: 1,
        };
        let sample = |request, outcome| Sample {
            at: Duration::ZERO,
            latency: Duration::ZERO,
            outcome,
            request,
            retry: false,
        };
        let run = LoadRun {
            requests: vec![request("a"), request("b"), request("c"), request("d")],
            samples: vec![
                sample(0, Outcome::RateLimited),
                sample(0, Outcome::Queued),
                sample(1, Outcome::Http(503)),
                sample(2, Outcome::Transport),
                sample(2, Outcome::SoldOut),
                sample(3, Outcome::SoldOut),
            ],
            ..LoadRun::default()
        };
        assert_eq!(run.queued_ids(), HashSet::from(["a".to_owned()]));
        assert_eq!(run.unknown_ids(), HashSet::from(["b".to_owned()]));
    }
}
