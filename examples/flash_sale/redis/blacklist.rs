//! The shared blacklist on Redis: one set per list and a version counter in
//! the sale's hash tag. Each change is one script (add or remove, then bump
//! the version only if the set changed); each instance polls the version
//! and reloads the lists when it moved ([`keep_fresh`]).

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use seckill::redis::{Arg, Script, Value};
use tokio_util::sync::CancellationToken;

use super::Redis;

use crate::domain::blacklist::{Blacklist, Entries, ListKind, MAX_ENTRIES};

/// KEYS: the list's set, the version. ARGV: the value, the largest size.
/// Returns 1 added, 0 already there, -1 the list is full.
static ADD: LazyLock<Script> = LazyLock::new(|| Script::new(ADD_LUA));
const ADD_LUA: &str = r"
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 0 end
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then return -1 end
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('INCR', KEYS[2])
return 1
";

/// KEYS: the list's set, the version. ARGV: the value. Returns 1 removed, 0 absent.
static REMOVE: LazyLock<Script> = LazyLock::new(|| Script::new(REMOVE_LUA));
const REMOVE_LUA: &str = r"
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('INCR', KEYS[2])
return 1
";

/// KEYS: the version, the users', IPs' and devices' sets (one hash tag).
/// Returns { version or false, users, ips, devices }: one consistent read.
static LOAD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "return { redis.call('GET', KEYS[1]), redis.call('SMEMBERS', KEYS[2]), \
         redis.call('SMEMBERS', KEYS[3]), redis.call('SMEMBERS', KEYS[4]) }",
    )
});

/// What an add did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// The value is now on the list.
    New,
    /// It was already there.
    Already,
}

/// Why a blacklist change failed.
#[derive(Debug, thiserror::Error)]
pub enum BlacklistError {
    /// The list holds [`MAX_ENTRIES`] values.
    #[error("the {0} blacklist is full ({MAX_ENTRIES} entries): remove some first")]
    Full(ListKind),
    /// Redis failed; the change may or may not have happened (retry: both
    /// changes are idempotent).
    #[error("Redis failed: {0}")]
    Redis(#[from] seckill::redis::Error),
}

/// The lists of one sale namespace on Redis. Cheap to clone.
#[derive(Clone)]
pub struct BlacklistStore {
    redis: Redis,
    prefix: Arc<str>,
}

impl BlacklistStore {
    /// The lists of `namespace`.
    pub fn new(redis: Redis, namespace: &str) -> Self {
        Self {
            redis,
            prefix: format!("flash-sale:{{{namespace}}}:blacklist:").into(),
        }
    }

    fn key(&self, kind: ListKind) -> String {
        format!("{}{}", self.prefix, kind.name())
    }

    fn version_key(&self) -> String {
        format!("{}version", self.prefix)
    }

    /// Puts `value` (canonical, see [`ListKind::canonical`]) on `kind`'s list.
    ///
    /// # Errors
    ///
    /// The list is full, or Redis failed.
    pub async fn add(&self, kind: ListKind, value: &str) -> Result<Added, BlacklistError> {
        let (list, version) = (self.key(kind), self.version_key());
        let answer = ADD
            .run(
                &self.redis,
                &[&list, &version],
                &[Arg::Str(value), Arg::UInt(MAX_ENTRIES)],
            )
            .await?;
        match answer.as_int() {
            Some(1) => Ok(Added::New),
            Some(0) => Ok(Added::Already),
            _ => Err(BlacklistError::Full(kind)),
        }
    }

    /// Takes `value` off `kind`'s list; whether it was there.
    ///
    /// # Errors
    ///
    /// Redis failed.
    pub async fn remove(&self, kind: ListKind, value: &str) -> Result<bool, BlacklistError> {
        let (list, version) = (self.key(kind), self.version_key());
        let removed = REMOVE
            .run(&self.redis, &[&list, &version], &[Arg::Str(value)])
            .await?;
        Ok(removed.as_int() == Some(1))
    }

    /// The version of the lists (0 before the first change).
    ///
    /// # Errors
    ///
    /// Redis failed.
    pub async fn version(&self) -> Result<u64, seckill::redis::Error> {
        let version =
            seckill::redis::command(&self.redis, "GET", &[&self.version_key()], &[]).await?;
        Ok(version
            .as_int()
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or(0))
    }

    /// The lists and their version, read in one transaction; malformed
    /// members (written around the app) are skipped and counted.
    ///
    /// # Errors
    ///
    /// Redis failed.
    pub async fn load(&self) -> Result<(u64, Entries, usize), seckill::redis::Error> {
        let keys = [
            self.version_key(),
            self.key(ListKind::Users),
            self.key(ListKind::Ips),
            self.key(ListKind::Devices),
        ];
        let keys = keys.each_ref().map(String::as_str);
        let reply = LOAD.run(&self.redis, &keys, &[]).await?;
        let Value::Array(parts) = reply else {
            return Err(seckill::redis::Error::UnexpectedReply(format!(
                "the blacklist read answered {reply:?}"
            )));
        };
        let mut parts = parts.into_iter();
        let version = parts.next().and_then(|v| v.as_int()).unwrap_or(0);
        let mut list = || -> Vec<String> {
            match parts.next() {
                Some(Value::Array(members)) => members
                    .iter()
                    .filter_map(|m| m.as_str().map(str::to_owned))
                    .collect(),
                _ => Vec::new(),
            }
        };
        let (users, ips, devices) = (list(), list(), list());
        let (entries, skipped) = Entries::from_record(&users, &ips, &devices);
        Ok((u64::try_from(version).unwrap_or(0), entries, skipped))
    }

    /// Loads the lists into `copy` now.
    ///
    /// # Errors
    ///
    /// Redis failed; `copy` is unchanged.
    pub async fn load_into(&self, copy: &Blacklist) -> Result<u64, seckill::redis::Error> {
        let (version, entries, skipped) = self.load().await?;
        if skipped > 0 {
            tracing::warn!(skipped, "malformed blacklist entries in Redis were skipped");
        }
        copy.replace(entries);
        Ok(version)
    }
}

/// Keeps `copy` equal to the record: every `every`, reads the version and
/// reloads the lists when it moved. While Redis fails, the last copy stays
/// in force (logged once per outage). Returns at `shutdown`.
pub async fn keep_fresh(
    store: BlacklistStore,
    copy: Blacklist,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut seen: Option<u64> = None;
    let mut failing = false;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let refreshed = async {
            let version = store.version().await?;
            if seen != Some(version) {
                seen = Some(store.load_into(&copy).await?);
            }
            Ok::<(), seckill::redis::Error>(())
        }
        .await;
        match refreshed {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("the blacklist is read from Redis again");
            }
            Ok(()) => {}
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(%error, "could not refresh the blacklist; the last copy stays in force");
            }
            Err(_) => {}
        }
    }
}
