//! DeleteRecords: move partitions' log start offsets forward (`kafka-delete-records`,
//! Admin `deleteRecords`), so consumers can no longer read below them.
//!
//! Each partition's leader proposes the new start through the partition's Raft group, so
//! every replica moves it at the same point of the log; the answer waits for the commit.
//! Kafka streams' repartition topics are purged this way once their records are consumed.

use std::time::Duration;

use futures::future::join_all;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use kafka_protocol::ResponseError;
use strand_protocol::api_versions::ApiRange;
use strand_raft::{Command, ProposeError, Response};

use super::details::millis;
use crate::topics::TopicSettings;
use crate::Broker;

pub const VERSIONS: ApiRange = ApiRange::new(ApiKey::DeleteRecords, 0, 2);

/// The offset that means "the high watermark": delete every record there is.
const HIGH_WATERMARK: i64 = -1;

/// The shortest and longest time a request may wait for its partitions' commits.
const TIMEOUT_RANGE: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(300));

pub async fn handle(broker: &Broker, request: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let timeout = millis(request.timeout_ms).clamp(TIMEOUT_RANGE.0, TIMEOUT_RANGE.1);
    let topics = join_all(request.topics.into_iter().map(|topic| async move {
        let info = broker.topic(topic.name.0.as_str());
        let partitions = join_all(topic.partitions.into_iter().map(|p| {
            let info = info.clone();
            async move {
                let base =
                    DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index);
                let result = match info {
                    Some(info) => delete(broker, &info, p.partition_index, p.offset, timeout).await,
                    None => Err(ResponseError::UnknownTopicOrPartition),
                };
                match result {
                    Ok(low_watermark) => base.with_low_watermark(low_watermark),
                    Err(error) => base.with_low_watermark(-1).with_error_code(error.code()),
                }
            }
        }))
        .await;
        DeleteRecordsTopicResult::default()
            .with_name(topic.name)
            .with_partitions(partitions)
    }))
    .await;
    DeleteRecordsResponse::default().with_topics(topics)
}

/// Moves one partition's log start to `offset` and returns the start after it (its low
/// watermark). An offset below the current start changes nothing, as in Kafka.
async fn delete(
    broker: &Broker,
    topic: &strand_raft::TopicInfo,
    partition: i32,
    offset: i64,
    timeout: Duration,
) -> Result<i64, ResponseError> {
    let replica = broker.serving_replica(topic, partition)?;
    if !TopicSettings::resolve(&topic.configs, &broker.config).delete {
        // A compacted topic keeps each key's last record: Kafka refuses to delete below it.
        return Err(ResponseError::PolicyViolation);
    }
    let high_watermark = replica.status().high_watermark;
    let offset = match offset {
        HIGH_WATERMARK => high_watermark,
        o if (0..=high_watermark).contains(&o) => o,
        _ => return Err(ResponseError::OffsetOutOfRange),
    };
    let proposed = replica.replica.propose(Command::AdvanceLogStart { offset });
    match tokio::time::timeout(timeout, proposed).await {
        Ok(Ok(Response::LogStartAdvanced { log_start_offset })) => Ok(log_start_offset),
        Ok(Ok(other)) => {
            tracing::error!(?other, "unexpected answer to AdvanceLogStart");
            Err(ResponseError::UnknownServerError)
        }
        Ok(Err(ProposeError::NotLeader { .. } | ProposeError::Unavailable(_))) => {
            Err(ResponseError::NotLeaderOrFollower)
        }
        // It may still commit; the retry of a client that sees this is harmless.
        Err(_) => Err(ResponseError::RequestTimedOut),
    }
}
