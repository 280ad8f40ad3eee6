//! Measuring the topic and the group: watermarks of every partition, the
//! group's committed offsets, this member's assignment and positions. One
//! [`Sample`] feeds both the lag gauge ([`Sample::member_lag`]) and the
//! watchdog ([`super::watchdog`]).
//!
//! Every call here is a broker round trip that blocks: run [`measure`] on the
//! blocking pool, never on an async thread.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

/// Longest wait for each broker round trip of a measurement (metadata,
/// committed offsets, one partition's watermarks).
const ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(1);

/// One partition of the topic, as measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionSample {
    /// Low watermark: the first offset still in the partition.
    pub low: i64,
    /// High watermark: the offset the next message will get.
    pub high: i64,
    /// The group's committed offset (the next message to consume), if the
    /// group committed one.
    pub committed: Option<i64>,
    /// Whether the partition is assigned to this member.
    pub assigned: bool,
    /// This member's position (offset of the last message it received + 1),
    /// when assigned and something was received since the assignment.
    pub position: Option<i64>,
}

impl PartitionSample {
    /// Messages the group has not committed yet: high − committed, counted
    /// from the low watermark when the group committed nothing.
    pub fn group_lag(&self) -> i64 {
        let from = self.committed.unwrap_or(self.low).max(self.low);
        (self.high - from).max(0)
    }

    /// Messages this member has not received yet, when the partition is
    /// assigned to it: high − position (before a first message, from the
    /// committed offset, else from the low watermark). 0 when not assigned.
    pub fn member_lag(&self) -> i64 {
        if !self.assigned {
            return 0;
        }
        let from = self
            .position
            .or(self.committed)
            .unwrap_or(self.low)
            .max(self.low);
        (self.high - from).max(0)
    }
}

/// Every partition of the topic, by partition id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sample {
    /// The partitions, by id.
    pub partitions: BTreeMap<i32, PartitionSample>,
}

impl Sample {
    /// Sum of [`PartitionSample::group_lag`].
    pub fn group_lag(&self) -> i64 {
        self.partitions
            .values()
            .map(PartitionSample::group_lag)
            .sum()
    }

    /// Sum of [`PartitionSample::member_lag`]: the lag gauge.
    pub fn member_lag(&self) -> i64 {
        self.partitions
            .values()
            .map(PartitionSample::member_lag)
            .sum()
    }

    /// Partitions assigned to this member.
    pub fn assigned(&self) -> usize {
        self.partitions.values().filter(|p| p.assigned).count()
    }
}

/// Measures every partition of `topic`: metadata, the group's committed
/// offsets (for all partitions, assigned to this member or not), this
/// member's assignment and positions, the watermarks. Blocks for up to a
/// few [`ROUND_TRIP_TIMEOUT`]s.
///
/// # Errors
///
/// A round trip failed or timed out, or the broker does not know the topic.
pub fn measure(consumer: &StreamConsumer, topic: &str) -> Result<Sample, KafkaError> {
    let metadata = consumer.fetch_metadata(Some(topic), ROUND_TRIP_TIMEOUT)?;
    let unknown = || KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition);
    let found = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(unknown)?;
    if let Some(error) = found.error() {
        return Err(KafkaError::MetadataFetch(error.into()));
    }
    let ids: Vec<i32> = found.partitions().iter().map(|p| p.id()).collect();
    if ids.is_empty() {
        return Err(unknown());
    }
    let mut list = TopicPartitionList::new();
    for &id in &ids {
        list.add_partition(topic, id);
    }
    let committed = consumer.committed_offsets(list, ROUND_TRIP_TIMEOUT)?;
    let assignment = consumer.assignment()?;
    let position = consumer.position()?;
    let offset_of = |list: &TopicPartitionList, id: i32| -> Result<Option<i64>, KafkaError> {
        match list.find_partition(topic, id) {
            Some(element) => {
                element.error()?;
                Ok(match element.offset() {
                    Offset::Offset(at) => Some(at),
                    _ => None,
                })
            }
            None => Ok(None),
        }
    };
    let mut sample = Sample::default();
    for id in ids {
        let (low, high) = consumer.fetch_watermarks(topic, id, ROUND_TRIP_TIMEOUT)?;
        let assigned = assignment.find_partition(topic, id).is_some();
        let partition = PartitionSample {
            low,
            high,
            committed: offset_of(&committed, id)?,
            assigned,
            position: if assigned {
                offset_of(&position, id).ok().flatten()
            } else {
                None
            },
        };
        sample.partitions.insert(id, partition);
    }
    Ok(sample)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(low: i64, high: i64, committed: Option<i64>, position: Option<i64>) -> PartitionSample {
        PartitionSample {
            low,
            high,
            committed,
            assigned: position.is_some(),
            position,
        }
    }

    #[test]
    fn lags() {
        // Committed behind the end.
        assert_eq!(part(0, 10, Some(4), None).group_lag(), 6);
        // Nothing committed: from the low watermark.
        assert_eq!(part(3, 10, None, None).group_lag(), 7);
        // A committed offset below the low watermark counts from the low one.
        assert_eq!(part(5, 10, Some(1), None).group_lag(), 5);
        // Caught up.
        assert_eq!(part(0, 10, Some(10), Some(10)).group_lag(), 0);
        // This member: from its position, else the committed offset.
        assert_eq!(part(0, 10, Some(4), Some(8)).member_lag(), 2);
        let assigned_fresh = PartitionSample {
            assigned: true,
            ..part(0, 10, Some(10), None)
        };
        assert_eq!(assigned_fresh.member_lag(), 0);
        // Not assigned: not this member's lag.
        assert_eq!(part(0, 10, Some(4), None).member_lag(), 0);
        let sample = Sample {
            partitions: BTreeMap::from([
                (0, part(0, 10, Some(4), Some(8))),
                (1, part(0, 5, None, None)),
            ]),
        };
        assert_eq!(sample.group_lag(), 11);
        assert_eq!(sample.member_lag(), 2);
        assert_eq!(sample.assigned(), 1);
    }
}
