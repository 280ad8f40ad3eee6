//! The shared blacklist on Redis: one set per list and a version counter in
//! the sale's hash tag. Each change is one script (add or remove, then bump
//! the version only if the set changed); each instance polls the version
//! and reloads the lists when it moved ([`keep_fresh`]).

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio_util::sync::CancellationToken;

use crate::domain::blacklist::{Blacklist, Entries, ListKind, MAX_ENTRIES};

/// KEYS: the list's set, the version. ARGV: the value, the largest size.
/// Returns 1 added, 0 already there, -1 the list is full.
const ADD: &str = r"
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 0 end
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then return -1 end
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('INCR', KEYS[2])
return 1
";

/// KEYS: the list's set, the version. ARGV: the value. Returns 1 removed, 0 absent.
const REMOVE: &str = r"
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('INCR', KEYS[2])
return 1
";

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
    Redis(#[from] redis::RedisError),
}

/// The lists of one sale namespace on Redis. Cheap to clone.
#[derive(Clone)]
pub struct BlacklistStore {
    redis: ConnectionManager,
    prefix: Arc<str>,
    add: Arc<redis::Script>,
    remove: Arc<redis::Script>,
}

impl BlacklistStore {
    /// The lists of `namespace`.
    pub fn new(redis: ConnectionManager, namespace: &str) -> Self {
        Self {
            redis,
            prefix: format!("flash-sale:{{{namespace}}}:blacklist:").into(),
            add: Arc::new(redis::Script::new(ADD)),
            remove: Arc::new(redis::Script::new(REMOVE)),
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
        let answer: i64 = self
            .add
            .key(self.key(kind))
            .key(self.version_key())
            .arg(value)
            .arg(MAX_ENTRIES)
            .invoke_async(&mut self.redis.clone())
            .await?;
        match answer {
            1 => Ok(Added::New),
            0 => Ok(Added::Already),
            _ => Err(BlacklistError::Full(kind)),
        }
    }

    /// Takes `value` off `kind`'s list; whether it was there.
    ///
    /// # Errors
    ///
    /// Redis failed.
    pub async fn remove(&self, kind: ListKind, value: &str) -> Result<bool, BlacklistError> {
        let removed: i64 = self
            .remove
            .key(self.key(kind))
            .key(self.version_key())
            .arg(value)
            .invoke_async(&mut self.redis.clone())
            .await?;
        Ok(removed == 1)
    }

    /// The version of the lists (0 before the first change).
    ///
    /// # Errors
    ///
    /// Redis failed.
    pub async fn version(&self) -> Result<u64, redis::RedisError> {
        let version: Option<u64> = redis::cmd("GET")
            .arg(self.version_key())
            .query_async(&mut self.redis.clone())
            .await?;
        Ok(version.unwrap_or(0))
    }

    /// The lists and their version, read in one transaction; malformed
    /// members (written around the app) are skipped and counted.
    ///
    /// # Errors
    ///
    /// Redis failed.
    pub async fn load(&self) -> Result<(u64, Entries, usize), redis::RedisError> {
        let (version, users, ips, devices): (Option<u64>, Vec<String>, Vec<String>, Vec<String>) =
            redis::pipe()
                .atomic()
                .get(self.version_key())
                .smembers(self.key(ListKind::Users))
                .smembers(self.key(ListKind::Ips))
                .smembers(self.key(ListKind::Devices))
                .query_async(&mut self.redis.clone())
                .await?;
        let (entries, skipped) = Entries::from_record(&users, &ips, &devices);
        Ok((version.unwrap_or(0), entries, skipped))
    }

    /// Loads the lists into `copy` now.
    ///
    /// # Errors
    ///
    /// Redis failed; `copy` is unchanged.
    pub async fn load_into(&self, copy: &Blacklist) -> Result<u64, redis::RedisError> {
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
            Ok::<(), redis::RedisError>(())
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
