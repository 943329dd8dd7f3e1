//! DescribeTopicPartitions (KIP-966), what Kafka's AdminClient `describeTopics` asks first:
//! Metadata's partition view (`__consumer_offsets` included), a page at a time. Topics go
//! in name order; a response holds at most `response_partition_limit` partitions and names
//! where the next page starts.

use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::{DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse};
use kafka_protocol::ResponseError;
use strand_protocol::api_versions::ApiRange;
use strand_raft::TopicInfo;
use uuid::Uuid;

use super::details::{broker_id, leader_and_isr, topic_name, OPERATIONS_OMITTED};
use crate::{topics, Broker};

pub const VERSIONS: ApiRange = ApiRange::new(ApiKey::DescribeTopicPartitions, 0, 0);

/// Kafka's `max.request.partition.size.limit`: the most partitions one response holds.
const MAX_PARTITIONS: i32 = 2000;

pub fn handle(
    broker: &Broker,
    request: DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
    let metadata = broker.node.controller().metadata();
    let internal = topics::consumer_offsets(broker);
    let find = |name: &str| match metadata.topics.get(name) {
        Some(topic) => Some(topic.as_ref()),
        None => (name == topics::CONSUMER_OFFSETS).then_some(&internal),
    };
    let listing_all = request.topics.is_empty();
    let mut names: Vec<String> = if listing_all {
        let mut all: Vec<String> = metadata.topics.keys().cloned().collect();
        all.push(internal.name.clone());
        all
    } else {
        request.topics.iter().map(|t| t.name.to_string()).collect()
    };
    names.sort_unstable();
    names.dedup();
    let (first_topic, first_partition) = match &request.cursor {
        Some(c) => (c.topic_name.to_string(), c.partition_index),
        None => (String::new(), 0),
    };
    let cursor_unknown = request.cursor.is_some() && !names.contains(&first_topic);
    if cursor_unknown || first_partition < 0 {
        // As Kafka does: the cursor must point into the request, whose topics all get the
        // error (none when it named none).
        let topics = request
            .topics
            .into_iter()
            .map(|t| {
                DescribeTopicPartitionsResponseTopic::default()
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_name(Some(t.name))
                    .with_topic_authorized_operations(OPERATIONS_OMITTED)
            })
            .collect();
        return DescribeTopicPartitionsResponse::default().with_topics(topics);
    }
    let mut room = request.response_partition_limit.clamp(1, MAX_PARTITIONS);
    let mut topics = Vec::new();
    let mut next_cursor = None;
    let mut remaining = names.into_iter().filter(|n| *n >= first_topic).peekable();
    while let Some(name) = remaining.next() {
        let Some(topic) = find(&name) else {
            // Listing all topics never names a missing one.
            if !listing_all {
                let error = match topics::name_problem(&name) {
                    Some(_) => ResponseError::InvalidTopicException,
                    None => ResponseError::UnknownTopicOrPartition,
                };
                topics.push(
                    DescribeTopicPartitionsResponseTopic::default()
                        .with_error_code(error.code())
                        .with_name(Some(topic_name(&name)))
                        .with_topic_authorized_operations(OPERATIONS_OMITTED),
                );
            }
            continue;
        };
        let start = if name == first_topic {
            first_partition
        } else {
            0
        };
        let count = topic.partitions.len() as i32;
        let end = count.min(start.saturating_add(room));
        topics.push(describe(broker, topic, start..end));
        room -= end.saturating_sub(start).max(0);
        if end < count {
            next_cursor = Some((name, end));
            break;
        }
        if room == 0 {
            next_cursor = remaining.peek().map(|next| (next.clone(), 0));
            break;
        }
    }
    DescribeTopicPartitionsResponse::default()
        .with_topics(topics)
        .with_next_cursor(next_cursor.map(|(name, partition)| {
            Cursor::default()
                .with_topic_name(topic_name(&name))
                .with_partition_index(partition)
        }))
}

fn describe(
    broker: &Broker,
    topic: &TopicInfo,
    partitions: std::ops::Range<i32>,
) -> DescribeTopicPartitionsResponseTopic {
    let partitions = partitions
        .filter_map(|index| Some((index, topic.partitions.get(index as usize)?)))
        .map(|(index, info)| {
            let base = DescribeTopicPartitionsResponsePartition::default()
                .with_partition_index(index)
                .with_replica_nodes(info.replicas.iter().map(|r| broker_id(*r)).collect())
                .with_eligible_leader_replicas(Some(Vec::new()))
                .with_last_known_elr(Some(Vec::new()));
            let led = leader_and_isr(broker, info);
            base.with_error_code(led.error_code)
                .with_leader_id(led.leader)
                .with_leader_epoch(led.epoch)
                .with_isr_nodes(led.in_sync)
        })
        .collect();
    DescribeTopicPartitionsResponseTopic::default()
        .with_name(Some(topic_name(&topic.name)))
        .with_topic_id(Uuid::from_bytes(topic.id))
        .with_is_internal(topic.name == topics::CONSUMER_OFFSETS)
        .with_partitions(partitions)
        .with_topic_authorized_operations(OPERATIONS_OMITTED)
}
