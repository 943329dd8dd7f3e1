//! Strand's storage: one RocksDB instance per node, shared by every Raft group on it.
//!
//! Three column families, keys prefixed by the big-endian group id (see [`keys`], the only
//! module that knows byte layouts):
//!
//! - `raft_log`: each group's Raft log entries, written through the WAL. For a partition
//!   the Raft log **is** the partition log: record batches live in their entries and
//!   nowhere else. A produce request is durable once its entry's WAL record is synced; at
//!   the next memtable flush the entry moves to a blob file, where it stays. Each payload
//!   byte reaches the disk twice (WAL, blob file).
//! - `raft_state`: each group's vote, committed index and purge point, through the WAL.
//! - `state`: what the state machines derive by applying entries: for a partition, where
//!   each batch is (offset → entry, position, length), the time index and the leader-epoch
//!   history; for the controller, cluster metadata. Small, and written through the WAL
//!   but never synced for itself: the Raft log already holds every applied entry, so
//!   after a crash the state rolls back to the last synced WAL record and Raft re-applies
//!   the rest, giving identical results. The WAL keeps order, so a state write that
//!   survives a crash comes with the log entries it was applied from. (Writes skipping the
//!   WAL would be cheaper still, but RocksDB recycles WAL files only when none do.)
//!   Nothing is purged from the Raft log before the state is flushed, so the entries are
//!   always there.
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
pub use partition_log::{BatchLocation, PartitionLog, PartitionMeta};
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
