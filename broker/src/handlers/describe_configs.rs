//! DescribeConfigs, for `kafka-configs` and `kafka-topics`. Topic configs are stored in the
//! controller's metadata (`crate::topics` says which are accepted). Broker settings come from
//! the node's flags and config file and are described under Kafka's names.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::ResponseError;
use strand_protocol::api_versions::ApiRange;

use super::details::{check_broker_name, str_bytes, BROKER, TOPIC};
use crate::topics::{cleaner_defaults, consumer_offsets, CONSUMER_OFFSETS};
use crate::Broker;

pub const VERSIONS: ApiRange = ApiRange::new(ApiKey::DescribeConfigs, 1, 4);

/// Kafka's config sources.
const DYNAMIC_TOPIC_CONFIG: i8 = 1;
const STATIC_BROKER_CONFIG: i8 = 4;
const DEFAULT_CONFIG: i8 = 5;

pub fn handle(broker: &Broker, request: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let metadata = broker.node.controller().metadata();
    let include_synonyms = request.include_synonyms;
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let name = resource.resource_name.to_string();
            let entries: Result<Vec<Entry>, (ResponseError, String)> = match resource.resource_type
            {
                TOPIC => match metadata.topics.get(&name) {
                    Some(topic) => Ok(topic_entries(broker, &topic.configs)),
                    None if name == CONSUMER_OFFSETS => {
                        Ok(topic_entries(broker, &consumer_offsets(broker).configs))
                    }
                    None => Err((
                        ResponseError::UnknownTopicOrPartition,
                        format!("topic '{name}' does not exist"),
                    )),
                },
                BROKER => check_broker_name(broker, &name).map(|()| broker_entries(broker)),
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
                            // Each config is its own first synonym, as in Kafka; Strand
                            // names no lower-precedence ones.
                            let synonyms = include_synonyms.then(|| {
                                DescribeConfigsSynonym::default()
                                    .with_name(str_bytes(key.clone()))
                                    .with_value(Some(str_bytes(value.clone())))
                                    .with_source(source)
                            });
                            DescribeConfigsResourceResult::default()
                                .with_name(str_bytes(key))
                                .with_value(Some(str_bytes(value)))
                                .with_config_source(source)
                                .with_read_only(source == STATIC_BROKER_CONFIG)
                                .with_synonyms(synonyms.into_iter().collect())
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
pub(crate) type Entry = (String, String, i8);

/// A topic's stored configs, and the defaults of those the broker enforces (CreateTopics
/// answers with these too).
pub(crate) fn topic_entries(broker: &Broker, stored: &BTreeMap<String, String>) -> Vec<Entry> {
    let defaults = [
        ("cleanup.policy", "delete".to_string()),
        (
            "max.message.bytes",
            broker.config.max_message_bytes.to_string(),
        ),
        ("message.timestamp.type", "CreateTime".to_string()),
        (
            "message.timestamp.before.max.ms",
            broker
                .config
                .log_message_timestamp_before_max_ms
                .to_string(),
        ),
        (
            "message.timestamp.after.max.ms",
            broker.config.log_message_timestamp_after_max_ms.to_string(),
        ),
        ("retention.ms", broker.config.log_retention_ms.to_string()),
        (
            "retention.bytes",
            broker.config.log_retention_bytes.to_string(),
        ),
        (
            "delete.retention.ms",
            cleaner_defaults::DELETE_RETENTION_MS.to_string(),
        ),
        (
            "min.cleanable.dirty.ratio",
            cleaner_defaults::MIN_CLEANABLE_DIRTY_RATIO.to_string(),
        ),
        (
            "min.compaction.lag.ms",
            cleaner_defaults::MIN_COMPACTION_LAG_MS.to_string(),
        ),
        (
            "max.compaction.lag.ms",
            cleaner_defaults::MAX_COMPACTION_LAG_MS.to_string(),
        ),
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
            "queued.max.request.bytes",
            c.queued_max_request_bytes.to_string(),
        ),
        ("max.connections", c.max_connections.to_string()),
        (
            "max.connections.per.ip",
            c.max_connections_per_ip.to_string(),
        ),
        (
            "connections.max.idle.ms",
            c.connections_max_idle.as_millis().to_string(),
        ),
        (
            "log.message.timestamp.before.max.ms",
            c.log_message_timestamp_before_max_ms.to_string(),
        ),
        (
            "log.message.timestamp.after.max.ms",
            c.log_message_timestamp_after_max_ms.to_string(),
        ),
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
        ("group.max.size", c.group_max_size.to_string()),
        ("max.broker.partitions", c.max_broker_partitions.to_string()),
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
