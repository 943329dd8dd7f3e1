//! Deliberately unsafe behaviours, for the Jepsen self-check alone: each breaks one
//! guarantee, and `make jepsen-selfcheck` passes only if the harness reports every one.
//! They are compiled only with the `unsafe-modes` cargo feature; in a normal build the
//! `--unsafe-mode` flag does not exist and every test below is constant false.

use strand_raft::{PartitionReplica, StoredBatch};
use strand_storage::StorageError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum UnsafeMode {
    /// Every guarantee holds.
    #[default]
    Off,
    /// Produce answers as soon as the leader has the batch, before a majority does.
    AckBeforeCommit,
    /// Fetch also serves batches the leader has appended but not committed.
    ReadUncommitted,
    /// The WAL is never fsynced: a write is acknowledged once a majority has it in the
    /// OS's page cache, so a crash of a majority that loses that cache loses it.
    SkipFsync,
    /// Raft logs are purged up to the last applied entry, entries that partitions still
    /// serve records from included: reads of older records fail, and a replica catching up
    /// by snapshot gets no records.
    PurgeUnread,
    /// The log cleaner tells keys apart by one byte of a hash, as a cleaner whose key map
    /// collides would: it drops records whose key only shares that byte with a later one's.
    CompactByHash,
}

impl UnsafeMode {
    /// Whether `self` (the configured mode) is `mode`; always false in a normal build.
    pub fn is(self, mode: UnsafeMode) -> bool {
        cfg!(feature = "unsafe-modes") && self == mode
    }
}

/// In the read-uncommitted mode, the batches `replica` has appended past its last applied
/// entry, numbered from `high_watermark`, and the offset after them; otherwise none.
#[cfg_attr(not(feature = "unsafe-modes"), allow(unused_variables))]
pub fn uncommitted_tail(
    mode: UnsafeMode,
    replica: &PartitionReplica,
    high_watermark: i64,
) -> Result<(Vec<StoredBatch>, i64), StorageError> {
    #[cfg(feature = "unsafe-modes")]
    if mode == UnsafeMode::ReadUncommitted {
        return replica
            .reader
            .read_uncommitted(replica.replica.last_applied_index(), high_watermark);
    }
    Ok((Vec::new(), high_watermark))
}
