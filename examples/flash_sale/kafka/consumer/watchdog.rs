//! The stuck-consumer watchdog: notices that the group no longer makes
//! progress, so that [`super::run`] recreates its Kafka client and rejoins.
//!
//! # Why
//!
//! A young broker's group coordinator (tansu) can lose track of a group: after
//! the broker was cut or restarted, after another member died without leaving,
//! or after the coordinator dropped the group leader, a member may keep a
//! session that fetches nothing, while the partitions it should own (or that
//! a dead member owned) are assigned to nobody. Orders then stay in the topic
//! until the app restarts. A fresh client joining the group again repairs it.
//!
//! # What is measured
//!
//! About once per [`LAG_EVERY`](super::LAG_EVERY), on the blocking pool
//! (every call is a broker round trip), while the consumer waits for messages
//! and between batches: [`lag::measure`] gives, for **every** partition of the
//! topic, the watermarks, the **group's** committed offset (also for
//! partitions not assigned to this member), and whether it is assigned to
//! this member with its position. The same sample sets the lag gauge.
//!
//! # When the consumer is stuck ([`Judge`], a pure function of samples and times)
//!
//! - **No progress**: some partition has messages the group did not commit
//!   (high watermark > committed offset, or > low watermark with nothing
//!   committed), and for `stuck_after` neither the group's committed offset of
//!   that partition nor this member's position on it moved. Judged per
//!   partition, so that a member busy with its own partitions still notices
//!   those a dead member left behind.
//! - **Unmeasurable**: no measurement succeeded for `stuck_after` (broker
//!   unreachable, or answering nonsense).
//!
//! Each stuck verdict restarts every clock, so there is at most one rejoin
//! per `stuck_after`, also while the broker is simply down. Time spent
//! applying a batch that took longer than [`BUSY_APPLY`] (MySQL or Redis
//! failing, retried) is excused: it is not held against Kafka, and nothing is
//! judged while a batch is in hand. The price of judging per partition: a
//! healthy member that spends `stuck_after` on one batch makes the others
//! rejoin once per `stuck_after` — a rebalance, which loses nothing.
//!
//! # Recovery
//!
//! See [`super::run`]: log the numbers, count [`Metrics::consumer_rejoins`],
//! create a new client in the same group and subscribe it, then close the
//! old client on the blocking pool, waiting for it no longer than
//! [`CLOSE_WAIT`](super::CLOSE_WAIT) (closing with a dead broker can block),
//! and go on with the new one. Offsets are committed only after MySQL, so
//! whatever the new member receives again is a no-op.
//!
//! The new client joins *before* the old one leaves on purpose. What tansu
//! 0.6 does when every session of a group expires at once (broker frozen or
//! cut for longer than the session timeout): the cached group keeps the dead
//! leader's id, every member that joins afterwards is made a follower of that
//! leader, and its SyncGroup is answered REBALANCE_IN_PROGRESS forever — a
//! fresh client alone inherits the same state. Two members joining at the
//! same time make tansu reload the group from its storage, which drops a
//! leader that is no longer a member; the next join elects a live one. A
//! sound coordinator just sees one more rebalance.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::StreamConsumer;
use rdkafka::error::KafkaError;
use tokio::task::JoinHandle;

use super::LAG_EVERY;
use super::lag::{self, Sample};
use crate::metrics::Metrics;

/// An apply that takes longer than this means MySQL or Redis is in trouble:
/// its whole duration is excused from the no-progress clocks.
pub const BUSY_APPLY: Duration = Duration::from_secs(1);

/// Why the consumer is judged stuck.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stuck {
    /// Partitions with uncommitted messages on which nothing moved.
    NoProgress {
        /// The partitions that stalled.
        partitions: Vec<i32>,
        /// Messages the group has not committed, over the whole topic.
        group_lag: i64,
        /// Partitions assigned to this member.
        assigned: usize,
        /// How long the longest stall lasted.
        stalled_for: Duration,
    },
    /// No measurement succeeded.
    Unmeasurable {
        /// Since the first failure.
        failing_for: Duration,
        /// The last error.
        error: String,
    },
}

impl std::fmt::Display for Stuck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoProgress {
                partitions,
                group_lag,
                assigned,
                stalled_for,
            } => write!(
                f,
                "{group_lag} messages not committed by the group, no progress on partitions \
                 {partitions:?} for {stalled_for:?} ({assigned} assigned to this member)"
            ),
            Self::Unmeasurable { failing_for, error } => {
                write!(f, "no measurement for {failing_for:?}: {error}")
            }
        }
    }
}

/// What the judge remembers of one partition.
#[derive(Debug, Clone, Copy)]
struct Track {
    /// The group's committed offset and this member's position, last seen.
    marker: (Option<i64>, Option<i64>),
    /// Since when nothing moved while messages waited (or last seen healthy).
    since: Instant,
    /// Whether messages waited at the last sample.
    lagging: bool,
}

/// Decides from a sequence of timed samples whether the consumer is stuck.
/// Pure: no clock of its own, no I/O.
#[derive(Debug, Clone)]
pub struct Judge {
    stuck_after: Duration,
    tracks: BTreeMap<i32, Track>,
    failing_since: Option<Instant>,
}

impl Judge {
    /// A judge that says stuck after `stuck_after` without progress.
    pub fn new(stuck_after: Duration) -> Self {
        Self {
            stuck_after,
            tracks: BTreeMap::new(),
            failing_since: None,
        }
    }

    /// A measurement taken at `at`. `Some`: stuck (then [`Judge::restart`]).
    pub fn observe(&mut self, at: Instant, sample: &Sample) -> Option<Stuck> {
        self.failing_since = None;
        self.tracks
            .retain(|id, _| sample.partitions.contains_key(id));
        let mut stalled = Vec::new();
        let mut longest = Duration::ZERO;
        for (&id, partition) in &sample.partitions {
            let marker = (partition.committed, partition.position);
            let lagging = partition.group_lag() > 0;
            let track = self.tracks.entry(id).or_insert(Track {
                marker,
                since: at,
                lagging,
            });
            // Progress, or nothing waiting (then or now): the clock restarts.
            if track.marker != marker || !lagging || !track.lagging {
                *track = Track {
                    marker,
                    since: at,
                    lagging,
                };
                continue;
            }
            let stalled_for = at.saturating_duration_since(track.since);
            if stalled_for >= self.stuck_after {
                stalled.push(id);
                longest = longest.max(stalled_for);
            }
        }
        if stalled.is_empty() {
            return None;
        }
        Some(Stuck::NoProgress {
            partitions: stalled,
            group_lag: sample.group_lag(),
            assigned: sample.assigned(),
            stalled_for: longest,
        })
    }

    /// A measurement that failed at `at`. `Some`: stuck (then
    /// [`Judge::restart`]). The partitions' clocks go on: a failure proves
    /// no progress either way.
    pub fn observe_failure(&mut self, at: Instant, error: &str) -> Option<Stuck> {
        let since = *self.failing_since.get_or_insert(at);
        let failing_for = at.saturating_duration_since(since);
        (failing_for >= self.stuck_after).then(|| Stuck::Unmeasurable {
            failing_for,
            error: error.to_owned(),
        })
    }

    /// `busy` was spent on something else than waiting for Kafka (a slow
    /// apply): it does not count.
    pub fn excuse(&mut self, busy: Duration) {
        for track in self.tracks.values_mut() {
            track.since += busy;
        }
        if let Some(since) = &mut self.failing_since {
            *since += busy;
        }
    }

    /// After a rejoin at `at`: every clock starts again from `at`, so the
    /// next verdict comes `stuck_after` later at the earliest.
    pub fn restart(&mut self, at: Instant) {
        self.tracks.clear();
        if let Some(since) = &mut self.failing_since {
            *since = at;
        }
    }
}

/// A finished measurement: when, and what.
type Measured = (Instant, Result<Sample, KafkaError>);

/// Schedules measurements on the blocking pool, sets the lag gauge, and
/// hands the samples to the [`Judge`].
pub struct Watchdog {
    topic: Arc<str>,
    metrics: Arc<Metrics>,
    judge: Judge,
    last_start: Option<Instant>,
    task: Option<JoinHandle<Measured>>,
}

impl Watchdog {
    /// Watches `topic`; stuck after `stuck_after` without progress.
    pub fn new(topic: &str, metrics: Arc<Metrics>, stuck_after: Duration) -> Self {
        Self {
            topic: topic.into(),
            metrics,
            judge: Judge::new(stuck_after),
            last_start: None,
            task: None,
        }
    }

    /// Judges the measurement that finished, if one did, then starts the
    /// next one when due (at most one per [`LAG_EVERY`], one at a time).
    /// Call only while no batch is in hand. `Some`: stuck.
    pub async fn tick(&mut self, consumer: &Arc<StreamConsumer>) -> Option<Stuck> {
        if let Some(task) = self.task.take_if(|task| task.is_finished()) {
            let verdict = match task.await {
                Ok((at, Ok(sample))) => {
                    self.metrics.consumer_lag.set(sample.member_lag());
                    self.judge.observe(at, &sample)
                }
                Ok((at, Err(error))) => {
                    tracing::debug!(%error, "could not measure the topic and the group");
                    self.judge.observe_failure(at, &error.to_string())
                }
                Err(error) => {
                    tracing::warn!(%error, "the measurement task failed");
                    None
                }
            };
            if verdict.is_some() {
                return verdict;
            }
        }
        let due = self
            .last_start
            .is_none_or(|last| last.elapsed() >= LAG_EVERY);
        if due && self.task.is_none() {
            self.last_start = Some(Instant::now());
            let (consumer, topic) = (Arc::clone(consumer), Arc::clone(&self.topic));
            self.task = Some(tokio::task::spawn_blocking(move || {
                let measured = lag::measure(&consumer, &topic);
                (Instant::now(), measured)
            }));
        }
        None
    }

    /// `busy` was spent applying a batch; excused when over [`BUSY_APPLY`].
    pub fn applied_in(&mut self, busy: Duration) {
        if busy > BUSY_APPLY {
            self.judge.excuse(busy);
        }
    }

    /// A new client: the measurement in flight (on the old client, which it
    /// holds until it ends on its own) is forgotten, the judge starts afresh.
    pub fn rejoined(&mut self) {
        self.task = None;
        self.last_start = None;
        self.judge.restart(Instant::now());
    }

    /// Waits for the measurement in flight (it holds the consumer), at most
    /// `limit`.
    pub async fn finish(&mut self, limit: Duration) {
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(limit, task).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::lag::PartitionSample;
    use super::*;

    const STUCK_AFTER: Duration = Duration::from_secs(15);

    fn secs(start: Instant, s: u64) -> Instant {
        start + Duration::from_secs(s)
    }

    /// A sample of `(high, committed, position)` per partition (position
    /// `Some`: assigned to this member).
    fn sample(parts: &[(i64, Option<i64>, Option<i64>)]) -> Sample {
        Sample {
            partitions: parts
                .iter()
                .enumerate()
                .map(|(id, &(high, committed, position))| {
                    let id = i32::try_from(id).unwrap();
                    let part = PartitionSample {
                        low: 0,
                        high,
                        committed,
                        assigned: position.is_some(),
                        position,
                    };
                    (id, part)
                })
                .collect(),
        }
    }

    /// Feeds `sample` once per second from `from` to `to` seconds; the
    /// seconds at which the judge said stuck (restarting it each time).
    fn run(judge: &mut Judge, start: Instant, from: u64, to: u64, sample: &Sample) -> Vec<u64> {
        let mut stuck = Vec::new();
        for s in from..=to {
            if judge.observe(secs(start, s), sample).is_some() {
                stuck.push(s);
                judge.restart(secs(start, s));
            }
        }
        stuck
    }

    #[test]
    fn caught_up_is_never_stuck() {
        let start = Instant::now();
        let mut judge = Judge::new(STUCK_AFTER);
        let idle = sample(&[
            (10, Some(10), Some(10)),
            (5, Some(5), None),
            (0, None, None),
        ]);
        assert!(run(&mut judge, start, 0, 120, &idle).is_empty());
    }

    #[test]
    fn lag_without_progress_is_stuck_after_the_threshold_exactly() {
        let start = Instant::now();
        let mut judge = Judge::new(STUCK_AFTER);
        let stalled = sample(&[(10, Some(10), Some(10)), (7, Some(3), None)]);
        for s in 0..15 {
            assert_eq!(judge.observe(secs(start, s), &stalled), None, "at {s} s");
        }
        assert_eq!(
            judge.observe(secs(start, 15), &stalled),
            Some(Stuck::NoProgress {
                partitions: vec![1],
                group_lag: 4,
                assigned: 1,
                stalled_for: STUCK_AFTER,
            })
        );
    }

    #[test]
    fn committed_offsets_moving_is_progress() {
        let start = Instant::now();
        let mut judge = Judge::new(STUCK_AFTER);
        // Messages keep arriving and the group keeps committing, always
        // behind by a few: never stuck.
        for s in 0..120 {
            let s64 = i64::try_from(s).unwrap();
            let moving = sample(&[(s64 + 5, Some(s64), Some(s64 + 2))]);
            assert_eq!(judge.observe(secs(start, s), &moving), None, "at {s} s");
        }
    }

    #[test]
    fn own_position_moving_is_progress_even_without_commits() {
        let start = Instant::now();
        let mut judge = Judge::new(STUCK_AFTER);
        // Commits fail, but this member is still receiving.
        for s in 0..40 {
            let s64 = i64::try_from(s).unwrap();
            let receiving = sample(&[(100, Some(0), Some(s64 + 1))]);
            assert_eq!(judge.observe(secs(start, s), &receiving), None, "at {s} s");
        }
        // Then it has received everything and nothing is committed: stuck
        // (a new client starts again from the committed offsets).
        let done = sample(&[(100, Some(0), Some(41))]);
        assert_eq!(run(&mut judge, start, 40, 55, &done), vec![55]);
    }

    #[test]
    fn a_stalled_partition_is_noticed_while_others_flow() {
        let start = Instant::now();
        let mut judge = Judge::new(STUCK_AFTER);
        // Partition 0 (this member's) flows; partition 1, left by a dead
        // member, waits with nothing committed.
        let mut verdicts = Vec::new();
        for s in 0..=20 {
            let s64 = i64::try_from(s).unwrap();
            let flowing = sample(&[(s64 + 3, Some(s64), Some(s64 + 1)), (9, None, None)]);
            if let Some(stuck) = judge.observe(secs(start, s), &flowing) {
                verdicts.push((s, stuck));
                judge.restart(secs(start, s));
            }
        }
        assert_eq!(
            verdicts,
            vec![(
                15,
                Stuck::NoProgress {
                    partitions: vec![1],
                    group_lag: 12,
                    assigned: 1,
                    stalled_for: STUCK_AFTER,
                }
            )]
        );
    }

    #[test]
    fn a_partition_that_empties_restarts_its_clock() {
        let start = Instant::now();
        let mut judge = Judge::new(STUCK_AFTER);
        let waiting = sample(&[(4, Some(3), Some(3))]);
        assert!(run(&mut judge, start, 0, 10, &waiting).is_empty());
        let caught_up = sample(&[(4, Some(4), Some(4))]);
        assert!(run(&mut judge, start, 11, 11, &caught_up).is_empty());
        // One more message, not consumed: a fresh 15 s from second 12.
        let again = sample(&[(5, Some(4), Some(4))]);
        assert_eq!(run(&mut judge, start, 12, 40, &again), vec![27]);
    }

    #[test]
    fn failures_are_stuck_at_most_once_per_threshold() {
        let start = Instant::now();
        let mut judge = Judge::new(STUCK_AFTER);
        let mut stuck = Vec::new();
        // The broker is down for two minutes, a measurement fails each second.
        for s in 0..=120 {
            if let Some(verdict) = judge.observe_failure(secs(start, s), "all brokers down") {
                assert_eq!(
                    verdict,
                    Stuck::Unmeasurable {
                        failing_for: STUCK_AFTER,
                        error: "all brokers down".to_owned(),
                    }
                );
                stuck.push(s);
                judge.restart(secs(start, s));
            }
        }
        assert_eq!(stuck, vec![15, 30, 45, 60, 75, 90, 105, 120]);
    }

    #[test]
    fn a_success_between_failures_restarts_the_failure_clock() {
        let start = Instant::now();
        let mut judge = Judge::new(STUCK_AFTER);
        let healthy = sample(&[(1, Some(1), Some(1))]);
        for s in 0..60 {
            let verdict = if s % 10 == 9 {
                judge.observe(secs(start, s), &healthy)
            } else {
                judge.observe_failure(secs(start, s), "timed out")
            };
            assert_eq!(verdict, None, "at {s} s");
        }
    }

    #[test]
    fn no_progress_clocks_run_across_failed_measurements() {
        let start = Instant::now();
        let mut judge = Judge::new(STUCK_AFTER);
        let stalled = sample(&[(8, Some(2), None)]);
        let mut stuck = Vec::new();
        for s in 0..=30 {
            let verdict = if s % 2 == 0 {
                judge.observe(secs(start, s), &stalled)
            } else {
                judge.observe_failure(secs(start, s), "timed out")
            };
            if verdict.is_some() {
                stuck.push(s);
                judge.restart(secs(start, s));
            }
        }
        // Stalled from 0: stuck at 16 (the first sample at or past 15 s),
        // then from 18 again: stuck at 34, past the end.
        assert_eq!(stuck, vec![16]);
    }

    #[test]
    fn busy_time_is_excused() {
        let start = Instant::now();
        let mut judge = Judge::new(STUCK_AFTER);
        let stalled = sample(&[(8, Some(2), Some(2))]);
        assert!(run(&mut judge, start, 0, 10, &stalled).is_empty());
        // 60 s spent on one batch (MySQL down), then the same numbers.
        judge.excuse(Duration::from_secs(60));
        assert_eq!(judge.observe(secs(start, 71), &stalled), None);
        assert_eq!(judge.observe(secs(start, 74), &stalled), None);
        assert!(judge.observe(secs(start, 75), &stalled).is_some());
    }

    #[test]
    fn partitions_that_disappear_are_forgotten() {
        let start = Instant::now();
        let mut judge = Judge::new(STUCK_AFTER);
        let two = sample(&[(1, Some(1), Some(1)), (9, Some(0), None)]);
        assert!(run(&mut judge, start, 0, 10, &two).is_empty());
        let one = sample(&[(1, Some(1), Some(1))]);
        assert!(run(&mut judge, start, 11, 11, &one).is_empty());
        // Partition 1 back: its clock starts anew.
        assert_eq!(run(&mut judge, start, 12, 40, &two), vec![27]);
    }

    #[test]
    fn stuck_reads_as_numbers() {
        let stuck = Stuck::NoProgress {
            partitions: vec![1, 2],
            group_lag: 12,
            assigned: 1,
            stalled_for: STUCK_AFTER,
        };
        assert_eq!(
            stuck.to_string(),
            "12 messages not committed by the group, no progress on partitions [1, 2] \
             for 15s (1 assigned to this member)"
        );
    }
}
