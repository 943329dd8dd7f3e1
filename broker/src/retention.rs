//! Retention: the leader of each partition moves its log start past the records its
//! topic no longer keeps (retention.ms, retention.bytes, or the node's log.retention.*
//! defaults), through the partition's Raft group, so every replica deletes the same
//! records at the same point of its log.
//!
//! Kafka deletes whole segments, oldest first, once the newest record in a segment is
//! past retention.ms, or while the rest of the log still holds retention.bytes. Strand
//! does the same with record batches as the unit: a batch goes once every record in it
//! and before it is older than retention.ms, or while the batches after it hold at least
//! retention.bytes. A record with a timestamp in the future holds back everything after
//! it, as it holds back its segment and the later ones in Kafka; unlike Kafka, it still
//! does after it is deleted, because the time index carries the largest timestamp deleted
//! onto the first batch kept. Only retention by size and DeleteRecords move past it.

use std::sync::Arc;
use std::time::Duration;

use strand_raft::{Command, PartitionReplica};
use strand_storage::StorageError;

use crate::leader_tasks::{self, Decision, LeaderTask};
use crate::topics::TopicSettings;
use crate::Broker;

/// Every `log.retention.check.interval.ms`, for each partition this node leads, proposes
/// the log start its topic's retention asks for.
pub async fn retention_loop(broker: Arc<Broker>) {
    let task = LeaderTask {
        name: "retention",
        interval: broker.config.log_retention_check_interval,
        propose_timeout: Duration::from_secs(10),
        applies: |s| s.delete && (s.retention_ms >= 0 || s.retention_bytes >= 0),
        decide: |partition, settings, now| {
            let point = retention_point(partition, settings, now)?;
            Ok(point.map(|offset| Decision::whole(Command::AdvanceLogStart { offset })))
        },
    };
    leader_tasks::run(broker, task).await
}

/// Where the partition's log should start under `settings` at time `now`, when that is
/// past where it starts.
pub fn retention_point(
    partition: &PartitionReplica,
    settings: &TopicSettings,
    now: i64,
) -> Result<Option<i64>, StorageError> {
    let status = partition.status();
    let index = partition.reader.index();
    let mut start = status.log_start_offset;
    if settings.retention_ms >= 0 {
        let oldest_kept = now.saturating_sub(settings.retention_ms);
        let first_young = index
            .first_batch_at_or_after(oldest_kept)?
            .unwrap_or(status.high_watermark);
        start = start.max(first_young.min(status.high_watermark));
    }
    if let Ok(bytes) = u64::try_from(settings.retention_bytes) {
        if let Some(oldest_needed) = index.oldest_needed_for(status.high_watermark, bytes)? {
            start = start.max(oldest_needed);
        }
    }
    Ok((start > status.log_start_offset).then_some(start))
}
