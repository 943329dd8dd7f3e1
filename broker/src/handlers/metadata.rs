//! Metadata: brokers, the controller, and for each topic its partitions with leader,
//! leader epoch (the Raft term), replicas and in-sync replicas. Asking for a topic that
//! does not exist creates it when auto-creation is on and the client allows it. Kafka's
//! internal `__consumer_offsets` is listed too ([`consumer_offsets`]).

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::{MetadataRequest, MetadataResponse};
use kafka_protocol::ResponseError;
use strand_protocol::api_versions::ApiRange;
use strand_raft::TopicInfo;
use uuid::Uuid;

use super::details::{broker_id, leader_and_isr, str_bytes, topic_name};
use crate::cluster::{self, TopicError};
use crate::topics::{consumer_offsets, CONSUMER_OFFSETS};
use crate::Broker;

/// v13 adds a top-level error code, which Kafka's broker never sets either (KIP-1102 is for
/// clients).
pub const VERSIONS: ApiRange = ApiRange::new(ApiKey::Metadata, 0, 13);

pub async fn handle(broker: &Broker, request: MetadataRequest, version: i16) -> MetadataResponse {
    // v0 asks for all topics with an empty list; later versions with a null one. v1-v3
    // create topics implicitly, v4+ say whether they may.
    let allow_create = version < 4 || request.allow_auto_topic_creation;
    let requested: Option<Vec<_>> = match request.topics {
        None => None,
        Some(t) if t.is_empty() && version == 0 => None,
        Some(t) => Some(t),
    };

    // Unless a topic of that name was created before the name was reserved.
    let internal = (!broker
        .node
        .controller()
        .metadata()
        .topics
        .contains_key(CONSUMER_OFFSETS))
    .then(|| consumer_offsets(broker));
    let mut topics = Vec::new();
    match requested {
        None => {
            for topic in broker.node.controller().metadata().topics.values() {
                topics.push(describe(broker, topic));
            }
            topics.extend(internal.iter().map(|t| describe(broker, t)));
        }
        Some(requested) => {
            for wanted in requested {
                let by_id = wanted.name.is_none() && !wanted.topic_id.is_nil();
                let name = wanted.name.as_ref().map(|n| n.0.as_str());
                let is_internal = |t: &&TopicInfo| {
                    name == Some(t.name.as_str()) || (by_id && wanted.topic_id.as_bytes() == &t.id)
                };
                if let Some(t) = internal.as_ref().filter(is_internal) {
                    topics.push(describe(broker, t));
                    continue;
                }
                let found = if by_id {
                    broker
                        .topic_by_id(wanted.topic_id)
                        .ok_or(ResponseError::UnknownTopicId)
                } else {
                    cluster::get_or_auto_create(broker, name.unwrap_or(""), allow_create)
                        .await
                        .map_err(|e| match e {
                            TopicError::InvalidName(_) => ResponseError::InvalidTopicException,
                            TopicError::Unknown(_) => ResponseError::UnknownTopicOrPartition,
                            TopicError::PolicyViolation(_) => ResponseError::PolicyViolation,
                            _ => ResponseError::LeaderNotAvailable,
                        })
                };
                topics.push(match found {
                    Ok(topic) => describe(broker, &topic),
                    Err(error) => MetadataResponseTopic::default()
                        .with_error_code(error.code())
                        .with_name(wanted.name)
                        .with_topic_id(wanted.topic_id),
                });
            }
        }
    }

    let metadata = broker.node.controller().metadata();
    let brokers = metadata
        .brokers
        .values()
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(broker_id(b.id))
                .with_host(str_bytes(b.host.clone()))
                .with_port(b.port as i32)
                .with_rack(b.rack.clone().map(str_bytes))
        })
        .collect();
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(str_bytes(broker.config.cluster_id.clone())))
        .with_controller_id(broker.controller_id())
        .with_topics(topics)
}

fn describe(broker: &Broker, topic: &TopicInfo) -> MetadataResponseTopic {
    let partitions = topic
        .partitions
        .iter()
        .enumerate()
        .map(|(index, info)| {
            let replicas: Vec<_> = info.replicas.iter().map(|r| broker_id(*r)).collect();
            let base = MetadataResponsePartition::default()
                .with_partition_index(index as i32)
                .with_replica_nodes(replicas);
            let led = leader_and_isr(broker, info);
            base.with_error_code(led.error_code)
                .with_leader_id(led.leader)
                .with_leader_epoch(led.epoch)
                .with_isr_nodes(led.in_sync)
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(&topic.name)))
        .with_topic_id(Uuid::from_bytes(topic.id))
        .with_is_internal(topic.name == CONSUMER_OFFSETS)
        .with_partitions(partitions)
}
