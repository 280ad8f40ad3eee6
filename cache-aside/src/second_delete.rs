//! The delayed second delete of `invalidate` (延时双删): a spawned task per
//! invalidation that waits, deletes, retries with backoff, and reports a
//! final failure through a counter, a log line and the user's hook.
//!
//! The tasks own what they need (a connection clone and the counters), so
//! dropping the `Cache` does not cancel them; they are lost only when the
//! runtime shuts down or the process exits before they ran. `flush` runs
//! the pending ones at once and waits for them, for a clean shutdown.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use seckill_redis::Connection;
use tokio::sync::{Notify, watch};

use crate::bounded::bounded;
use crate::commands;
use crate::error::RedisError;
use crate::options::{DeleteFailure, Options};
use crate::stats::{Counters, bump};

/// Longest pause between two retries.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub(crate) struct SecondDeletes {
    counters: Arc<Counters>,
    flush: watch::Sender<u64>,
    idle: Notify,
}

/// Decrements the pending count when a task ends, however it ends.
struct Pending(Arc<SecondDeletes>);

impl Drop for Pending {
    fn drop(&mut self) {
        if self
            .0
            .counters
            .pending_deletes
            .fetch_sub(1, Ordering::AcqRel)
            == 1
        {
            self.0.idle.notify_waiters();
        }
    }
}

impl SecondDeletes {
    pub(crate) fn new(counters: Arc<Counters>) -> Arc<Self> {
        Arc::new(SecondDeletes {
            counters,
            flush: watch::Sender::new(0),
            idle: Notify::new(),
        })
    }

    /// Deletes `keys` again after `options.double_delete_delay`.
    pub(crate) fn schedule<B: Connection>(
        self: &Arc<Self>,
        conn: B,
        keys: Vec<String>,
        options: &Options,
    ) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            let error = RedisError::Reply("no Tokio runtime to run the second delete on".into());
            for key in keys {
                self.give_up(key, error.clone(), 0, options);
            }
            return;
        };
        let before = self.counters.pending_deletes.fetch_add(1, Ordering::AcqRel);
        let pending = Pending(Arc::clone(self));
        if before >= options.max_pending_deletes {
            drop(pending);
            let error = RedisError::Reply(format!(
                "{before} second deletes already pending (Options::max_pending_deletes); \
                 this one was not scheduled: raise the limit or shorten double_delete_delay"
            ));
            for key in keys {
                self.give_up(key, error.clone(), 0, options);
            }
            return;
        }
        let mut flushed = self.flush.subscribe();
        let options = options.clone();
        runtime.spawn(async move {
            let pending = pending;
            let flush = async {
                if flushed.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                () = tokio::time::sleep(options.double_delete_delay) => {}
                () = flush => {}
            }
            for key in keys {
                pending.0.delete_with_retries(&conn, key, &options).await;
            }
        });
    }

    async fn delete_with_retries<B: Connection>(&self, conn: &B, key: String, options: &Options) {
        let mut backoff = options.delete_backoff;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let delete = commands::del(conn, &key);
            match bounded(options.redis_timeout, &self.counters, delete).await {
                Ok(()) => return,
                Err(error) if attempts > options.delete_retries => {
                    self.give_up(key, error, attempts, options);
                    return;
                }
                Err(error) => {
                    bump(&self.counters.delete_retries);
                    tracing::warn!(%key, %error, attempts, "second cache delete failed, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    fn give_up(&self, key: String, error: RedisError, attempts: u32, options: &Options) {
        bump(&self.counters.delete_failures);
        tracing::error!(%key, %error, attempts, "second cache delete failed for good; the key may hold a stale value until its TTL");
        if let Some(hook) = &options.on_delete_failure {
            hook(&DeleteFailure {
                key,
                error,
                attempts,
            });
        }
    }

    /// Runs the second deletes scheduled so far without waiting out their
    /// delay, then waits until no second delete is pending.
    pub(crate) async fn flush(&self) {
        self.flush
            .send_modify(|generation| *generation = generation.wrapping_add(1));
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.counters.pending_deletes.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }
}
