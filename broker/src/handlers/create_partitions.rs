//! CreatePartitions: add partitions to existing topics (`kafka-topics --alter
//! --partitions`, Admin `createPartitions`), through the controller group.
//!
//! As in Kafka, records already written stay where they are, so a key may now hash to a
//! different partition than its earlier records.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use kafka_protocol::messages::create_partitions_request::CreatePartitionsAssignment;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::ResponseError;
use strand_protocol::api_versions::ApiRange;
use strand_raft::NodeId;

use super::details::str_bytes;
use crate::cluster::{self, TopicError};
use crate::Broker;

pub const VERSIONS: ApiRange = ApiRange::new(ApiKey::CreatePartitions, 0, 3);

pub async fn handle(broker: &Broker, request: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let wait = Duration::from_millis(request.timeout_ms.clamp(0, 300_000) as u64);
    // As Kafka: a topic named twice is left alone and answered once, with INVALID_REQUEST.
    let mut named = HashMap::new();
    for topic in &request.topics {
        *named.entry(topic.name.clone()).or_insert(0) += 1;
    }
    let mut results = Vec::with_capacity(named.len());
    let mut answered_twice_named = HashSet::new();
    for topic in request.topics {
        let result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
        if named[&topic.name] > 1 {
            if answered_twice_named.insert(topic.name.clone()) {
                results.push(
                    result
                        .with_error_code(ResponseError::InvalidRequest.code())
                        .with_error_message(Some(str_bytes("duplicate topic in the request"))),
                );
            }
            continue;
        }
        let added = match assignments(topic.assignments) {
            Ok(assignments) => {
                cluster::add_partitions(
                    broker,
                    topic.name.0.as_str(),
                    topic.count,
                    assignments,
                    request.validate_only,
                    wait,
                )
                .await
            }
            Err(e) => Err(e),
        };
        results.push(match added {
            Ok(()) => result,
            Err(e) => result
                .with_error_code(e.error_code())
                .with_error_message(Some(str_bytes(e.to_string()))),
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}

/// The client's replicas for each new partition, if it chose them.
fn assignments(
    assignments: Option<Vec<CreatePartitionsAssignment>>,
) -> Result<Option<Vec<Vec<NodeId>>>, TopicError> {
    let Some(assignments) = assignments else {
        return Ok(None);
    };
    let replicas = |a: &CreatePartitionsAssignment| {
        a.broker_ids
            .iter()
            .map(|b| {
                NodeId::try_from(b.0).map_err(|_| {
                    TopicError::InvalidAssignment(format!("{} is not a broker id", b.0))
                })
            })
            .collect::<Result<Vec<NodeId>, TopicError>>()
    };
    assignments
        .iter()
        .map(replicas)
        .collect::<Result<_, _>>()
        .map(Some)
}
