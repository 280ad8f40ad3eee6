//! The seed's cache-consistency races, forced deterministically: the reader's
//! loader reports when it has read the row and waits for the test to release
//! it, so the writer always acts between the read and the backfill.

// Every test here needs a client adapter.
#![cfg(any(feature = "redis", feature = "fred"))]
// Test bodies shared by both clients are plain async fns, not #[test]s.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use seckill_cache_aside::{Backfill, Cache, Cached, Connection, Error, Options};
use seckill_redis::{Arg, Value};
use support::{Connect, admin, namespace};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The "database": one row.
#[derive(Clone)]
struct Row(Arc<Mutex<String>>);

impl Row {
    fn new(value: &str) -> Row {
        Row(Arc::new(Mutex::new(value.to_string())))
    }
    fn read(&self) -> String {
        self.0.lock().unwrap().clone()
    }
    fn write(&self, value: &str) {
        *self.0.lock().unwrap() = value.to_string();
    }
}

type Read = JoinHandle<Result<Option<String>, Error<String>>>;

/// Starts a reader that misses, reads the row, then waits for `release`
/// before its backfill. Returns once the row has been read.
async fn reader_paused_after_load<B: Connection>(
    cache: &Cache<B>,
    key: &str,
    row: &Row,
) -> (oneshot::Sender<()>, Read) {
    let (loaded_tx, loaded_rx) = oneshot::channel();
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let (cache, key, row) = (cache.clone(), key.to_string(), row.clone());
    let read = tokio::spawn(async move {
        cache
            .get_or_load(&key, || async move {
                let value = row.read();
                let _ = loaded_tx.send(());
                let _ = release_rx.await;
                Ok(Some(value))
            })
            .await
    });
    loaded_rx.await.unwrap();
    (release_tx, read)
}

fn options(mode: Backfill) -> Options {
    // A second delete far in the future: the tests run it with flush_deletes.
    Options::default()
        .backfill(mode)
        .double_delete_delay(Duration::from_secs(3600))
}

/// Race (a), the naive way: reader GETs (miss) and loads the old row, the
/// writer updates the row and SETs the cache, the reader backfills with a
/// plain SET. The cache is left stale.
async fn a_plain_set_backfill_goes_stale(client: impl Connect) {
    let key = format!("{}:plain", namespace());
    let row = Row::new("old");
    let reader = client.connect().await;
    let writer = client.connect().await;
    let key = [key.as_str()];
    let cmd = seckill_redis::command;

    assert_eq!(cmd(&reader, "GET", &key, &[]).await.unwrap(), Value::Nil);
    let loaded = row.read();
    row.write("new");
    cmd(&writer, "SET", &key, &[Arg::Str("new")]).await.unwrap();
    let backfill = [Arg::Str(&loaded), Arg::Str("EX"), Arg::Int(60)];
    cmd(&reader, "SET", &key, &backfill).await.unwrap();

    let now = cmd(&writer, "GET", &key, &[]).await.unwrap();
    assert_eq!(
        now.as_str(),
        Some("old"),
        "the stale backfill overwrote the writer's value"
    );
}

/// Race (a) through the cache, in both modes: the writer's `set` wins and
/// the reader's backfill is refused.
async fn a_writer_set_beats_a_slow_backfill(client: impl Connect) {
    for mode in [Backfill::SetNx, Backfill::Lease] {
        let key = format!("{}:a", namespace());
        let row = Row::new("old");
        let cache = Cache::new(client.connect().await, options(mode)).unwrap();

        let (release, read) = reader_paused_after_load(&cache, &key, &row).await;
        row.write("new");
        cache.set(&key, &"new".to_string()).await.unwrap();
        release.send(()).unwrap();
        assert_eq!(
            read.await.unwrap().unwrap(),
            Some("old".to_string()),
            "the reader answers what it read"
        );

        assert_eq!(
            cache.peek::<String>(&key).await.unwrap(),
            Cached::Value("new".to_string()),
            "{mode:?}"
        );
        assert_eq!(cache.stats().fills_refused, 1, "{mode:?}");
    }
}

/// Race (b) in SetNx mode: the writer invalidates instead of setting. The
/// stale backfill lands (NX finds no key) and lives until the delayed
/// second delete; a reader slower than that delete still wins until the TTL.
async fn b_set_nx_stale_value_lives_until_the_second_delete(client: impl Connect) {
    let key = format!("{}:b-setnx", namespace());
    let row = Row::new("old");
    let cache = Cache::new(client.connect().await, options(Backfill::SetNx)).unwrap();

    let (release, read) = reader_paused_after_load(&cache, &key, &row).await;
    row.write("new");
    cache.invalidate(&key).await.unwrap();
    release.send(()).unwrap();
    read.await.unwrap().unwrap();
    assert_eq!(
        cache.peek::<String>(&key).await.unwrap(),
        Cached::Value("old".to_string()),
        "SET NX cannot stop a backfill into an empty key"
    );
    assert_eq!(cache.stats().pending_deletes, 1);

    cache.flush_deletes().await; // the second delete, without waiting out its delay
    assert_eq!(cache.peek::<String>(&key).await.unwrap(), Cached::Absent);
    let fresh = cache
        .get_or_load(&key, || async { Ok::<_, String>(Some(row.read())) })
        .await
        .unwrap();
    assert_eq!(fresh, Some("new".to_string()));

    // The documented limit: a reader slower than the second delete.
    let slow_key = format!("{key}:slow");
    let row = Row::new("old");
    let (release, read) = reader_paused_after_load(&cache, &slow_key, &row).await;
    row.write("new");
    cache.invalidate(&slow_key).await.unwrap();
    cache.flush_deletes().await;
    release.send(()).unwrap();
    read.await.unwrap().unwrap();
    assert_eq!(
        cache.peek::<String>(&slow_key).await.unwrap(),
        Cached::Value("old".to_string()),
        "SetNx mode only bounds staleness; Lease mode closes this"
    );
}

/// Race (b) in Lease mode: the delete revoked the reader's lease, so the
/// stale backfill never lands, however slow the reader is.
async fn b_lease_stale_value_never_lands(client: impl Connect) {
    let key = format!("{}:b-lease", namespace());
    let row = Row::new("old");
    let cache = Cache::new(client.connect().await, options(Backfill::Lease)).unwrap();

    let (release, read) = reader_paused_after_load(&cache, &key, &row).await;
    row.write("new");
    cache.invalidate(&key).await.unwrap();
    cache.flush_deletes().await; // even after the second delete
    release.send(()).unwrap();
    assert_eq!(read.await.unwrap().unwrap(), Some("old".to_string()));

    assert_eq!(
        cache.peek::<String>(&key).await.unwrap(),
        Cached::Absent,
        "the stale fill was refused"
    );
    assert_eq!(cache.stats().fills_refused, 1);
    let fresh = cache
        .get_or_load(&key, || async { Ok::<_, String>(Some(row.read())) })
        .await
        .unwrap();
    assert_eq!(fresh, Some("new".to_string()));
    assert_eq!(
        cache.peek::<String>(&key).await.unwrap(),
        Cached::Value("new".to_string())
    );
}

/// Race (c): two processes (two caches on separate connections), 200
/// concurrent misses each; in Lease mode one load in total. The loader holds
/// on until the other process is seen waiting on the lease.
async fn c_two_processes_load_once_with_leases(client: impl Connect) {
    let key = format!("{}:c", namespace());
    let opts = || {
        Options::default()
            .backfill(Backfill::Lease)
            .lease_wait(Duration::from_secs(30))
    };
    let first = Cache::new(client.connect().await, opts()).unwrap();
    let second = Cache::new(client.connect().await, opts()).unwrap();
    let loads = Arc::new(AtomicUsize::new(0));
    let (go_tx, go_rx) = tokio::sync::watch::channel(false);

    let mut callers = Vec::new();
    for cache in [&first, &second] {
        for _ in 0..200 {
            let (cache, key, loads, mut go) =
                (cache.clone(), key.clone(), loads.clone(), go_rx.clone());
            callers.push(tokio::spawn(async move {
                cache
                    .get_or_load(&key, || async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        let _ = go.wait_for(|go| *go).await;
                        Ok::<_, String>(Some("row".to_string()))
                    })
                    .await
            }));
        }
    }
    support::eventually("the other process waits on the lease", async || {
        first.stats().lease_waits + second.stats().lease_waits >= 1
    })
    .await;
    go_tx.send(true).unwrap();
    for caller in callers {
        assert_eq!(caller.await.unwrap().unwrap(), Some("row".to_string()));
    }
    assert_eq!(
        loads.load(Ordering::SeqCst),
        1,
        "one load across both processes"
    );
    assert_eq!(first.stats().loads + second.stats().loads, 1);
}

/// The same two processes in SetNx mode load once each: singleflight is
/// per process (what Lease mode adds).
async fn c_two_processes_load_once_each_with_set_nx(client: impl Connect) {
    let key = format!("{}:c-setnx", namespace());
    let first = Cache::new(client.connect().await, Options::default()).unwrap();
    let second = Cache::new(client.connect().await, Options::default()).unwrap();
    let (go_tx, go_rx) = tokio::sync::watch::channel(false);
    let mut callers = Vec::new();
    for cache in [&first, &second] {
        for _ in 0..200 {
            let (cache, key, mut go) = (cache.clone(), key.clone(), go_rx.clone());
            callers.push(tokio::spawn(async move {
                cache
                    .get_or_load(&key, || async move {
                        let _ = go.wait_for(|go| *go).await;
                        Ok::<_, String>(Some("row".to_string()))
                    })
                    .await
            }));
        }
    }
    support::eventually("both processes are loading", async || {
        first.stats().loads == 1 && second.stats().loads == 1
    })
    .await;
    go_tx.send(true).unwrap();
    for caller in callers {
        assert_eq!(caller.await.unwrap().unwrap(), Some("row".to_string()));
    }
    assert_eq!((first.stats().loads, second.stats().loads), (1, 1));
    assert_eq!(
        first.stats().fills_refused + second.stats().fills_refused,
        1
    );
}

/// A lease holder that takes too long: the others give up with a clear
/// retry error instead of hanging or loading.
async fn lease_waiters_get_a_retry_error(client: impl Connect) {
    let key = format!("{}:busy", namespace());
    let opts = || {
        Options::default()
            .backfill(Backfill::Lease)
            .lease_ttl(Duration::from_secs(60))
            .lease_wait(Duration::from_millis(50))
    };
    let holder = Cache::new(client.connect().await, opts()).unwrap();
    let other = Cache::new(client.connect().await, opts()).unwrap();
    let row = Row::new("row");
    let (release, read) = reader_paused_after_load(&holder, &key, &row).await;

    let waited = other
        .get_or_load(&key, || async {
            Ok::<_, String>(Some("never".to_string()))
        })
        .await;
    match waited {
        Err(Error::LeaseBusy { retry_after }) => assert!(retry_after > Duration::ZERO),
        other => panic!("expected LeaseBusy, got {other:?}"),
    }
    assert_eq!((other.stats().loads, other.stats().lease_busy), (0, 1));

    release.send(()).unwrap();
    read.await.unwrap().unwrap();
    let got = other
        .get_or_load(&key, || async {
            Ok::<_, String>(Some("never".to_string()))
        })
        .await
        .unwrap();
    assert_eq!(got, Some("row".to_string()));
}

/// A lease holder whose load fails or is cancelled gives the lease back at
/// once, so other processes do not wait for it to expire.
async fn abandoned_leases_are_given_back(client: impl Connect) {
    let key = format!("{}:abandoned", namespace());
    let cache = Cache::new(
        client.connect().await,
        Options::default()
            .backfill(Backfill::Lease)
            .lease_ttl(Duration::from_secs(600)),
    )
    .unwrap();
    let failed = cache
        .get_or_load(&key, || async {
            Err::<Option<String>, _>("db down".to_string())
        })
        .await;
    assert!(matches!(failed, Err(Error::Load(_))));
    let admin = admin(client.topo()).await;
    assert!(
        !admin.exists(&key).await,
        "the failed load released its lease"
    );

    let row = Row::new("row");
    let (_release, read) = reader_paused_after_load(&cache, &key, &row).await;
    assert!(admin.exists(&key).await, "the lease is held while loading");
    read.abort();
    support::eventually("the cancelled load released its lease", async || {
        !admin.exists(&key).await
    })
    .await;
}

on_every_topology!(async:
    a_plain_set_backfill_goes_stale,
    a_writer_set_beats_a_slow_backfill,
    b_set_nx_stale_value_lives_until_the_second_delete,
    b_lease_stale_value_never_lands,
    c_two_processes_load_once_with_leases,
    c_two_processes_load_once_each_with_set_nx,
    lease_waiters_get_a_retry_error,
    abandoned_leases_are_given_back,
    a_panicking_loader_strands_nobody,
);

/// A loader that panics: the callers waiting on it get `LoadPanicked` (or,
/// arriving after it, load themselves), nobody hangs, a lease is given back,
/// and the key works afterwards.
async fn a_panicking_loader_strands_nobody(client: impl Connect) {
    for mode in [Backfill::SetNx, Backfill::Lease] {
        let key = format!("{}:panic", namespace());
        let cache = Cache::new(
            client.connect().await,
            options(mode).lease_wait(Duration::from_secs(30)),
        )
        .unwrap();
        let (go_tx, go_rx) = tokio::sync::watch::channel(false);
        let (started_tx, started_rx) = oneshot::channel();
        let leader = {
            let (cache, key, mut go) = (cache.clone(), key.clone(), go_rx.clone());
            tokio::spawn(async move {
                cache
                    .get_or_load(&key, || async move {
                        let _ = started_tx.send(());
                        let _ = go.wait_for(|go| *go).await;
                        panic!("loader bug");
                        #[allow(unreachable_code)]
                        Ok::<Option<String>, String>(None)
                    })
                    .await
            })
        };
        started_rx.await.unwrap();
        let waiters: Vec<_> = (0..100)
            .map(|_| {
                let (cache, key) = (cache.clone(), key.clone());
                tokio::spawn(async move {
                    cache
                        .get_or_load(&key, || async {
                            Ok::<_, String>(Some("fresh".to_string()))
                        })
                        .await
                })
            })
            .collect();
        support::eventually("every caller missed", async || cache.stats().misses == 101).await;
        go_tx.send(true).unwrap();
        assert!(leader.await.unwrap_err().is_panic());
        for waiter in waiters {
            match waiter.await.unwrap() {
                Err(Error::LoadPanicked) => {}
                Ok(value) => assert_eq!(value, Some("fresh".to_string())),
                other => panic!("{mode:?}: unexpected {other:?}"),
            }
        }
        let got = cache
            .get_or_load(&key, || async {
                Ok::<_, String>(Some("fresh".to_string()))
            })
            .await
            .unwrap();
        assert_eq!(got, Some("fresh".to_string()), "{mode:?}");
    }
}
