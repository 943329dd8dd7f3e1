//! openraft's log storage over a group's [`RaftLog`]: entries are encoded by
//! [`crate::codec`], appended without syncing, and reported flushed by the node-wide group
//! commit. Reads of the entries appended last are answered from [`RecentEntries`].

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader, StorageIOError};
use strand_storage::keys::{RAFT_COMMITTED, RAFT_PURGED, RAFT_VOTE};
use strand_storage::RaftLog;

use crate::codec;
use crate::recent_entries::RecentEntries;
use crate::snapshot::LogFloor;
use crate::types::{Entry, LogId, StorageError, Types, Vote};

/// One group's Raft log store. Clones share the same underlying log.
#[derive(Clone)]
pub struct LogStore {
    log: RaftLog,
    recent: RecentEntries,
    floor: LogFloor,
}

impl LogStore {
    pub fn new(log: RaftLog) -> LogStore {
        LogStore {
            log,
            recent: RecentEntries::default(),
            floor: LogFloor::default(),
        }
    }

    /// The entries appended last, for the group's state machine to forget once applied.
    pub fn recent(&self) -> RecentEntries {
        self.recent.clone()
    }

    /// Where purging stops, for the group's state machine to set.
    pub fn floor(&self) -> LogFloor {
        self.floor.clone()
    }

    fn read_hard_state<T: serde::de::DeserializeOwned>(
        &self,
        which: u8,
    ) -> Result<Option<T>, StorageError> {
        let bytes = self
            .log
            .hard_state(which)
            .map_err(|e| StorageIOError::read(&e))?;
        bytes
            .map(|b| codec::decode(&b).map_err(|e| StorageIOError::read(&e).into()))
            .transpose()
    }

    fn write_hard_state<T: serde::Serialize>(
        &self,
        which: u8,
        value: &T,
    ) -> Result<(), StorageError> {
        self.log
            .put_hard_state(which, &codec::encode(value))
            .map_err(|e| StorageIOError::write(&e).into())
    }
}

impl RaftLogReader<Types> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&i) => i.saturating_add(1),
            Bound::Excluded(&i) => i,
            Bound::Unbounded => u64::MAX,
        };
        self.read(start, end, usize::MAX)
    }

    /// What replication sends a follower in one AppendEntries: bounded in bytes, not only
    /// in entries (openraft's `max_payload_entries`), because one entry can hold a
    /// megabyte of batches. Without the bound, a follower catching up on a busy partition
    /// was sent hundreds of megabytes at once, per partition, and retries multiplied it.
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        self.read(start, end, MAX_APPEND_BYTES)
    }
}

/// The most entry bytes one AppendEntries, or one snapshot chunk, carries (one entry more
/// if a single entry is larger).
pub(crate) const MAX_APPEND_BYTES: usize = 1 << 20;

impl LogStore {
    fn read(&self, start: u64, end: u64, max_bytes: usize) -> Result<Vec<Entry>, StorageError> {
        if let Some(entries) = self.recent.read(start, end, max_bytes) {
            return Ok(entries);
        }
        let raw = self
            .log
            .read_limited(start, end, max_bytes)
            .map_err(|e| StorageIOError::read_logs(&e))?;
        raw.into_iter()
            .map(|(index, bytes)| {
                codec::decode_entry(bytes)
                    .map_err(|e| StorageIOError::read_log_at_index(index, &e).into())
            })
            .collect()
    }
}

impl RaftLogStorage<Types> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<Types>, StorageError> {
        let last_purged_log_id: Option<LogId> = self.read_hard_state(RAFT_PURGED)?;
        let last = self.log.last().map_err(|e| StorageIOError::read_logs(&e))?;
        let last_log_id = match last {
            Some((index, bytes)) => Some(
                codec::decode_entry(bytes)
                    .map_err(|e| StorageIOError::read_log_at_index(index, &e))?
                    .log_id,
            ),
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    /// The vote must be on disk before this returns: a node that forgets its vote after a
    /// crash could vote twice in one term.
    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.write_hard_state(RAFT_VOTE, vote)?;
        self.log
            .store()
            .group_commit()
            .sync()
            .await
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.read_hard_state(RAFT_VOTE)
    }

    /// Not synced: the committed index only lets a restarting node re-apply sooner.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.write_hard_state(RAFT_COMMITTED, &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self
            .read_hard_state::<Option<LogId>>(RAFT_COMMITTED)?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<Types>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let encoded: Vec<(u64, Vec<u8>)> = entries
            .iter()
            .map(|e| (e.log_id.index, codec::encode_entry(e)))
            .collect();
        self.log
            .append(encoded.iter().map(|(i, b)| (*i, b.as_slice())))
            .map_err(|e| StorageIOError::write_logs(&e))?;
        self.recent.appended(&entries);
        self.log
            .store()
            .group_commit()
            .after_sync(move |result| callback.log_io_completed(result));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.log
            .truncate_from(log_id.index)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        self.recent.truncated_from(log_id.index);
        Ok(())
    }

    /// Entries at or above the floor stay on disk, and a purge past the written applied
    /// entry is left to the snapshot install that it follows (see [`LogFloor`]); openraft
    /// never reads a purged entry again either way.
    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        if log_id.index > self.floor.applied() {
            self.recent.forget_upto(log_id.index);
            return Ok(());
        }
        self.log
            .purge_upto(log_id.index, self.floor.get(), &codec::encode(&log_id))
            .map_err(|e| StorageIOError::write_logs(&e))?;
        self.recent.forget_upto(log_id.index);
        Ok(())
    }
}
