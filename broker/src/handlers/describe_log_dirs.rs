//! DescribeLogDirs: the node's one data directory and the partitions it holds, with the
//! bytes of their stored batches (Kafka's reassignment tool asks before moving partitions).
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
    let mut topics: Vec<DescribeLogDirsTopic> = Vec::new();
    for topic in metadata.topics.values() {
        for (index, p) in topic.partitions.iter().enumerate() {
            let index = index as i32;
            let Some(replica) = broker.node.partition(p.group) else {
                continue;
            };
            if !wanted(&topic.name, index) {
                continue;
            }
            // -1 when the index cannot be read: Kafka's value for a size it does not know.
            let size = replica
                .reader
                .index()
                .stored_bytes()
                .map_or(-1, |b| b as i64);
            let partition = DescribeLogDirsPartition::default()
                .with_partition_index(index)
                .with_partition_size(size);
            let name = &topic.name;
            match topics.last_mut() {
                Some(t) if t.name.0.as_str() == name => t.partitions.push(partition),
                _ => topics.push(
                    DescribeLogDirsTopic::default()
                        .with_name(topic_name(name))
                        .with_partitions(vec![partition]),
                ),
            }
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
