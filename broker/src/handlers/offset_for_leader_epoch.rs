//! OffsetForLeaderEpoch (KIP-101/320): where a leader epoch ended, so a consumer that saw
//! records of that epoch can tell whether its position is still on the log.
//!
//! Strand's leader epoch is the Raft term, and committed records are never truncated: a
//! consumer only ever reads committed records, so its position is always on the log. Every
//! known epoch is therefore answered with the log end, where Kafka answers an older epoch
//! with the first offset of the next one. The answer only decides whether the consumer
//! detects a truncation, and there is none to detect; Kafka's rule would let librdkafka
//! (2.12) invent one: it compares an answer with a position that may have moved on while
//! the request was in flight (leader changes re-validate), finds the epoch ending before
//! it, and seeks back to that end, discarding the records it had fetched but not yet
//! handed to the application, below the seek as well. The Jepsen harness saw consumers
//! skip records that way (`jepsen/`, poll-skip).

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use kafka_protocol::ResponseError;
use strand_protocol::api_versions::ApiRange;

use super::details::check_leader_epoch;
use crate::Broker;

/// v0-v1 were removed in Kafka 4, which advertises 2-4 as well.
pub const VERSIONS: ApiRange = ApiRange::new(ApiKey::OffsetForLeaderEpoch, 2, 4);

/// The answer for `requested`, given the epoch history (`(epoch, first offset)`, oldest
/// first) and the log end offset: the largest epoch not above `requested`, ending at the
/// log end (see the module documentation). An epoch newer than any known gets `(-1, -1)`;
/// one older than all gets itself and the first epoch's start, as in Kafka: its records
/// are gone, and the consumer should move to what is left.
pub fn epoch_end_offset(history: &[(u32, i64)], requested: i32, log_end: i64) -> (i32, i64) {
    let Some(&(latest, _)) = history.last() else {
        return (-1, -1);
    };
    if requested < 0 || requested as i64 > latest as i64 {
        return (-1, -1);
    }
    match history
        .iter()
        .rev()
        .find(|(e, _)| *e as i64 <= requested as i64)
    {
        Some(&(lower, _)) => (lower as i32, log_end),
        None => (requested, history[0].1),
    }
}

pub async fn handle(
    broker: &Broker,
    request: OffsetForLeaderEpochRequest,
    _version: i16,
) -> OffsetForLeaderEpochResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let info = broker.topic(topic.topic.0.as_str());
            let partitions = topic
                .partitions
                .into_iter()
                .map(|p| {
                    let base = EpochEndOffset::default().with_partition(p.partition);
                    let answer = info
                        .as_ref()
                        .ok_or(ResponseError::UnknownTopicOrPartition)
                        .and_then(|info| broker.serving_replica(info, p.partition))
                        .and_then(|replica| {
                            check_leader_epoch(
                                p.current_leader_epoch,
                                &replica.replica.leadership(),
                            )?;
                            let history = replica.reader.index().epochs().map_err(|e| {
                                tracing::error!(error = %e, "cannot read the epoch history");
                                ResponseError::KafkaStorageError
                            })?;
                            let high_watermark = replica.status().high_watermark;
                            let answer = epoch_end_offset(&history, p.leader_epoch, high_watermark);
                            tracing::debug!(
                                partition = p.partition,
                                requested = p.leader_epoch,
                                ?answer,
                                high_watermark,
                                latest = ?history.last(),
                                "offset for leader epoch"
                            );
                            Ok(answer)
                        });
                    match answer {
                        Ok((epoch, end)) => base.with_leader_epoch(epoch).with_end_offset(end),
                        Err(error) => base
                            .with_error_code(error.code())
                            .with_leader_epoch(-1)
                            .with_end_offset(-1),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_epoch_ends_at_the_log_end() {
        // Epoch 1 wrote 0..10, epoch 3 wrote 10..25, epoch 4 is current, log end 30.
        let history = [(1, 0), (3, 10), (4, 25)];
        assert_eq!(
            epoch_end_offset(&history, 4, 30),
            (4, 30),
            "the current epoch ends at the log end"
        );
        // Kafka would answer (3, 25) and (1, 10): a consumer whose position had moved past
        // those while its request was in flight would take them for a truncation.
        assert_eq!(epoch_end_offset(&history, 3, 30), (3, 30));
        assert_eq!(
            epoch_end_offset(&history, 2, 30),
            (1, 30),
            "an unknown epoch answers for the one before"
        );
        assert_eq!(
            epoch_end_offset(&history, 0, 30),
            (0, 0),
            "older than all: the first epoch's start"
        );
        assert_eq!(
            epoch_end_offset(&history, 5, 30),
            (-1, -1),
            "a future epoch"
        );
        assert_eq!(epoch_end_offset(&history, -1, 30), (-1, -1));
        assert_eq!(epoch_end_offset(&[], 1, 0), (-1, -1));
    }
}
