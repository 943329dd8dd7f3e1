//! OffsetCommit: a consumer's committed positions. Commits are checked against the group's
//! membership by the coordinator and replicated by the controller group before they are
//! acknowledged.

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use kafka_protocol::ResponseError;
use strand_protocol::api_versions::ApiRange;
use strand_raft::{CommittedOffset, TopicPartition};

use super::details::{optional, topic_name};
use crate::groups::{self, now_ms};
use crate::metrics::Refused;
use crate::Broker;

/// v6 carries the committed leader epoch (KIP-320).
pub const VERSIONS: ApiRange = ApiRange::new(ApiKey::OffsetCommit, 2, 9);

/// Longest metadata string a commit may carry (Kafka: offset.metadata.max.bytes).
const MAX_METADATA_BYTES: usize = 4096;

fn partition_exists(broker: &Broker, topic: &str, partition: i32) -> bool {
    broker
        .topic(topic)
        .is_some_and(|t| usize::try_from(partition).is_ok_and(|p| p < t.partitions.len()))
}

pub async fn handle(
    broker: &Broker,
    request: OffsetCommitRequest,
    version: i16,
) -> OffsetCommitResponse {
    let group_error = match broker.groups.lock(broker) {
        Ok(mut groups) => {
            let instance = optional(&request.group_instance_id);
            match groups.existing(&request.group_id) {
                Some(group) => group.check_commit(
                    &request.member_id,
                    instance,
                    request.generation_id_or_member_epoch,
                ),
                None if request.generation_id_or_member_epoch < 0 => {
                    if groups.admits(&request.group_id, &broker.node.controller().offsets()) {
                        0
                    } else {
                        broker.metrics.refused(Refused::MaxGroups);
                        ResponseError::PolicyViolation.code()
                    }
                }
                // A member of a generation this coordinator never saw (it took over).
                None => ResponseError::IllegalGeneration.code(),
            }
        }
        Err(code) => code,
    };
    let timestamp = now_ms();
    let mut errors: Vec<(String, Vec<(i32, i16)>)> = Vec::new();
    let mut accepted: Vec<(TopicPartition, CommittedOffset)> = Vec::new();
    for topic in &request.topics {
        let mut partitions = Vec::new();
        for p in &topic.partitions {
            let error = if group_error != 0 {
                group_error
            } else if !partition_exists(broker, &topic.name, p.partition_index) {
                ResponseError::UnknownTopicOrPartition.code()
            } else if p
                .committed_metadata
                .as_ref()
                .is_some_and(|m| m.len() > MAX_METADATA_BYTES)
            {
                ResponseError::OffsetMetadataTooLarge.code()
            } else {
                accepted.push((
                    (topic.name.to_string(), p.partition_index),
                    CommittedOffset {
                        offset: p.committed_offset,
                        leader_epoch: if version >= 6 {
                            p.committed_leader_epoch
                        } else {
                            -1
                        },
                        metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                        commit_timestamp: timestamp,
                    },
                ));
                0
            };
            partitions.push((p.partition_index, error));
        }
        errors.push((topic.name.to_string(), partitions));
    }
    if !accepted.is_empty() {
        if let Err(code) = groups::commit(broker, &request.group_id, accepted).await {
            for (_, partitions) in errors.iter_mut() {
                for (_, error) in partitions.iter_mut().filter(|(_, e)| *e == 0) {
                    *error = code;
                }
            }
        }
    }
    OffsetCommitResponse::default().with_topics(
        errors
            .into_iter()
            .map(|(name, partitions)| {
                OffsetCommitResponseTopic::default()
                    .with_name(topic_name(&name))
                    .with_partitions(
                        partitions
                            .into_iter()
                            .map(|(index, error)| {
                                OffsetCommitResponsePartition::default()
                                    .with_partition_index(index)
                                    .with_error_code(error)
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}
