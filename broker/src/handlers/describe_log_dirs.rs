//! DescribeLogDirs: the node's one data directory and the partitions it holds, with their
//! approximate size on disk (Kafka's reassignment tool asks before moving partitions).
//! Strand keeps every partition in one RocksDB, so there is one log dir per node, and no
//! per-directory follower lag: Metadata's in-sync replicas show catch-up instead.

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse};
use strand_protocol::api_versions::ApiRange;

use super::details::{str_bytes, topic_name};
use crate::Broker;

pub const VERSIONS: ApiRange = ApiRange::new(ApiKey::DescribeLogDirs, 1, 4);

pub fn handle(broker: &Broker, request: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    let metadata = broker.node.controller().metadata();
    let wanted = |topic: &str, index: i32| match &request.topics {
        None => true,
        Some(topics) => topics
            .iter()
            .any(|t| t.topic.0.as_str() == topic && t.partitions.contains(&index)),
    };
    let mut held = Vec::new();
    for topic in metadata.topics.values() {
        for (i, p) in topic.partitions.iter().enumerate() {
            if broker.node.partition(p.group).is_some() && wanted(&topic.name, i as i32) {
                held.push((topic.name.clone(), i as i32, p.group));
            }
        }
    }
    let groups: Vec<_> = held.iter().map(|(_, _, g)| *g).collect();
    let sizes = broker.node.store().approximate_log_bytes(&groups);
    let mut topics: Vec<DescribeLogDirsTopic> = Vec::new();
    for ((name, index, _), size) in held.into_iter().zip(sizes) {
        let partition = DescribeLogDirsPartition::default()
            .with_partition_index(index)
            .with_partition_size(size as i64);
        match topics.last_mut() {
            Some(t) if t.name.0.as_str() == name => t.partitions.push(partition),
            _ => topics.push(
                DescribeLogDirsTopic::default()
                    .with_name(topic_name(&name))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    let dir = broker
        .config
        .data_dir
        .canonicalize()
        .unwrap_or_else(|_| broker.config.data_dir.clone());
    DescribeLogDirsResponse::default().with_results(vec![DescribeLogDirsResult::default()
        .with_log_dir(str_bytes(dir.display().to_string()))
        .with_topics(topics)
        // -1: not reported (Kafka's value for unknown).
        .with_total_bytes(-1)
        .with_usable_bytes(-1)])
}
