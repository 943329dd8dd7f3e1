//! DeleteTopics: remove topics through the controller group. Their partition replicas and
//! data are removed from every node as the metadata change reaches it.

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::ResponseError;
use strand_protocol::api_versions::ApiRange;
use uuid::Uuid;

use super::details::{str_bytes, topic_name};
use crate::cluster;
use crate::Broker;

pub const VERSIONS: ApiRange = ApiRange::new(ApiKey::DeleteTopics, 1, 6);

pub async fn handle(
    broker: &Broker,
    request: DeleteTopicsRequest,
    _version: i16,
) -> DeleteTopicsResponse {
    // v0-v5 name topics in `topic_names`; v6 in `topics`, by name or by id.
    let mut wanted: Vec<(Option<TopicName>, Uuid)> = request
        .topic_names
        .into_iter()
        .map(|n| (Some(n), Uuid::nil()))
        .collect();
    wanted.extend(request.topics.into_iter().map(|t| (t.name, t.topic_id)));

    let mut responses = Vec::with_capacity(wanted.len());
    for (name, id) in wanted {
        let resolved = match &name {
            Some(n) => broker.topic(n.0.as_str()),
            None => broker.topic_by_id(id),
        };
        let result = DeletableTopicResult::default()
            .with_name(name.clone())
            .with_topic_id(id);
        let Some(topic) = resolved else {
            let error = if name.is_some() {
                ResponseError::UnknownTopicOrPartition
            } else {
                ResponseError::UnknownTopicId
            };
            responses.push(result.with_error_code(error.code()));
            continue;
        };
        let result = result
            .with_name(Some(topic_name(&topic.name)))
            .with_topic_id(Uuid::from_bytes(topic.id));
        responses.push(match cluster::delete_topic(broker, &topic.name).await {
            Ok(()) => result,
            Err(e) => result
                .with_error_code(e.error_code())
                .with_error_message(Some(str_bytes(e.to_string()))),
        });
    }
    DeleteTopicsResponse::default().with_responses(responses)
}
