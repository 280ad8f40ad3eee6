//! Behaviour of `Group` under concurrency, cancellation and panics.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use seckill_singleflight::{Error, Group};
use tokio::sync::{Barrier, Notify, Semaphore, oneshot};

/// A gate a closure can wait on until the test opens it.
fn gate() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(0))
}

async fn pass(gate: &Semaphore) {
    let _ = gate.acquire().await;
}

/// Waits (yielding, never sleeping) until `key` has `n` waiters registered.
async fn until_waiters(group: &Group<u64, u64, String>, key: u64, n: usize) {
    while group.waiters(&key) != n {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_callers_share_one_execution() {
    let group: Group<u64, u64, String> = Group::new();
    let runs = Arc::new(AtomicUsize::new(0));
    let open = gate();
    let tasks: Vec<_> = (0..10_000)
        .map(|_| {
            let (group, runs, open) = (group.clone(), runs.clone(), open.clone());
            tokio::spawn(async move {
                group
                    .run(1, || async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        pass(&open).await;
                        Ok(777)
                    })
                    .await
            })
        })
        .collect();
    until_waiters(&group, 1, 9_999).await;
    open.close();
    for task in tasks {
        assert_eq!(task.await.unwrap(), Ok(777));
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert!(group.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_error_reaches_every_waiter() {
    let group: Group<u64, u64, String> = Group::new();
    let open = gate();
    let tasks: Vec<_> = (0..2_000)
        .map(|_| {
            let (group, open) = (group.clone(), open.clone());
            tokio::spawn(async move {
                group
                    .run(5, || async move {
                        pass(&open).await;
                        Err("db down".to_string())
                    })
                    .await
            })
        })
        .collect();
    until_waiters(&group, 5, 1_999).await;
    open.close();
    for task in tasks {
        assert_eq!(
            task.await.unwrap(),
            Err(Error::Failed("db down".to_string()))
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_slow_key_never_delays_another_key() {
    // On one thread, a lock held across an await would deadlock this test.
    let group: Group<u64, u64, String> = Group::new();
    let never = gate();
    let slow = {
        let (group, never) = (group.clone(), never.clone());
        tokio::spawn(async move {
            group
                .run(1, || async move {
                    pass(&never).await;
                    Ok(1)
                })
                .await
        })
    };
    until_waiters(&group, 1, 0).await;
    tokio::task::yield_now().await;
    assert!(group.contains_key(&1));
    for key in 2..1_002 {
        assert_eq!(group.run(key, || async move { Ok(key) }).await, Ok(key));
    }
    assert!(!slow.is_finished());
    never.close();
    assert_eq!(slow.await.unwrap(), Ok(1));
    assert!(group.is_empty());
}

#[tokio::test(start_paused = true)]
async fn different_keys_run_in_parallel() {
    let group: Group<u64, u64, String> = Group::new();
    let start = tokio::time::Instant::now();
    let all = futures::future::join_all((0..1_000).map(|key| {
        group.run(key, move || async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok(key)
        })
    }))
    .await;
    assert_eq!(all, (0..1_000).map(Ok).collect::<Vec<_>>());
    // Virtual time: a thousand one-second loads took one second, not a thousand.
    assert_eq!(start.elapsed(), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_leader_hands_over_to_one_waiter() {
    let group: Group<u64, u64, String> = Group::new();
    let runs = Arc::new(AtomicUsize::new(0));
    let load = |value: u64| {
        let runs = runs.clone();
        move || async move {
            runs.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok(value)
        }
    };
    // The leader gives up after one second.
    let leader = tokio::time::timeout(Duration::from_secs(1), group.run(9, load(1)));
    let waiters: Vec<_> = (0..1_000)
        .map(|i| {
            let group = group.clone();
            let load = load(100 + i);
            tokio::spawn(async move { group.run(9, load).await })
        })
        .collect();
    assert!(leader.await.is_err(), "the leader timed out");
    let mut values = Vec::new();
    for waiter in waiters {
        values.push(
            waiter
                .await
                .unwrap()
                .expect("no waiter sees the leader's cancellation"),
        );
    }
    // Exactly one waiter took over; everyone else got its value.
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    values.dedup();
    assert_eq!(values.len(), 1);
    assert!((100..1_100).contains(&values[0]));
    assert!(group.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_leader_dropped_by_select_hands_over() {
    let group: Group<u64, u64, String> = Group::new();
    let stop = Arc::new(Notify::new());
    let leader = {
        let (group, stop) = (group.clone(), stop.clone());
        tokio::spawn(async move {
            tokio::select! {
                r = group.run(3, std::future::pending::<Result<u64, String>>) => Some(r),
                () = stop.notified() => None,
            }
        })
    };
    tokio::task::yield_now().await;
    let waiter = {
        let group = group.clone();
        tokio::spawn(async move { group.run(3, || async { Ok(33) }).await })
    };
    until_waiters(&group, 3, 1).await;
    stop.notify_one();
    assert_eq!(leader.await.unwrap(), None);
    assert_eq!(waiter.await.unwrap(), Ok(33));
    assert!(group.is_empty());
}

#[tokio::test(start_paused = true)]
async fn takeover_chains_through_several_cancelled_leaders() {
    let group: Group<u64, u64, String> = Group::new();
    let runs = Arc::new(AtomicUsize::new(0));
    // Callers i = 0..5 give up after i+1 seconds; their loads never finish.
    let quitters: Vec<_> = (0..5u64)
        .map(|i| {
            let (group, runs) = (group.clone(), runs.clone());
            tokio::spawn(async move {
                tokio::time::timeout(
                    Duration::from_secs(i + 1),
                    group.run(4, move || async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        std::future::pending::<Result<u64, String>>().await
                    }),
                )
                .await
            })
        })
        .collect();
    tokio::task::yield_now().await;
    let patient = {
        let (group, runs) = (group.clone(), runs.clone());
        tokio::spawn(async move {
            group
                .run(4, move || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_secs(100)).await;
                    Ok(44)
                })
                .await
        })
    };
    for quitter in quitters {
        assert!(quitter.await.unwrap().is_err());
    }
    // Whoever took over at each step, the patient caller ended up leading
    // and finished; nobody saw an error for someone else's timeout.
    assert_eq!(patient.await.unwrap(), Ok(44));
    let runs = runs.load(Ordering::SeqCst);
    assert!((2..=6).contains(&runs), "{runs} executions");
    assert!(group.is_empty());
}

#[tokio::test(start_paused = true)]
async fn cancelled_callers_leave_no_entry() {
    let group: Group<u64, u64, String> = Group::new();
    // A lone leader cancelled.
    let r = tokio::time::timeout(Duration::from_secs(1), group.run(1, std::future::pending)).await;
    assert!(r.is_err());
    assert!(group.is_empty());

    // A leader and its waiters all cancelled, waiters first.
    let waiters: Vec<_> = (0..100)
        .map(|_| {
            let group = group.clone();
            tokio::spawn(async move {
                tokio::time::timeout(Duration::from_secs(1), group.run(2, std::future::pending))
                    .await
            })
        })
        .collect();
    let leader = tokio::time::timeout(Duration::from_secs(2), group.run(2, std::future::pending));
    for w in waiters {
        assert!(w.await.unwrap().is_err());
    }
    assert!(leader.await.is_err());
    assert!(group.is_empty());

    // Leader cancelled first, then every waiter before any could finish.
    let (tx, rx) = oneshot::channel::<()>();
    let group2 = group.clone();
    let leader = tokio::spawn(async move {
        tokio::select! {
            _ = group2.run(3, std::future::pending) => {}
            _ = rx => {}
        }
    });
    tokio::task::yield_now().await;
    let waiters: Vec<_> = (0..100)
        .map(|_| {
            let group = group.clone();
            tokio::spawn(async move { group.run(3, std::future::pending).await })
        })
        .collect();
    until_waiters(&group, 3, 100).await;
    tx.send(()).unwrap();
    leader.await.unwrap();
    for w in &waiters {
        w.abort();
    }
    for w in waiters {
        assert!(w.await.unwrap_err().is_cancelled());
    }
    assert!(group.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_panic_reaches_waiters_and_resumes_on_the_leader() {
    let group: Group<u64, u64, String> = Group::new();
    let open = gate();
    let leader = {
        let (group, open) = (group.clone(), open.clone());
        tokio::spawn(async move {
            group
                .run(6, || async move {
                    pass(&open).await;
                    panic!("boom in the loader");
                })
                .await
        })
    };
    while !group.contains_key(&6) {
        tokio::task::yield_now().await;
    }
    let waiters: Vec<_> = (0..1_000)
        .map(|_| {
            let group = group.clone();
            tokio::spawn(async move { group.run(6, || async { Ok(0) }).await })
        })
        .collect();
    until_waiters(&group, 6, 1_000).await;
    open.close();
    let err = leader.await.unwrap_err();
    assert!(err.is_panic());
    let payload = err.into_panic();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom in the loader"));
    for waiter in waiters {
        assert_eq!(waiter.await.unwrap(), Err(Error::Panicked));
    }
    // The key is usable afterwards.
    assert!(group.is_empty());
    assert_eq!(group.run(6, || async { Ok(66) }).await, Ok(66));
}

#[tokio::test]
async fn a_panic_in_the_closure_itself_is_reported_too() {
    let group: Group<u64, u64, String> = Group::new();
    let g = group.clone();
    let leader = tokio::spawn(async move {
        g.run(8, || -> std::future::Ready<Result<u64, String>> {
            panic!("before any future")
        })
        .await
    });
    assert!(leader.await.unwrap_err().is_panic());
    assert!(group.is_empty());
    assert_eq!(group.run(8, || async { Ok(1) }).await, Ok(1));
}

#[tokio::test]
async fn a_finished_execution_is_not_cached() {
    let group: Group<u64, u64, String> = Group::new();
    let runs = AtomicUsize::new(0);
    for expected in 1..=3 {
        let value = group
            .run(1, || async {
                Ok(runs.fetch_add(1, Ordering::SeqCst) as u64 + 1)
            })
            .await;
        assert_eq!(value, Ok(expected));
    }
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    // A failure is not remembered either.
    assert_eq!(
        group.run(2, || async { Err("once".to_string()) }).await,
        Err(Error::Failed("once".to_string()))
    );
    assert_eq!(group.run(2, || async { Ok(2) }).await, Ok(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_starts_a_fresh_execution_while_the_old_one_runs() {
    let group: Group<u64, u64, String> = Group::new();
    let (old_gate, new_gate) = (gate(), gate());
    let spawn = |value: u64, gate: Arc<Semaphore>| {
        let group = group.clone();
        tokio::spawn(async move {
            group
                .run(1, move || async move {
                    pass(&gate).await;
                    Ok(value)
                })
                .await
        })
    };
    let old: Vec<_> = (0..100).map(|_| spawn(1, old_gate.clone())).collect();
    until_waiters(&group, 1, 99).await;

    group.forget(&1);
    assert!(!group.contains_key(&1));
    let new: Vec<_> = (0..100).map(|_| spawn(2, new_gate.clone())).collect();
    until_waiters(&group, 1, 99).await;

    // The old execution finishes first: it must not remove the new entry.
    old_gate.close();
    for task in old {
        assert_eq!(task.await.unwrap(), Ok(1));
    }
    assert!(group.contains_key(&1));
    assert_eq!(group.waiters(&1), 99);
    new_gate.close();
    for task in new {
        assert_eq!(task.await.unwrap(), Ok(2));
    }
    assert!(group.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_group_is_empty_after_a_storm_of_mixed_callers() {
    // 8 keys, 4,000 callers: some finish, some fail, some time out, some panic.
    let group: Group<u64, u64, String> = Group::new();
    let start = Arc::new(Barrier::new(4_000));
    let tasks: Vec<_> = (0..4_000u64)
        .map(|i| {
            let (group, start) = (group.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                let key = i % 8;
                let work = group.run(key, move || async move {
                    tokio::time::sleep(Duration::from_micros(50 * (i % 7))).await;
                    match i % 5 {
                        0 => Err(format!("fail {i}")),
                        1 if i % 97 == 0 => panic!("panic {i}"),
                        _ => Ok(key),
                    }
                });
                if i % 3 == 0 {
                    tokio::time::timeout(Duration::from_micros(100), work)
                        .await
                        .ok()
                } else {
                    Some(work.await)
                }
            })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await {
            Ok(Some(Ok(value))) => assert_eq!(value, i as u64 % 8),
            Ok(Some(Err(Error::Failed(_) | Error::Panicked))) | Ok(None) => {}
            Ok(Some(Err(other))) => panic!("unexpected error {other:?}"),
            Err(join) => assert!(join.is_panic()),
        }
    }
    assert!(group.is_empty(), "{group:?}");
}

#[test]
fn group_is_send_sync_and_clone() {
    fn assert_traits<T: Send + Sync + Clone + 'static>() {}
    assert_traits::<Group<String, Vec<u8>, std::io::ErrorKind>>();
}

/// A value whose `Clone` panics: stands for a user type with a faulty
/// `Clone` (or one that runs out of memory while cloning).
#[derive(Debug, PartialEq)]
struct CloneBomb;

impl Clone for CloneBomb {
    fn clone(&self) -> Self {
        panic!("clone bomb")
    }
}

/// Runs a leader whose closure returns `outcome` after 1,000 waiters joined,
/// and returns what the leader's task and each waiter got.
async fn leader_outcome_cannot_be_cloned<V, E>(
    outcome: Result<V, E>,
) -> Vec<Result<Result<V, Error<E>>, tokio::time::error::Elapsed>>
where
    V: Clone + Send + std::fmt::Debug + 'static,
    E: Clone + Send + std::fmt::Debug + 'static,
{
    let group: Group<u64, V, E> = Group::new();
    let open = gate();
    let leader = {
        let (group, open) = (group.clone(), open.clone());
        tokio::spawn(async move {
            group
                .run(1, || async move {
                    pass(&open).await;
                    outcome
                })
                .await
        })
    };
    while !group.contains_key(&1) {
        tokio::task::yield_now().await;
    }
    let waiters: Vec<_> = (0..1_000)
        .map(|_| {
            let group = group.clone();
            tokio::spawn(async move {
                // Only catches a hang (virtual time: fires once every task idles).
                tokio::time::timeout(
                    Duration::from_secs(60),
                    group.run(1, || async { unreachable!("the leader runs") }),
                )
                .await
            })
        })
        .collect();
    while group.waiters(&1) != 1_000 {
        tokio::task::yield_now().await;
    }
    open.close();
    let err = leader.await.unwrap_err();
    assert_eq!(err.into_panic().downcast_ref::<&str>(), Some(&"clone bomb"));
    let mut got = Vec::new();
    for waiter in waiters {
        got.push(waiter.await.unwrap());
    }
    assert!(group.is_empty());
    got
}

#[tokio::test(start_paused = true)]
async fn a_panicking_clone_of_the_value_reaches_waiters_as_panicked() {
    let got = leader_outcome_cannot_be_cloned::<CloneBomb, String>(Ok(CloneBomb)).await;
    assert_eq!(got.len(), 1_000);
    for outcome in got {
        assert_eq!(outcome.expect("no waiter hangs"), Err(Error::Panicked));
    }
}

#[tokio::test(start_paused = true)]
async fn a_panicking_clone_of_the_error_reaches_waiters_as_panicked() {
    let got = leader_outcome_cannot_be_cloned::<u64, CloneBomb>(Err(CloneBomb)).await;
    assert_eq!(got.len(), 1_000);
    for outcome in got {
        assert_eq!(outcome.expect("no waiter hangs"), Err(Error::Panicked));
    }
}
