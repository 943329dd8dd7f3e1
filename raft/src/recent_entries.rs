//! The entries a group appended last, kept as they were appended until they are applied.
//!
//! openraft reads every entry back right after appending it: the leader to send it to its
//! followers, every replica to apply it. From RocksDB each of those reads is a seek through
//! the memtables, a copy of the entry and a decode, which shows in a profile of a node
//! producing flat out. Held here the entries are shared (their record data is
//! reference-counted), not copied.
//!
//! The entries held are always the end of the log, without gaps: every append, truncation
//! and purge of the log passes through here too, so an entry found here is the entry
//! RocksDB holds at that index, and nothing follows the last one. Reads that start before
//! the first entry held go to RocksDB.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use openraft::EntryPayload;

use crate::codec;
use crate::types::Entry;

/// The most entry bytes one group holds; past it the oldest go first (to RocksDB's copy
/// only). Applying normally empties it within milliseconds; the bound is for a replica
/// whose applying falls behind.
const MAX_BYTES: usize = 8 << 20;

/// Shared by a group's log store, its readers and its state machine. Cheap to clone.
#[derive(Clone, Default)]
pub struct RecentEntries(Arc<Mutex<Held>>);

#[derive(Default)]
struct Held {
    entries: VecDeque<Entry>,
    bytes: usize,
}

/// The bytes an entry takes in the log (what read limits count).
fn entry_bytes(entry: &Entry) -> usize {
    match &entry.payload {
        EntryPayload::Normal(command) => command.append().map_or(64, |append| {
            codec::append_data_start(append.batches.len()) + append.data.len()
        }),
        _ => 64,
    }
}

impl Held {
    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|e| e.log_id.index)
    }

    fn pop_front(&mut self) {
        if let Some(e) = self.entries.pop_front() {
            self.bytes -= entry_bytes(&e);
        }
    }

    fn pop_back(&mut self) {
        if let Some(e) = self.entries.pop_back() {
            self.bytes -= entry_bytes(&e);
        }
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// Drops the entries from `index` on.
    fn drop_from(&mut self, index: u64) {
        while self.entries.back().is_some_and(|e| e.log_id.index >= index) {
            self.pop_back();
        }
    }

    /// Drops the entries up to `index`.
    fn drop_upto(&mut self, index: u64) {
        while self.first_index().is_some_and(|first| first <= index) {
            self.pop_front();
        }
    }
}

impl RecentEntries {
    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        // Every change leaves `Held` consistent before anything that could panic.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Entries just written to the log at their indexes.
    pub fn appended(&self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        let mut held = self.held();
        // An append overwrites from its first index on; one that leaves a gap after the
        // entries held would break the "end of the log" rule, so they go.
        held.drop_from(first.log_id.index);
        if held
            .entries
            .back()
            .is_some_and(|e| e.log_id.index + 1 != first.log_id.index)
        {
            held.clear();
        }
        for entry in entries {
            held.bytes += entry_bytes(entry);
            held.entries.push_back(entry.clone());
        }
        while held.bytes > MAX_BYTES {
            held.pop_front();
        }
    }

    /// The log lost every entry from `index` on.
    pub fn truncated_from(&self, index: u64) {
        self.held().drop_from(index);
    }

    /// Entries up to `index` are no longer needed here: applied, or purged from the log.
    pub fn forget_upto(&self, index: u64) {
        self.held().drop_upto(index);
    }

    /// The entries from `start` up to (not including) `end`, stopping once they hold
    /// `max_bytes` (at least one), as the log would return them; `None` when `start` is
    /// before the first entry held, or nothing is held.
    pub fn read(&self, start: u64, end: u64, max_bytes: usize) -> Option<Vec<Entry>> {
        let held = self.held();
        let first = held.first_index()?;
        if start < first {
            return None;
        }
        // Nothing follows the last entry held, in the log either.
        let skip = ((start - first) as usize).min(held.entries.len());
        let mut out = Vec::new();
        let mut bytes = 0;
        for entry in held.entries.range(skip..) {
            if entry.log_id.index >= end || bytes >= max_bytes {
                break;
            }
            bytes += entry_bytes(entry);
            out.push(entry.clone());
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{AppendBatches, BatchSummary, Command, LogId};
    use bytes::Bytes;
    use openraft::CommittedLeaderId;

    fn entry(term: u64, index: u64, data_len: usize) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 0), index),
            payload: EntryPayload::Normal(Command::Append(AppendBatches {
                data: Bytes::from(vec![index as u8; data_len]),
                batches: vec![BatchSummary {
                    len: data_len as u32,
                    last_offset_delta: 0,
                    max_timestamp: 0,
                    producer_id: -1,
                    producer_epoch: -1,
                    base_sequence: -1,
                }],
                ..AppendBatches::default()
            })),
        }
    }

    fn indexes(entries: Option<Vec<Entry>>) -> Option<Vec<(u64, u64)>> {
        entries.map(|es| {
            es.iter()
                .map(|e| (e.log_id.leader_id.term, e.log_id.index))
                .collect()
        })
    }

    #[test]
    fn holds_the_end_of_the_log_through_appends_truncations_and_applies() {
        let recent = RecentEntries::default();
        assert_eq!(indexes(recent.read(1, 10, usize::MAX)), None);
        recent.appended(&(1..=5).map(|i| entry(1, i, 100)).collect::<Vec<_>>());
        assert_eq!(
            indexes(recent.read(2, 4, usize::MAX)),
            Some(vec![(1, 2), (1, 3)])
        );
        assert_eq!(indexes(recent.read(6, 10, usize::MAX)), Some(vec![]));
        assert_eq!(indexes(recent.read(60, 70, usize::MAX)), Some(vec![]));
        // A new leader's entries replace the old from index 4 on.
        recent.truncated_from(4);
        recent.appended(&[entry(2, 4, 100)]);
        assert_eq!(
            indexes(recent.read(3, u64::MAX, usize::MAX)),
            Some(vec![(1, 3), (2, 4)])
        );
        // An append that overlaps without a truncation overwrites too.
        recent.appended(&[entry(3, 4, 100), entry(3, 5, 100)]);
        assert_eq!(
            indexes(recent.read(4, u64::MAX, usize::MAX)),
            Some(vec![(3, 4), (3, 5)])
        );
        // Applied entries go; reads from before what is held go to the log.
        recent.forget_upto(3);
        assert_eq!(indexes(recent.read(3, 10, usize::MAX)), None);
        assert_eq!(indexes(recent.read(4, 5, usize::MAX)), Some(vec![(3, 4)]));
        // An append after a gap (the log was replaced under it) leaves nothing stale.
        recent.appended(&[entry(4, 9, 100)]);
        assert_eq!(indexes(recent.read(4, 10, usize::MAX)), None);
        assert_eq!(indexes(recent.read(9, 10, usize::MAX)), Some(vec![(4, 9)]));
        recent.forget_upto(9);
        assert_eq!(indexes(recent.read(9, 10, usize::MAX)), None);
    }

    #[test]
    fn reads_stop_at_the_byte_limit_and_the_oldest_go_past_the_bound() {
        let recent = RecentEntries::default();
        let size = entry_bytes(&entry(1, 1, 1000));
        recent.appended(&(1..=4).map(|i| entry(1, i, 1000)).collect::<Vec<_>>());
        assert_eq!(
            indexes(recent.read(1, 10, 2 * size)),
            Some(vec![(1, 1), (1, 2)])
        );
        assert_eq!(indexes(recent.read(1, 10, 1)), Some(vec![(1, 1)]));
        let big = MAX_BYTES / 2;
        recent.appended(&[entry(1, 5, big), entry(1, 6, big)]);
        assert_eq!(
            indexes(recent.read(5, 10, usize::MAX)),
            None,
            "entries 1 to 5 no longer fit"
        );
        assert_eq!(indexes(recent.read(6, 10, usize::MAX)), Some(vec![(1, 6)]));
    }
}
