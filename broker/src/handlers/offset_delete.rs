//! OffsetDelete: removes a group's committed offsets for partitions its members do not
//! subscribe to, replicated through the controller group.

use std::collections::HashSet;

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};
use kafka_protocol::ResponseError;
use strand_protocol::api_versions::ApiRange;
use strand_raft::ControllerCommand;

use super::details::topic_name;
use crate::groups;
use crate::Broker;

pub const VERSIONS: ApiRange = ApiRange::new(ApiKey::OffsetDelete, 0, 0);

pub async fn handle(broker: &Broker, request: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let checked = match broker.groups.lock(broker) {
        Err(code) => Err(code),
        Ok(mut groups) => {
            let known = broker
                .node
                .controller()
                .offsets()
                .contains_key(request.group_id.as_str());
            match groups.existing(&request.group_id) {
                // Partitions of topics the live members consume cannot lose their offsets.
                Some(group) => Ok(subscribed_topics(group)),
                None if known => Ok(HashSet::new()),
                None => Err(ResponseError::GroupIdNotFound.code()),
            }
        }
    };
    let subscribed = match checked {
        Ok(subscribed) => subscribed,
        Err(code) => return OffsetDeleteResponse::default().with_error_code(code),
    };
    let mut doomed = Vec::new();
    let topics: Vec<(String, Vec<(i32, i16)>)> = request
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let error = if subscribed.contains(t.name.as_str()) {
                        ResponseError::GroupSubscribedToTopic.code()
                    } else {
                        doomed.push((t.name.to_string(), p.partition_index));
                        0
                    };
                    (p.partition_index, error)
                })
                .collect();
            (t.name.to_string(), partitions)
        })
        .collect();
    let mut top_error = 0;
    if !doomed.is_empty() {
        let command = ControllerCommand::DeleteOffsets {
            group: request.group_id.to_string(),
            partitions: Some(doomed),
        };
        if let Err(code) = groups::propose_offsets(broker, command).await {
            top_error = code;
        }
    }
    OffsetDeleteResponse::default()
        .with_error_code(top_error)
        .with_topics(
            topics
                .into_iter()
                .map(|(name, partitions)| {
                    OffsetDeleteResponseTopic::default()
                        .with_name(topic_name(&name))
                        .with_partitions(
                            partitions
                                .into_iter()
                                .map(|(index, error)| {
                                    OffsetDeleteResponsePartition::default()
                                        .with_partition_index(index)
                                        .with_error_code(error)
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
}

/// Topics the members of a consumer group subscribe to, from their join metadata.
fn subscribed_topics(group: &groups::Group) -> HashSet<String> {
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::Decodable;
    if group.protocol_type() != Some("consumer") {
        return HashSet::new();
    }
    group
        .members()
        .into_iter()
        .filter_map(|m| {
            let mut buf = m.metadata.clone();
            if buf.len() < 2 {
                return None;
            }
            let version = i16::from_be_bytes([buf[0], buf[1]]);
            bytes::Buf::advance(&mut buf, 2);
            ConsumerProtocolSubscription::decode(&mut buf, version).ok()
        })
        .flat_map(|s| s.topics.into_iter().map(|t| t.to_string()))
        .collect()
}
