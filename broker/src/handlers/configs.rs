//! DescribeConfigs and IncrementalAlterConfigs, for `kafka-configs` and `kafka-topics`.
//!
//! Topic configs are stored in the controller's metadata: every Kafka topic config is
//! accepted and kept (see `crate::topics`), and changes go through the controller group.
//! Broker settings come from the node's flags and config file: they are described under
//! Kafka's names, and changing them at run time is refused, except that deleting a dynamic
//! broker config succeeds, since none is ever set (Kafka's tools clear throttles that way).

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{
    DescribeConfigsRequest, DescribeConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
};
use kafka_protocol::ResponseError;
use strand_raft::{Command, ControllerCommand, Response, CONTROLLER_GROUP};

use super::details::{error_fields, str_bytes};
use crate::{topics, Broker};

/// Kafka's config resource types.
const TOPIC: i8 = 2;
const BROKER: i8 = 4;
/// Kafka's config sources.
const DYNAMIC_TOPIC_CONFIG: i8 = 1;
const STATIC_BROKER_CONFIG: i8 = 4;
const DEFAULT_CONFIG: i8 = 5;
/// Kafka's incremental operations.
const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

pub fn describe(broker: &Broker, request: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let metadata = broker.node.controller().metadata();
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let name = resource.resource_name.to_string();
            let entries: Result<Vec<Entry>, (ResponseError, String)> = match resource.resource_type
            {
                TOPIC => match metadata.topics.get(&name) {
                    Some(topic) => Ok(topic_entries(broker, &topic.configs)),
                    None => Err((
                        ResponseError::UnknownTopicOrPartition,
                        format!("topic '{name}' does not exist"),
                    )),
                },
                BROKER if name.is_empty() || name == broker.node.id().to_string() => {
                    Ok(broker_entries(broker))
                }
                BROKER => Err((
                    ResponseError::InvalidRequest,
                    format!("ask broker {name} itself for its configs"),
                )),
                other => Err((
                    ResponseError::InvalidRequest,
                    format!("config resource type {other} is not supported"),
                )),
            };
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name);
            match entries {
                Ok(entries) => {
                    let wanted = resource.configuration_keys.as_ref();
                    let configs = entries
                        .into_iter()
                        .filter(|(key, _, _)| {
                            wanted.is_none_or(|keys| keys.iter().any(|k| k.as_str() == key))
                        })
                        .map(|(key, value, source)| {
                            DescribeConfigsResourceResult::default()
                                .with_name(str_bytes(key))
                                .with_value(Some(str_bytes(value)))
                                .with_config_source(source)
                                .with_read_only(source == STATIC_BROKER_CONFIG)
                        })
                        .collect();
                    result.with_configs(configs)
                }
                Err((error, message)) => result
                    .with_error_code(error.code())
                    .with_error_message(Some(str_bytes(message))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// A config's name, value and Kafka config source.
type Entry = (String, String, i8);

/// A topic's stored configs, and the defaults of those the broker enforces.
fn topic_entries(broker: &Broker, stored: &BTreeMap<String, String>) -> Vec<Entry> {
    let defaults = [
        ("cleanup.policy", "delete".to_string()),
        (
            "max.message.bytes",
            broker.config.max_message_bytes.to_string(),
        ),
        ("message.timestamp.type", "CreateTime".to_string()),
    ];
    let mut entries: Vec<Entry> = stored
        .iter()
        .map(|(k, v)| (k.clone(), v.clone(), DYNAMIC_TOPIC_CONFIG))
        .collect();
    for (key, value) in defaults {
        if !stored.contains_key(key) {
            entries.push((key.to_string(), value, DEFAULT_CONFIG));
        }
    }
    entries.sort();
    entries
}

/// This node's settings under Kafka's names.
fn broker_entries(broker: &Broker) -> Vec<Entry> {
    let c = &broker.config;
    [
        ("broker.id", c.node_id.to_string()),
        (
            "advertised.listeners",
            format!("PLAINTEXT://{}:{}", c.advertised_host, c.advertised_port),
        ),
        (
            "auto.create.topics.enable",
            c.auto_create_topics.to_string(),
        ),
        ("num.partitions", c.default_partitions.to_string()),
        (
            "default.replication.factor",
            c.default_replication_factor.to_string(),
        ),
        ("message.max.bytes", c.max_message_bytes.to_string()),
        ("socket.request.max.bytes", c.max_request_bytes.to_string()),
        (
            "group.min.session.timeout.ms",
            c.group_min_session_timeout.as_millis().to_string(),
        ),
        (
            "group.max.session.timeout.ms",
            c.group_max_session_timeout.as_millis().to_string(),
        ),
        (
            "group.initial.rebalance.delay.ms",
            c.group_initial_rebalance_delay.as_millis().to_string(),
        ),
        (
            "offsets.retention.minutes",
            (c.offsets_retention.as_secs() / 60).to_string(),
        ),
        (
            "auto.leader.rebalance.enable",
            c.leader_balance_interval.is_some().to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v, STATIC_BROKER_CONFIG))
    .collect()
}

pub async fn incremental_alter(
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
        Some(c) => Err((
            ResponseError::InvalidConfig,
            format!(
                "broker config '{}' cannot change at run time: set it with strand's flags or \
                 config file and restart the node",
                c.name.as_str()
            ),
        )),
    }
}
