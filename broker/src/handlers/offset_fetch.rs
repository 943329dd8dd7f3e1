//! OffsetFetch: a group's committed offsets, for one group or (v8, KIP-709) several.

use std::collections::BTreeMap;

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse};
use strand_protocol::api_versions::ApiRange;
use strand_raft::CommittedOffset;

use super::details::{str_bytes, topic_name};
use crate::Broker;

pub const VERSIONS: ApiRange = ApiRange::new(ApiKey::OffsetFetch, 1, 9);

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

pub fn handle(broker: &Broker, request: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
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
