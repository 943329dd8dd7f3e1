//! ListPartitionReassignments: the partition moves recorded and not yet finished.

use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::{
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
};
use strand_protocol::api_versions::ApiRange;
use strand_raft::NodeId;

use super::details::{broker_id, topic_name};
use crate::Broker;

pub const VERSIONS: ApiRange = ApiRange::new(ApiKey::ListPartitionReassignments, 0, 0);

pub fn handle(
    broker: &Broker,
    request: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    let metadata = broker.node.controller().metadata();
    let wanted = |topic: &str, index: i32| match &request.topics {
        None => true,
        Some(topics) => topics
            .iter()
            .any(|t| t.name.0.as_str() == topic && t.partition_indexes.contains(&index)),
    };
    let mut topics = Vec::new();
    for topic in metadata.topics.values() {
        let mut partitions = Vec::new();
        for (i, p) in topic.partitions.iter().enumerate() {
            let Some(target) = metadata.reassignments.get(&p.group) else {
                continue;
            };
            if !wanted(&topic.name, i as i32) {
                continue;
            }
            let ids = |nodes: Vec<NodeId>| nodes.into_iter().map(broker_id).collect();
            let adding = target.iter().filter(|r| !p.replicas.contains(r)).copied();
            let removing = p.replicas.iter().filter(|r| !target.contains(r)).copied();
            partitions.push(
                OngoingPartitionReassignment::default()
                    .with_partition_index(i as i32)
                    .with_replicas(ids(metadata.replica_nodes(p)))
                    .with_adding_replicas(ids(adding.collect()))
                    .with_removing_replicas(ids(removing.collect())),
            );
        }
        if !partitions.is_empty() {
            topics.push(
                OngoingTopicReassignment::default()
                    .with_name(topic_name(&topic.name))
                    .with_partitions(partitions),
            );
        }
    }
    ListPartitionReassignmentsResponse::default().with_topics(topics)
}
