//! AlterPartitionReassignments: moving partitions between nodes, as
//! `kafka-reassign-partitions` drives it. The move is recorded through the controller group
//! and carried out by each partition's leader (`raft/src/membership.rs`).

use std::collections::BTreeSet;

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse,
};
use kafka_protocol::ResponseError;
use strand_protocol::api_versions::ApiRange;
use strand_raft::{
    ClusterMetadata, Command, ControllerCommand, NodeId, PartitionInfo, Rejection, Response,
    CONTROLLER_GROUP,
};

use super::details::error_fields;
use crate::Broker;

pub const VERSIONS: ApiRange = ApiRange::new(ApiKey::AlterPartitionReassignments, 0, 1);

pub async fn handle(
    broker: &Broker,
    request: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let mut responses = Vec::new();
    for topic in request.topics {
        let mut partitions = Vec::new();
        for p in topic.partitions {
            let replicas = p
                .replicas
                .map(|r| r.iter().map(|b| b.0 as i64).collect::<Vec<_>>());
            let result = reassign(
                broker,
                topic.name.0.as_str(),
                p.partition_index,
                replicas,
                request.allow_replication_factor_change,
            )
            .await;
            let (code, message) = error_fields(result);
            partitions.push(
                ReassignablePartitionResponse::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(code)
                    .with_error_message(message),
            );
        }
        responses.push(
            ReassignableTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(request.allow_replication_factor_change)
        .with_responses(responses)
}

/// Checks and records one partition's move (`None` cancels one in progress).
async fn reassign(
    broker: &Broker,
    topic: &str,
    index: i32,
    replicas: Option<Vec<i64>>,
    allow_rf_change: bool,
) -> Result<(), (ResponseError, String)> {
    let metadata = broker.node.controller().metadata();
    let partition = metadata
        .topics
        .get(topic)
        .and_then(|t| {
            usize::try_from(index)
                .ok()
                .and_then(|i| t.partitions.get(i))
        })
        .ok_or_else(|| {
            (
                ResponseError::UnknownTopicOrPartition,
                format!("{topic}-{index} does not exist"),
            )
        })?;
    let replicas = match replicas {
        None => None,
        Some(ids) => Some(check_replicas(&metadata, partition, &ids, allow_rf_change)?),
    };
    let command = Command::Controller(ControllerCommand::Reassign {
        group: partition.group,
        replicas,
    });
    match broker.node.propose(CONTROLLER_GROUP, command).await {
        Ok(Response::Done) => Ok(()),
        Ok(Response::Rejected(Rejection::NoReassignment(_))) => Err((
            ResponseError::NoReassignmentInProgress,
            format!("{topic}-{index} is not being reassigned"),
        )),
        Ok(Response::Rejected(Rejection::UnknownBroker(id))) => Err((
            ResponseError::InvalidReplicaAssignment,
            format!("broker {id} is not in the cluster"),
        )),
        Ok(other) => Err((
            ResponseError::UnknownServerError,
            format!("unexpected result {other:?}"),
        )),
        Err(e) => Err((ResponseError::RequestTimedOut, e.to_string())),
    }
}

fn check_replicas(
    metadata: &ClusterMetadata,
    partition: &PartitionInfo,
    ids: &[i64],
    allow_rf_change: bool,
) -> Result<Vec<NodeId>, (ResponseError, String)> {
    let invalid = |message: String| (ResponseError::InvalidReplicaAssignment, message);
    if ids.is_empty() {
        return Err(invalid("a partition needs at least one replica".into()));
    }
    let mut replicas = Vec::with_capacity(ids.len());
    for &id in ids {
        let id = NodeId::try_from(id).map_err(|_| invalid(format!("{id} is not a broker id")))?;
        if !metadata.brokers.contains_key(&id) {
            return Err(invalid(format!("broker {id} is not in the cluster")));
        }
        replicas.push(id);
    }
    if replicas.iter().collect::<BTreeSet<_>>().len() != replicas.len() {
        return Err(invalid("a broker is listed twice".into()));
    }
    if !allow_rf_change && replicas.len() != partition.replicas.len() {
        return Err((
            ResponseError::InvalidReplicationFactor,
            format!(
                "the partition has {} replicas, not {}",
                partition.replicas.len(),
                replicas.len()
            ),
        ));
    }
    Ok(replicas)
}
