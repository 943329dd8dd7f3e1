//! IncrementalAlterConfigs, for `kafka-configs --alter`. Topic config changes go through the
//! controller group. Changing broker settings at run time is refused, except that deleting a
//! dynamic broker config succeeds, since none is ever set (Kafka's tools clear throttles that
//! way).

use std::collections::BTreeMap;

use kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use kafka_protocol::ResponseError;
use strand_protocol::api_versions::ApiRange;

use super::details::{
    check_broker_name, error_fields, static_broker_config, store_topic_configs, BROKER, TOPIC,
};
use crate::Broker;

pub const VERSIONS: ApiRange = ApiRange::new(ApiKey::IncrementalAlterConfigs, 0, 1);

/// Kafka's incremental operations.
const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

pub async fn handle(
    broker: &Broker,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::new();
    for resource in request.resources {
        let result = match resource.resource_type {
            TOPIC => alter_topic(broker, &resource, request.validate_only).await,
            BROKER => alter_broker(broker, &resource),
            other => Err((
                ResponseError::InvalidRequest,
                format!("config resource type {other} is not supported"),
            )),
        };
        let (code, message) = error_fields(result);
        responses.push(
            AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(message)
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name),
        );
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

async fn alter_topic(
    broker: &Broker,
    resource: &AlterConfigsResource,
    validate_only: bool,
) -> Result<(), (ResponseError, String)> {
    let name = resource.resource_name.to_string();
    let Some(topic) = broker.topic(&name) else {
        return Err((
            ResponseError::UnknownTopicOrPartition,
            format!("topic '{name}' does not exist"),
        ));
    };
    let mut configs = topic.configs.clone();
    for change in &resource.configs {
        let key = change.name.to_string();
        let value = change.value.as_ref().map(|v| v.to_string());
        let list = |configs: &BTreeMap<String, String>| -> Vec<String> {
            configs
                .get(&key)
                .map(|v| {
                    v.split(',')
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default()
        };
        let invalid = |why: String| (ResponseError::InvalidConfig, why);
        match (change.config_operation, value) {
            (SET, Some(value)) => {
                configs.insert(key, value);
            }
            (DELETE, _) => {
                configs.remove(&key);
            }
            (APPEND, Some(value)) => {
                let mut items = list(&configs);
                items.extend(
                    value
                        .split(',')
                        .map(String::from)
                        .filter(|v| !items.contains(v))
                        .collect::<Vec<_>>(),
                );
                configs.insert(key, items.join(","));
            }
            (SUBTRACT, Some(value)) => {
                let gone: Vec<&str> = value.split(',').collect();
                let items: Vec<String> = list(&configs)
                    .into_iter()
                    .filter(|v| !gone.contains(&v.as_str()))
                    .collect();
                configs.insert(key, items.join(","));
            }
            (op, _) => return Err(invalid(format!("operation {op} on '{key}' needs a value"))),
        }
    }
    store_topic_configs(broker, name, configs, validate_only).await
}

/// Broker settings come from flags and the config file; there are no dynamic ones to set,
/// and deleting one that was never set is allowed (as in Kafka).
fn alter_broker(
    broker: &Broker,
    resource: &AlterConfigsResource,
) -> Result<(), (ResponseError, String)> {
    check_broker_name(broker, resource.resource_name.as_str())?;
    match resource
        .configs
        .iter()
        .find(|c| c.config_operation != DELETE)
    {
        None => Ok(()),
        Some(c) => Err(static_broker_config(c.name.as_str())),
    }
}
