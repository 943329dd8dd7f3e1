//! ListOffsets: the earliest offset, the latest (high watermark), the offset of the record
//! with the largest timestamp, or the first offset whose timestamp is at or after a given
//! time, each with the leader epoch of that offset.

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ResponseError;
use strand_protocol::api_versions::ApiRange;
use strand_protocol::records::{record_stamps, MAX_INFLATED_BATCH_BYTES};
use strand_raft::PartitionReplica;

use super::details::check_leader_epoch;
use crate::Broker;

/// v7-v9 add the special timestamps -3, -4 and -5 ([`first_version`]); v10 a timeout for
/// reads from tiered storage, which Strand does not have.
pub const VERSIONS: ApiRange = ApiRange::new(ApiKey::ListOffsets, 1, 10);

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

/// The first version that may ask for a special timestamp; Kafka answers UNSUPPORTED_VERSION
/// below it, and for an unknown one.
fn first_version(timestamp: i64) -> Option<i16> {
    match timestamp {
        t if t >= 0 => Some(0),
        LATEST | EARLIEST => Some(0),
        MAX_TIMESTAMP => Some(7),
        EARLIEST_LOCAL => Some(8),
        LATEST_TIERED => Some(9),
        _ => None,
    }
}

pub async fn handle(
    broker: &Broker,
    request: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    // Leader epochs are in the response from v4 on.
    let with_epoch = |epoch: i32| if version >= 4 { epoch } else { -1 };
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let info = broker.topic(topic.name.0.as_str());
            let partitions = topic
                .partitions
                .into_iter()
                .map(|p| {
                    let base = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index);
                    let result = first_version(p.timestamp)
                        .filter(|first| version >= *first)
                        .ok_or(ResponseError::UnsupportedVersion)
                        .and_then(|_| info.as_ref().ok_or(ResponseError::UnknownTopicOrPartition))
                        .and_then(|info| broker.serving_replica(info, p.partition_index))
                        .and_then(|replica| {
                            check_leader_epoch(
                                p.current_leader_epoch,
                                &replica.replica.leadership(),
                            )?;
                            lookup(&replica, p.timestamp)
                        });
                    match result {
                        Ok(found) => base
                            .with_offset(found.offset)
                            .with_timestamp(found.timestamp)
                            .with_leader_epoch(with_epoch(found.leader_epoch)),
                        Err(error) => base
                            .with_error_code(error.code())
                            .with_offset(-1)
                            .with_timestamp(-1)
                            .with_leader_epoch(-1),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

struct Found {
    offset: i64,
    timestamp: i64,
    leader_epoch: i32,
}

fn storage_error(e: impl std::fmt::Display) -> ResponseError {
    tracing::error!(error = %e, "cannot read partition for ListOffsets");
    ResponseError::KafkaStorageError
}

fn lookup(replica: &PartitionReplica, timestamp: i64) -> Result<Found, ResponseError> {
    let status = replica.status();
    let epochs = replica.reader.index().epochs().map_err(storage_error)?;
    // The epoch in which `offset` was written: the last epoch starting at or before it.
    let epoch_of = |offset: i64| -> i32 {
        epochs
            .iter()
            .rev()
            .find(|(_, start)| *start <= offset)
            .map_or(-1, |(e, _)| *e as i32)
    };
    let latest_epoch = epochs.last().map_or(-1, |(e, _)| *e as i32);
    let at = |offset: i64, timestamp: i64, epoch: i32| Found {
        offset,
        timestamp,
        leader_epoch: epoch,
    };
    match timestamp {
        LATEST => Ok(at(status.high_watermark, -1, latest_epoch)),
        // Nothing is tiered: Kafka answers -1 for a topic without remote storage.
        LATEST_TIERED => Ok(at(-1, -1, -1)),
        EARLIEST | EARLIEST_LOCAL => Ok(at(
            status.log_start_offset,
            -1,
            epoch_of(status.log_start_offset),
        )),
        MAX_TIMESTAMP => {
            let meta = replica
                .reader
                .index()
                .meta()
                .map_err(storage_error)?
                .unwrap_or_default();
            // -1 also once retention or DeleteRecords deleted the batch (see
            // PartitionMachine).
            if meta.max_timestamp_batch < 0 {
                return Ok(at(-1, -1, -1));
            }
            let stamps = stamps_of(replica, meta.max_timestamp_batch)?;
            // The first record carrying the batch's (and so the log's) largest timestamp.
            let best = stamps
                .iter()
                .max_by_key(|s| (s.timestamp, std::cmp::Reverse(s.offset)))
                .ok_or(ResponseError::KafkaStorageError)?;
            Ok(at(best.offset, best.timestamp, epoch_of(best.offset)))
        }
        t if t >= 0 => {
            // The index may name the log end, where the next batch will be, once
            // retention deleted every batch.
            let Some(base) = replica
                .reader
                .index()
                .first_batch_at_or_after(t)
                .map_err(storage_error)?
                .filter(|base| *base < status.high_watermark)
            else {
                return Ok(at(-1, -1, -1));
            };
            // The indexed batch holds a record of time t or later, unless that record is
            // below the log start (the batch holds the start): then a later batch does.
            let mut batch = Some(base);
            while let Some(base) = batch {
                let stamps = stamps_of(replica, base)?;
                let found = stamps
                    .iter()
                    .find(|s| s.timestamp >= t && s.offset >= status.log_start_offset);
                if let Some(s) = found {
                    return Ok(at(s.offset, s.timestamp, epoch_of(s.offset)));
                }
                batch = replica
                    .reader
                    .index()
                    .locate_from_base(base + 1, status.high_watermark, 1)
                    .map_err(storage_error)?
                    .first()
                    .map(|(base, _)| *base);
            }
            Ok(at(-1, -1, -1))
        }
        _ => Err(ResponseError::UnsupportedVersion),
    }
}

fn stamps_of(
    replica: &PartitionReplica,
    base_offset: i64,
) -> Result<Vec<strand_protocol::records::RecordStamp>, ResponseError> {
    let batch = replica
        .reader
        .batch_at(base_offset)
        .map_err(storage_error)?
        .ok_or(ResponseError::KafkaStorageError)?;
    record_stamps(&batch, MAX_INFLATED_BATCH_BYTES).map_err(storage_error)
}
