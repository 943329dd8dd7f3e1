//! AlterConfigs, the legacy form of IncrementalAlterConfigs that librdkafka's
//! `AlterConfigs` and older tools still send: it replaces a resource's whole set of
//! dynamic configs, so a config the request does not name goes back to its default.

use std::collections::BTreeMap;

use kafka_protocol::messages::alter_configs_request::AlterConfigsResource;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use kafka_protocol::ResponseError;
use strand_protocol::api_versions::ApiRange;

use super::details::{
    check_broker_name, error_fields, static_broker_config, store_topic_configs, BROKER, TOPIC,
};
use crate::Broker;

/// v1 changes only throttling, v2 only the encoding (flexible).
pub const VERSIONS: ApiRange = ApiRange::new(ApiKey::AlterConfigs, 0, 2);

pub async fn handle(broker: &Broker, request: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut responses = Vec::new();
    for resource in request.resources {
        let result = match requested(&resource) {
            Err(e) => Err(e),
            Ok(configs) => match resource.resource_type {
                TOPIC => alter_topic(broker, &resource, configs, request.validate_only).await,
                BROKER => alter_broker(broker, &resource, &configs),
                other => Err((
                    ResponseError::InvalidRequest,
                    format!("unknown resource type {other}"),
                )),
            },
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
    AlterConfigsResponse::default().with_responses(responses)
}

/// The resource's new configs; as in Kafka, a null value or a name given twice is an
/// invalid request.
fn requested(
    resource: &AlterConfigsResource,
) -> Result<BTreeMap<String, String>, (ResponseError, String)> {
    let mut configs = BTreeMap::new();
    for config in &resource.configs {
        let name = config.name.to_string();
        let Some(value) = &config.value else {
            return Err((
                ResponseError::InvalidRequest,
                format!("config '{name}' has a null value: omit it to reset it"),
            ));
        };
        if configs.insert(name.clone(), value.to_string()).is_some() {
            return Err((
                ResponseError::InvalidRequest,
                format!("config '{name}' is named twice"),
            ));
        }
    }
    Ok(configs)
}

async fn alter_topic(
    broker: &Broker,
    resource: &AlterConfigsResource,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<(), (ResponseError, String)> {
    let name = resource.resource_name.to_string();
    if broker.topic(&name).is_none() {
        return Err((
            ResponseError::UnknownTopicOrPartition,
            format!("topic '{name}' does not exist"),
        ));
    }
    store_topic_configs(broker, name, configs, validate_only).await
}

/// Broker settings are static: only the empty set, which is what this node has, is
/// accepted.
fn alter_broker(
    broker: &Broker,
    resource: &AlterConfigsResource,
    configs: &BTreeMap<String, String>,
) -> Result<(), (ResponseError, String)> {
    check_broker_name(broker, resource.resource_name.as_str())?;
    match configs.keys().next() {
        None => Ok(()),
        Some(key) => Err(static_broker_config(key)),
    }
}
