//! The log cleaner: for each partition of a compacted topic (cleanup.policy=compact or
//! compact,delete) this node leads, decide when a cleaning pass is due and propose it
//! through the partition's Raft group, where every replica runs the same pass (see
//! strand_raft's `kafka::compaction`).
//!
//! As Kafka's, a pass is due once the dirty part of the log (written since the last pass)
//! is at least min.cleanable.dirty.ratio of the whole, or once its oldest record is older
//! than max.compaction.lag.ms; records younger than min.compaction.lag.ms are never
//! cleaned. Kafka also never cleans its active segment; Strand has none, so every
//! committed batch is cleanable once old enough. A pass is also due once a tombstone the
//! last one kept is past its delete horizon, so that it goes although nothing new was
//! written. A pass takes at most [`MAX_DIRTY_BYTES_PER_PASS`] of dirty batches, as Kafka's
//! is bounded by its offset map.

use std::sync::Arc;
use std::time::Duration;

use strand_protocol::batch::BatchHeader;
use strand_raft::{Command, PartitionReplica};
use strand_storage::StorageError;

use crate::leader_tasks::{self, Decision, LeaderTask};
use crate::topics::TopicSettings;
use crate::Broker;

/// The most dirty bytes one pass takes: every replica holds a pass's output in memory
/// and writes it at once. A partition with more is cleaned by several passes in a row.
pub const MAX_DIRTY_BYTES_PER_PASS: u64 = 128 << 20;

/// Every `log.cleaner.backoff.ms`, proposes a cleaning pass for each partition this node
/// leads that needs one.
pub async fn cleaner_loop(broker: Arc<Broker>) {
    let task = LeaderTask {
        name: "log cleaner",
        interval: broker.config.log_cleaner_backoff,
        propose_timeout: Duration::from_secs(30),
        applies: |s| s.compact,
        decide: |partition, settings, now| {
            let point = cleaning_point(partition, settings, now)?;
            Ok(point.map(|CleaningPoint { upto, capped }| Decision {
                command: Command::Compact {
                    upto,
                    now,
                    delete_retention_ms: settings.delete_retention_ms,
                },
                partial: capped,
            }))
        },
    };
    leader_tasks::run(broker, task).await
}

/// Where a due cleaning pass ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleaningPoint {
    /// A batch boundary.
    pub upto: i64,
    /// Whether [`MAX_DIRTY_BYTES_PER_PASS`] ended it before all that is cleanable.
    pub capped: bool,
}

/// Where a cleaning pass of the partition should end, when one is due under `settings` at
/// time `now`.
pub fn cleaning_point(
    partition: &PartitionReplica,
    settings: &TopicSettings,
    now: i64,
) -> Result<Option<CleaningPoint>, StorageError> {
    let status = partition.status();
    let index = partition.reader.index();
    let mut upto = status.high_watermark;
    if settings.min_compaction_lag_ms > 0 {
        // The time index gives the first batch whose records may reach that age: all
        // before it are older.
        if let Some(young) = index.first_batch_at_or_after(now - settings.min_compaction_lag_ms)? {
            upto = upto.min(young);
        }
    }
    let (clean, dirty, first_dirty) = index.cleaning_state(upto)?;
    // A tombstone past its delete horizon goes with the next pass, due or not.
    let tombstones_due = index.tombstone_expiry()?.is_some_and(|at| at <= now);
    let Some(first_dirty) = first_dirty else {
        return Ok(tombstones_due.then_some(CleaningPoint {
            upto,
            capped: false,
        }));
    };
    let ratio = dirty as f64 / (clean + dirty).max(1) as f64;
    let overdue = || -> Result<bool, StorageError> {
        Ok(settings.max_compaction_lag_ms < i64::MAX
            && partition
                .reader
                .batch_at(first_dirty)?
                .and_then(|b| BatchHeader::parse(&b).ok())
                .is_some_and(|h| {
                    h.max_timestamp <= now.saturating_sub(settings.max_compaction_lag_ms)
                }))
    };
    if ratio < settings.min_cleanable_dirty_ratio && !tombstones_due && !overdue()? {
        return Ok(None);
    }
    let cap = index.dirty_bytes_end(first_dirty, upto, MAX_DIRTY_BYTES_PER_PASS)?;
    Ok(Some(CleaningPoint {
        upto: cap.unwrap_or(upto),
        capped: cap.is_some(),
    }))
}
