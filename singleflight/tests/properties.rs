//! Property tests: random keys, caller counts, outcomes and cancellations
//! driven through the real `Group` on a multi-threaded runtime.
//!
//! Reproducible: a fixed seed (see `support::proptest_config`); rerun with
//! another one with `PROPTEST_RNG_SEED=<u64>`, more cases with
//! `PROPTEST_CASES=<n>`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use proptest::prelude::*;
use seckill_singleflight::{Error, Group};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use support::proptest_config;

/// How the one execution of a key ends.
#[derive(Debug, Clone, Copy)]
enum Ending {
    Value,
    Failure,
    Panic,
}

fn ending() -> impl Strategy<Value = Ending> {
    prop_oneof![
        2 => Just(Ending::Value),
        1 => Just(Ending::Failure),
        1 => Just(Ending::Panic),
    ]
}

/// What one execution records and returns: the caller id that ran it.
fn outcome(ending: Ending, id: u64) -> Result<u64, String> {
    match ending {
        Ending::Value => Ok(id),
        Ending::Failure => Err(format!("failure of caller {id}")),
        Ending::Panic => panic!("panic of caller {id}"),
    }
}

/// One key's bookkeeping: executions started, the caller that started the
/// last one (stored before the count is raised, so a test that saw the
/// count sees the caller), and the gate its execution waits on.
struct Flight {
    runs: AtomicUsize,
    runner: AtomicU64,
    gate: Semaphore,
}

impl Flight {
    fn new() -> Arc<Self> {
        Arc::new(Flight {
            runs: AtomicUsize::new(0),
            runner: AtomicU64::new(u64::MAX),
            gate: Semaphore::new(0),
        })
    }
}

type Caller = JoinHandle<Result<u64, Error<String>>>;
type Joined = Result<Result<u64, Error<String>>, tokio::task::JoinError>;

/// Waits for every caller to end.
async fn join_all(callers: Vec<(u64, Caller)>) -> Vec<(u64, Joined)> {
    let mut joined = Vec::with_capacity(callers.len());
    for (id, caller) in callers {
        joined.push((id, caller.await));
    }
    joined
}

/// Spawns caller `id` of `key`: its closure counts the run, records `id`,
/// waits for the gate, then ends as `ending` says.
fn spawn_caller(
    group: &Group<String, u64, String>,
    key: &str,
    flight: &Arc<Flight>,
    ending: Ending,
    id: u64,
) -> Caller {
    let (group, key, flight) = (group.clone(), key.to_string(), flight.clone());
    tokio::spawn(async move {
        group
            .run(key, move || async move {
                flight.runner.store(id, Ordering::SeqCst);
                flight.runs.fetch_add(1, Ordering::SeqCst);
                let _ = flight.gate.acquire().await;
                outcome(ending, id)
            })
            .await
    })
}

/// Yields until `ready` holds; a bug that never makes it hold is caught by
/// the runtime-wide timeout of the test, never by a timing bound.
async fn until(mut ready: impl FnMut() -> bool) {
    while !ready() {
        tokio::task::yield_now().await;
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Checks what the callers that stayed got, against the one execution that
/// finished (run by `runner`): the leader's value, its error, or its panic
/// for the leader and `Error::Panicked` for everyone else.
fn check_shared_outcome(callers: Vec<(u64, Joined)>, ending: Ending, runner: u64) {
    let mut panicked = 0;
    for (id, joined) in callers {
        match (ending, joined) {
            (Ending::Value, Ok(got)) => assert_eq!(got, Ok(runner), "caller {id}"),
            (Ending::Failure, Ok(got)) => assert_eq!(
                got,
                Err(Error::Failed(format!("failure of caller {runner}"))),
                "caller {id}"
            ),
            (Ending::Panic, Ok(got)) => {
                assert_ne!(id, runner, "the leader sees its own panic");
                assert_eq!(got, Err(Error::Panicked), "caller {id}");
            }
            (Ending::Panic, Err(join)) => {
                assert_eq!(id, runner, "only the leader's task panics");
                let payload = join.into_panic();
                assert_eq!(
                    payload.downcast_ref::<String>(),
                    Some(&format!("panic of caller {runner}"))
                );
                panicked += 1;
            }
            (ending, Err(join)) => panic!("caller {id} ({ending:?}) failed: {join}"),
        }
    }
    if matches!(ending, Ending::Panic) {
        assert_eq!(panicked, 1);
    }
}

proptest! {
    #![proptest_config(proptest_config(64))]

    /// Concurrent callers of random keys (a `BTreeSet`, so that a seed replays
    /// the same key order): exactly one execution per key, and
    /// every caller of a key gets that execution's value, error or panic.
    #[test]
    fn one_execution_per_key_and_every_caller_shares_its_outcome(
        keys in prop::collection::btree_set("[a-z0-9:]{0,12}", 1..=6),
        flights in prop::collection::vec((1usize..=400, ending()), 6),
    ) {
        runtime().block_on(async {
            let group: Group<String, u64, String> = Group::new();
            let keys: Vec<(String, usize, Ending, Arc<Flight>)> = keys
                .into_iter()
                .zip(flights)
                .map(|(key, (callers, ending))| (key, callers, ending, Flight::new()))
                .collect();
            // Interleave the keys' callers so that their joins race.
            let most = keys.iter().map(|k| k.1).max().unwrap_or(0);
            let mut callers: Vec<Vec<(u64, Caller)>> = keys.iter().map(|_| Vec::new()).collect();
            let mut id = 0;
            for round in 0..most {
                for (i, (key, n, ending, flight)) in keys.iter().enumerate() {
                    if round < *n {
                        callers[i].push((id, spawn_caller(&group, key, flight, *ending, id)));
                        id += 1;
                    }
                }
            }
            // Every caller has joined its key's one flight (the gates are shut).
            for (key, n, _, _) in &keys {
                until(|| group.waiters(key) == n - 1).await;
            }
            prop_assert_eq!(group.len(), keys.len());
            for (_, _, _, flight) in &keys {
                flight.gate.close();
            }
            for ((_, _, ending, flight), callers) in keys.iter().zip(callers) {
                // Counted once every caller ended: the leader may have been
                // descheduled between joining and starting its closure.
                let joined = join_all(callers).await;
                prop_assert_eq!(flight.runs.load(Ordering::SeqCst), 1);
                let runner = flight.runner.load(Ordering::SeqCst);
                prop_assert!(joined.iter().any(|(id, _)| *id == runner));
                check_shared_outcome(joined, *ending, runner);
            }
            prop_assert!(group.is_empty());
            Ok::<(), TestCaseError>(())
        })?;
    }
}

proptest! {
    #![proptest_config(proptest_config(64))]

    /// A chain of cancelled leaders (their tasks aborted mid-execution), with
    /// random waiters giving up on the way: each cancellation hands the key
    /// to exactly one waiter, and every caller that stayed gets the outcome
    /// of the one execution that finished; none sees another's cancellation.
    #[test]
    fn cancelled_leaders_hand_over_to_exactly_one_waiter(
        order in (1usize..=300, 0usize..=100)
            .prop_flat_map(|(stay, quit)| {
                let mut order = vec![false; stay];
                order.extend(vec![true; quit]);
                Just(order).prop_shuffle()
            }),
        cancels in 1usize..=4,
        ending in ending(),
    ) {
        let stayers = order.iter().filter(|quits| !**quits).count();
        // Each cancelled leader after the first is a waiter that took over.
        let cancels = cancels.min(stayers);
        runtime().block_on(async {
            let group: Group<String, u64, String> = Group::new();
            let key = "sku:hot";
            let flight = Flight::new();
            let mut tasks: Vec<(u64, Caller)> = Vec::new();
            tasks.push((0, spawn_caller(&group, key, &flight, ending, 0)));
            until(|| flight.runs.load(Ordering::SeqCst) == 1).await;
            let mut quitters = HashSet::new();
            for (i, quits) in order.iter().enumerate() {
                let id = i as u64 + 1;
                tasks.push((id, spawn_caller(&group, key, &flight, ending, id)));
                if *quits {
                    quitters.insert(id);
                }
            }
            until(|| group.waiters(key) == order.len()).await;
            for (id, task) in &tasks {
                if quitters.contains(id) {
                    task.abort();
                }
            }
            until(|| group.waiters(key) == stayers).await;

            let mut aborted = HashSet::new();
            for step in 1..=cancels {
                let leader = flight.runner.load(Ordering::SeqCst);
                aborted.insert(leader);
                tasks[leader as usize].1.abort();
                // Exactly one waiter takes over (the count is checked below).
                until(|| flight.runs.load(Ordering::SeqCst) == step + 1).await;
            }
            let runner = flight.runner.load(Ordering::SeqCst);
            prop_assert!(!aborted.contains(&runner));
            prop_assert!(!quitters.contains(&runner));
            // Everyone still there waits on the last leader.
            until(|| group.waiters(key) == stayers - cancels).await;
            flight.gate.close();

            let mut stayed = Vec::new();
            for (id, task) in tasks {
                if quitters.contains(&id) || aborted.contains(&id) {
                    prop_assert!(task.await.unwrap_err().is_cancelled(), "caller {}", id);
                } else {
                    stayed.push((id, task));
                }
            }
            prop_assert_eq!(stayed.len(), stayers + 1 - cancels);
            check_shared_outcome(join_all(stayed).await, ending, runner);
            // One execution per leader: the cancelled ones and the last.
            prop_assert_eq!(flight.runs.load(Ordering::SeqCst), cancels + 1);
            prop_assert!(group.is_empty());
            Ok::<(), TestCaseError>(())
        })?;
    }
}
