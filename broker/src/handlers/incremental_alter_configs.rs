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
use strand_raft::{Command, ControllerCommand, Response, CONTROLLER_GROUP};

use super::details::{error_fields, BROKER, TOPIC};
use crate::{topics, Broker};

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
            BROKER => alter_broker(&resource),
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

/// Checks a topic's whole new set of configs and, unless `validate_only`, replaces its
/// stored set with them through the controller group.
pub(super) async fn store_topic_configs(
    broker: &Broker,
    name: String,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<(), (ResponseError, String)> {
    for (key, value) in &configs {
        if let Some(problem) = topics::config_problem(key, value) {
            return Err((ResponseError::InvalidConfig, problem));
        }
    }
    if validate_only {
        return Ok(());
    }
    let command = Command::Controller(ControllerCommand::SetTopicConfigs { name, configs });
    match broker.node.propose(CONTROLLER_GROUP, command).await {
        Ok(Response::Done) => Ok(()),
        Ok(other) => Err((
            ResponseError::UnknownTopicOrPartition,
            format!("the topic changed meanwhile: {other:?}"),
        )),
        Err(e) => Err((ResponseError::RequestTimedOut, e.to_string())),
    }
}

/// Broker settings come from flags and the config file; there are no dynamic ones to set,
/// and deleting one that was never set is allowed (as in Kafka).
fn alter_broker(resource: &AlterConfigsResource) -> Result<(), (ResponseError, String)> {
    match resource
        .configs
        .iter()
        .find(|c| c.config_operation != DELETE)
    {
        None => Ok(()),
        Some(c) => Err(static_broker_config(c.name.as_str())),
    }
}

/// The refusal of a change to broker config `name`.
pub(super) fn static_broker_config(name: &str) -> (ResponseError, String) {
    (
        ResponseError::InvalidConfig,
        format!(
            "broker config '{name}' cannot change at run time: set it with strand's flags or \
             config file and restart the node"
        ),
    )
}
