//! CreateTopics: validate, place replicas, and create each topic through the controller
//! group; answers once the new partitions have leaders (or the request's timeout passes).

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use strand_protocol::api_versions::ApiRange;
use uuid::Uuid;

use super::describe_configs;
use super::details::str_bytes;
use crate::cluster::{self, TopicError, TopicSpec};
use crate::Broker;

pub const VERSIONS: ApiRange = ApiRange::new(ApiKey::CreateTopics, 2, 7);

pub async fn handle(
    broker: &Broker,
    request: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let wait = Duration::from_millis(request.timeout_ms.clamp(0, 300_000) as u64);
    let mut results = Vec::with_capacity(request.topics.len());
    let mut seen = std::collections::HashSet::new();
    for topic in request.topics {
        let name = topic.name.0.as_str().to_string();
        let result = CreatableTopicResult::default().with_name(topic.name.clone());
        if !seen.insert(name.clone()) {
            results.push(
                result
                    .with_error_code(kafka_protocol::ResponseError::InvalidRequest.code())
                    .with_error_message(Some(str_bytes("topic appears twice in the request"))),
            );
            continue;
        }
        let mut configs = BTreeMap::new();
        for c in &topic.configs {
            if let Some(value) = &c.value {
                configs.insert(c.name.as_str().to_string(), value.as_str().to_string());
            }
        }
        let assignments = (!topic.assignments.is_empty()).then(|| {
            let mut by_index: Vec<_> = topic.assignments.iter().collect();
            by_index.sort_by_key(|a| a.partition_index);
            by_index
                .iter()
                .map(|a| a.broker_ids.iter().map(|b| b.0.max(0) as u64).collect())
                .collect()
        });
        let spec = TopicSpec {
            name,
            partitions: topic.num_partitions,
            replication_factor: topic.replication_factor,
            assignments,
            configs,
        };
        results.push(
            match cluster::create_topic(broker, spec, request.validate_only, wait).await {
                Ok(created) => {
                    let mut r = result
                        .with_topic_id(Uuid::from_bytes(created.id))
                        .with_num_partitions(created.partitions.len() as i32)
                        .with_replication_factor(
                            created
                                .partitions
                                .first()
                                .map_or(0, |p| p.replicas.len() as i16),
                        );
                    if version >= 5 {
                        // Clients read each config's source (Kafka Streams fails on one
                        // it does not know), so they are answered as DescribeConfigs does.
                        let entries = describe_configs::topic_entries(broker, &created.configs);
                        r = r.with_configs(Some(
                            entries
                                .into_iter()
                                .map(|(name, value, source)| {
                                    CreatableTopicConfigs::default()
                                        .with_name(str_bytes(name))
                                        .with_value(Some(str_bytes(value)))
                                        .with_config_source(source)
                                })
                                .collect(),
                        ));
                    }
                    r
                }
                Err(e) => failed(result, &e),
            },
        );
    }
    CreateTopicsResponse::default().with_topics(results)
}

fn failed(result: CreatableTopicResult, e: &TopicError) -> CreatableTopicResult {
    result
        .with_error_code(e.error_code())
        .with_error_message(Some(str_bytes(e.to_string())))
        .with_num_partitions(-1)
        .with_replication_factor(-1)
}
