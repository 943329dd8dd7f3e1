//! Committed offsets: OffsetCommit, OffsetFetch and OffsetDelete. Commits are checked
//! against the group's membership by the coordinator and replicated by the controller
//! group before they are acknowledged.

use std::collections::{BTreeMap, HashSet};

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    OffsetFetchRequest, OffsetFetchResponse,
};
use kafka_protocol::ResponseError;
use strand_raft::{CommittedOffset, ControllerCommand, TopicPartition};

use super::details::{str_bytes, topic_name};
use crate::groups::{self, now_ms};
use crate::Broker;

/// Longest metadata string a commit may carry (Kafka: offset.metadata.max.bytes).
const MAX_METADATA_BYTES: usize = 4096;

fn partition_exists(broker: &Broker, topic: &str, partition: i32) -> bool {
    broker
        .topic(topic)
        .is_some_and(|t| usize::try_from(partition).is_ok_and(|p| p < t.partitions.len()))
}

pub async fn commit(
    broker: &Broker,
    request: OffsetCommitRequest,
    version: i16,
) -> OffsetCommitResponse {
    let group_error = match broker.groups.lock(broker) {
        Ok(mut groups) => {
            let instance = request
                .group_instance_id
                .as_deref()
                .filter(|s| !s.is_empty());
            match groups.existing(&request.group_id) {
                Some(group) => group.check_commit(
                    &request.member_id,
                    instance,
                    request.generation_id_or_member_epoch,
                ),
                None if request.generation_id_or_member_epoch < 0 => 0,
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

/// One group's committed offsets for the partitions asked (all when `None`), as
/// (topic, [(partition, offset)]) with -1 where nothing is committed.
type Fetched = Vec<(String, Vec<(i32, Option<CommittedOffset>)>)>;

fn fetch_group(
    broker: &Broker,
    group: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
) -> Result<Fetched, i16> {
    broker.groups.lock(broker)?;
    let offsets = broker.node.controller().offsets();
    let committed = offsets.get(group);
    Ok(match topics {
        Some(topics) => topics
            .into_iter()
            .map(|(topic, partitions)| {
                let found = partitions
                    .into_iter()
                    .map(|p| {
                        let offset = committed.and_then(|c| c.get(&(topic.clone(), p)).cloned());
                        (p, offset)
                    })
                    .collect();
                (topic, found)
            })
            .collect(),
        None => {
            let mut by_topic: BTreeMap<String, Vec<(i32, Option<CommittedOffset>)>> =
                BTreeMap::new();
            for ((topic, p), offset) in committed.into_iter().flatten() {
                by_topic
                    .entry(topic.clone())
                    .or_default()
                    .push((*p, Some(offset.clone())));
            }
            by_topic.into_iter().collect()
        }
    })
}

fn fetched_fields(offset: &Option<CommittedOffset>) -> (i64, i32, String) {
    match offset {
        Some(o) => (
            o.offset,
            o.leader_epoch,
            o.metadata.clone().unwrap_or_default(),
        ),
        None => (-1, -1, String::new()),
    }
}

pub fn fetch(broker: &Broker, request: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
    if version >= 8 {
        // v8 (KIP-709) asks for several groups at once.
        let groups = request
            .groups
            .into_iter()
            .map(|g| {
                let topics = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name.to_string(), t.partition_indexes))
                        .collect()
                });
                let group = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
                match fetch_group(broker, &g.group_id, topics) {
                    Err(code) => group.with_error_code(code),
                    Ok(fetched) => group.with_topics(
                        fetched
                            .into_iter()
                            .map(|(name, partitions)| {
                                OffsetFetchResponseTopics::default()
                                    .with_name(topic_name(&name))
                                    .with_partitions(
                                        partitions
                                            .iter()
                                            .map(|(index, offset)| {
                                                let (o, epoch, meta) = fetched_fields(offset);
                                                OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(*index)
                                                    .with_committed_offset(o)
                                                    .with_committed_leader_epoch(epoch)
                                                    .with_metadata(Some(str_bytes(meta)))
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    ),
                }
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let topics = request.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.to_string(), t.partition_indexes))
            .collect::<Vec<_>>()
    });
    match fetch_group(broker, &request.group_id, topics.clone()) {
        Ok(fetched) => OffsetFetchResponse::default().with_topics(
            fetched
                .into_iter()
                .map(|(name, partitions)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(topic_name(&name))
                        .with_partitions(
                            partitions
                                .iter()
                                .map(|(index, offset)| {
                                    let (o, epoch, meta) = fetched_fields(offset);
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(*index)
                                        .with_committed_offset(o)
                                        .with_committed_leader_epoch(epoch)
                                        .with_metadata(Some(str_bytes(meta)))
                                })
                                .collect(),
                        )
                })
                .collect(),
        ),
        // v1 has no top-level error: it goes on every partition asked.
        Err(code) if version < 2 => OffsetFetchResponse::default().with_topics(
            topics
                .unwrap_or_default()
                .into_iter()
                .map(|(name, partitions)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(topic_name(&name))
                        .with_partitions(
                            partitions
                                .into_iter()
                                .map(|index| {
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(index)
                                        .with_committed_offset(-1)
                                        .with_error_code(code)
                                })
                                .collect(),
                        )
                })
                .collect(),
        ),
        Err(code) => OffsetFetchResponse::default().with_error_code(code),
    }
}

pub async fn delete(broker: &Broker, request: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let checked = match broker.groups.lock(broker) {
        Err(code) => Err(code),
        Ok(mut groups) => {
            let known = broker
                .node
                .controller()
                .offsets()
                .contains_key(request.group_id.as_str());
            match groups.existing(&request.group_id) {
                // Partitions of topics the live members consume cannot lose their offsets.
                Some(group) => Ok(subscribed_topics(group)),
                None if known => Ok(HashSet::new()),
                None => Err(ResponseError::GroupIdNotFound.code()),
            }
        }
    };
    let subscribed = match checked {
        Ok(subscribed) => subscribed,
        Err(code) => return OffsetDeleteResponse::default().with_error_code(code),
    };
    let mut doomed = Vec::new();
    let topics: Vec<(String, Vec<(i32, i16)>)> = request
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let error = if subscribed.contains(t.name.as_str()) {
                        ResponseError::GroupSubscribedToTopic.code()
                    } else {
                        doomed.push((t.name.to_string(), p.partition_index));
                        0
                    };
                    (p.partition_index, error)
                })
                .collect();
            (t.name.to_string(), partitions)
        })
        .collect();
    let mut top_error = 0;
    if !doomed.is_empty() {
        let command = ControllerCommand::DeleteOffsets {
            group: request.group_id.to_string(),
            partitions: Some(doomed),
        };
        if let Err(code) = groups::propose_offsets(broker, command).await {
            top_error = code;
        }
    }
    OffsetDeleteResponse::default()
        .with_error_code(top_error)
        .with_topics(
            topics
                .into_iter()
                .map(|(name, partitions)| {
                    OffsetDeleteResponseTopic::default()
                        .with_name(topic_name(&name))
                        .with_partitions(
                            partitions
                                .into_iter()
                                .map(|(index, error)| {
                                    OffsetDeleteResponsePartition::default()
                                        .with_partition_index(index)
                                        .with_error_code(error)
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
}

/// Topics the members of a consumer group subscribe to, from their join metadata.
fn subscribed_topics(group: &groups::Group) -> HashSet<String> {
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::Decodable;
    if group.protocol_type() != Some("consumer") {
        return HashSet::new();
    }
    group
        .members()
        .into_iter()
        .filter_map(|m| {
            let mut buf = m.metadata.clone();
            if buf.len() < 2 {
                return None;
            }
            let version = i16::from_be_bytes([buf[0], buf[1]]);
            bytes::Buf::advance(&mut buf, 2);
            ConsumerProtocolSubscription::decode(&mut buf, version).ok()
        })
        .flat_map(|s| s.topics.into_iter().map(|t| t.to_string()))
        .collect()
}
