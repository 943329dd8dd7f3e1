//! CreatePartitions: add partitions to existing topics (`kafka-topics --alter
//! --partitions`, Admin `createPartitions`), through the controller group.
//!
//! As in Kafka, records already written stay where they are, so a key may now hash to a
//! different partition than its earlier records.

use std::collections::HashSet;
use std::time::Duration;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::ResponseError;
use strand_protocol::api_versions::ApiRange;

use super::details::str_bytes;
use crate::cluster;
use crate::Broker;

pub const VERSIONS: ApiRange = ApiRange::new(ApiKey::CreatePartitions, 0, 3);

pub async fn handle(broker: &Broker, request: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let wait = Duration::from_millis(request.timeout_ms.clamp(0, 300_000) as u64);
    let mut seen = HashSet::new();
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.as_str().to_string();
        let result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
        if !seen.insert(name.clone()) {
            results.push(
                result
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(str_bytes("topic appears twice in the request"))),
            );
            continue;
        }
        let assignments = topic.assignments.map(|assignments| {
            assignments
                .iter()
                .map(|a| a.broker_ids.iter().map(|b| b.0.max(0) as u64).collect())
                .collect()
        });
        let added = cluster::add_partitions(
            broker,
            &name,
            topic.count,
            assignments,
            request.validate_only,
            wait,
        )
        .await;
        results.push(match added {
            Ok(()) => result,
            Err(e) => result
                .with_error_code(e.error_code())
                .with_error_message(Some(str_bytes(e.to_string()))),
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}
