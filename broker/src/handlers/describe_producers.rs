//! DescribeProducers: the idempotent producers a partition knows, for operators.

use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};
use kafka_protocol::ResponseError;
use strand_protocol::api_versions::ApiRange;

use crate::Broker;

pub const VERSIONS: ApiRange = ApiRange::new(ApiKey::DescribeProducers, 0, 0);

pub async fn handle(
    broker: &Broker,
    request: DescribeProducersRequest,
    _version: i16,
) -> DescribeProducersResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let info = broker.topic(topic.name.0.as_str());
            let partitions = topic
                .partition_indexes
                .into_iter()
                .map(|index| {
                    let base = PartitionResponse::default().with_partition_index(index);
                    let producers = info
                        .as_ref()
                        .ok_or(ResponseError::UnknownTopicOrPartition)
                        .and_then(|info| broker.serving_replica(info, index))
                        .and_then(|replica| {
                            replica.reader.producers().map_err(|e| {
                                tracing::error!(error = %e, "cannot read producer state");
                                ResponseError::KafkaStorageError
                            })
                        });
                    match producers {
                        Ok(producers) => base.with_active_producers(
                            producers
                                .into_iter()
                                .map(|(id, p)| {
                                    ProducerState::default()
                                        .with_producer_id(ProducerId(id))
                                        .with_producer_epoch(p.epoch as i32)
                                        .with_last_sequence(p.last_seq().unwrap_or(-1))
                                        .with_last_timestamp(p.last_timestamp)
                                        .with_coordinator_epoch(-1)
                                        .with_current_txn_start_offset(-1)
                                })
                                .collect(),
                        ),
                        Err(error) => base.with_error_code(error.code()),
                    }
                })
                .collect();
            TopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}
