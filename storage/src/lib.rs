//! Strand's storage: one RocksDB instance per node, shared by every Raft group on it.
//!
//! Three column families, keys prefixed by the big-endian group id (see [`keys`], the only
//! module that knows byte layouts):
//!
//! - `raft_log`: each group's Raft log entries, written through the WAL. A produce request
//!   is durable once its entry's WAL record is synced.
//! - `raft_state`: each group's vote, committed index and purge point, through the WAL.
//! - `state`: what the state machines build by applying entries: partition batches and
//!   indexes, controller metadata. Written **without** the WAL, because the Raft log
//!   already holds every applied entry: after a crash the state rolls back to its last
//!   memtable flush and Raft re-applies the rest. The state machine's snapshot flushes
//!   this family before Raft may purge the log it covers. Each payload byte therefore
//!   reaches the disk about twice (WAL, then the state SST or blob), not four times.
//!
//! Durability comes from [`GroupCommit`]: appends of every group are written unsynced and
//! one `fsync` of the shared WAL then makes a whole round of them durable at once.

mod db;
mod group_commit;
pub mod keys;
mod partition_log;
mod raft_log;

pub use db::{StateBatch, Store, StoreOptions, StoreStats};
pub use group_commit::GroupCommit;
pub use partition_log::{PartitionLog, PartitionMeta, StoredBatch};
pub use raft_log::RaftLog;

/// A storage failure. RocksDB errors are not recoverable by retrying the same call; the
/// caller reports them and the node stops serving the affected group.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("stored value at {what} is corrupt: {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("the group-commit flusher has stopped")]
    FlusherGone,
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;
