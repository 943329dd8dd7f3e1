//! One Raft group's log and hard state, as opaque bytes. The Raft layer encodes entries;
//! this module only knows where they live and that appends are synced by group commit.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use rocksdb::{DBPinnableSlice, ReadOptions, WriteBatch, DB};

use crate::db::{CF_RAFT_LOG, CF_RAFT_STATE};
use crate::keys::{self, RaftGroupId};
use crate::{Result, Store};

/// Handle to a group's Raft log. Cheap to clone.
#[derive(Clone)]
pub struct RaftLog {
    store: Store,
    group: RaftGroupId,
}

impl RaftLog {
    pub(crate) fn new(store: Store, group: RaftGroupId) -> RaftLog {
        RaftLog { store, group }
    }

    pub fn group(&self) -> RaftGroupId {
        self.group
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Writes entries (index, encoded entry). They are readable at once and durable after
    /// the next group-commit sync.
    pub fn append<'a>(&self, entries: impl IntoIterator<Item = (u64, &'a [u8])>) -> Result<()> {
        let cf = self.store.cf(CF_RAFT_LOG);
        let mut batch = WriteBatch::default();
        let mut bytes = 0;
        for (index, entry) in entries {
            bytes += entry.len();
            batch.put_cf(cf, keys::raft_log(self.group, index), entry);
        }
        self.store
            .stats()
            .raft_log_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
        self.store.write_logged(batch)
    }

    /// Entries with index in `[start, end)`, in order, stopping at the first gap.
    pub fn read(&self, start: u64, end: u64) -> Result<Vec<(u64, Vec<u8>)>> {
        self.read_limited(start, end, usize::MAX)
    }

    /// Like [`Self::read`], but stops once the entries read hold `max_bytes` (always
    /// returning at least one entry if there is one), so a request to replicate a long
    /// range of large batches stays small.
    pub fn read_limited(
        &self,
        start: u64,
        end: u64,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>> {
        let mut out = Vec::new();
        let mut bytes = 0;
        if start >= end {
            return Ok(out);
        }
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(keys::raft_log(self.group, end).to_vec());
        let mut iter = self
            .store
            .db
            .raw_iterator_cf_opt(self.store.cf(CF_RAFT_LOG), ro);
        iter.seek(keys::raft_log(self.group, start));
        let mut expected = start;
        while iter.valid() {
            let index = iter
                .key()
                .and_then(keys::raft_log_index)
                .unwrap_or(u64::MAX);
            if index != expected || bytes >= max_bytes {
                break;
            }
            let value = iter.value().unwrap_or_default().to_vec();
            bytes += value.len();
            out.push((index, value));
            expected += 1;
            iter.next();
        }
        iter.status()?;
        Ok(out)
    }

    /// The entries at `indexes` (in that order), `None` where there is none, each kept
    /// where RocksDB read it (pinned) rather than copied out: slices of them can go to a
    /// socket as they are.
    ///
    /// This is the read path of Fetch, and it skips RocksDB's checksum of each value: that
    /// CRC32C over every byte read cost the broker as much CPU in a catch-up read as the
    /// read itself, and the record batches served carry their own
    /// CRC32C, checked when they were produced and again by consumers (the Java client's
    /// `check.crcs`), as with Kafka, which never re-checks a batch it sends. Raft
    /// replication and recovery read with checksums.
    pub fn get_many(&self, indexes: &[u64]) -> Result<Vec<Option<Bytes>>> {
        let keys: Vec<_> = indexes
            .iter()
            .map(|i| keys::raft_log(self.group, *i))
            .collect();
        let mut unchecked = ReadOptions::default();
        unchecked.set_verify_checksums(false);
        self.store
            .db
            .batched_multi_get_cf_opt(self.store.cf(CF_RAFT_LOG), &keys, false, &unchecked)
            .into_iter()
            .map(|r| Ok(r?.map(|value| PinnedValue::bytes(value, &self.store.db))))
            .collect()
    }

    /// The entry with the highest index, if any.
    pub fn last(&self) -> Result<Option<(u64, Vec<u8>)>> {
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(keys::group_start(self.group).to_vec());
        ro.set_iterate_upper_bound(keys::group_end(self.group).to_vec());
        let mut iter = self
            .store
            .db
            .raw_iterator_cf_opt(self.store.cf(CF_RAFT_LOG), ro);
        iter.seek_to_last();
        if !iter.valid() {
            iter.status()?;
            return Ok(None);
        }
        let index = iter
            .key()
            .and_then(keys::raft_log_index)
            .unwrap_or_default();
        Ok(Some((index, iter.value().unwrap_or_default().to_vec())))
    }

    /// Deletes every entry with index `>= from` (a follower dropping a conflicting suffix).
    pub fn truncate_from(&self, from: u64) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(
            self.store.cf(CF_RAFT_LOG),
            &keys::raft_log(self.group, from)[..],
            &keys::group_end(self.group)[..],
        );
        self.store.write_logged(batch)
    }

    /// Records the purge point and deletes every entry with index `<= upto` and below
    /// `floor`, atomically. Entries from `floor` on stay even if purged in Raft's view: the
    /// state machine still reads them.
    pub fn purge_upto(&self, upto: u64, floor: u64, purge_point: &[u8]) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.store.cf(CF_RAFT_STATE),
            keys::raft_state(self.group, keys::RAFT_PURGED),
            purge_point,
        );
        let end = upto.saturating_add(1).min(floor);
        if end > 0 {
            batch.delete_range_cf(
                self.store.cf(CF_RAFT_LOG),
                keys::raft_log(self.group, 0),
                keys::raft_log(self.group, end),
            );
        }
        self.store.write_logged(batch)
    }

    /// A hard-state value (`keys::RAFT_VOTE`, `RAFT_COMMITTED`, `RAFT_PURGED`).
    pub fn hard_state(&self, which: u8) -> Result<Option<Vec<u8>>> {
        Ok(self.store.db.get_cf(
            self.store.cf(CF_RAFT_STATE),
            keys::raft_state(self.group, which),
        )?)
    }

    /// Writes a hard-state value through the WAL, unsynced; callers that need it durable
    /// before going on (the vote) wait for [`crate::GroupCommit::sync`].
    pub fn put_hard_state(&self, which: u8, value: &[u8]) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.store.cf(CF_RAFT_STATE),
            keys::raft_state(self.group, which),
            value,
        );
        self.store.write_logged(batch)
    }
}

/// A value pinned by RocksDB, owned: it keeps the database open, which is all a pinned
/// slice needs to stay valid (RocksDB frees what it pins when the slice is dropped).
struct PinnedValue {
    // Fields drop in order: the slice before the database it points into.
    value: DBPinnableSlice<'static>,
    _db: Arc<DB>,
}

impl PinnedValue {
    fn bytes(value: DBPinnableSlice<'_>, db: &Arc<DB>) -> Bytes {
        // SAFETY: the lifetime of a `DBPinnableSlice` stands only for the database it came
        // from staying open (it is a `PhantomData<&DB>`); `_db` keeps that database open
        // until after the slice is dropped. Only the lifetime changes, not the type.
        let value =
            unsafe { std::mem::transmute::<DBPinnableSlice<'_>, DBPinnableSlice<'static>>(value) };
        Bytes::from_owner(PinnedValue {
            value,
            _db: db.clone(),
        })
    }
}

impl AsRef<[u8]> for PinnedValue {
    fn as_ref(&self) -> &[u8] {
        &self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreOptions;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreOptions::new(dir.path())).unwrap();
        (dir, store)
    }

    #[test]
    fn groups_share_the_family_without_seeing_each_other() {
        let (_dir, store) = store();
        let (a, b) = (store.raft_log(1), store.raft_log(2));
        a.append([(1, &b"a1"[..]), (2, b"a2"), (3, b"a3")]).unwrap();
        b.append([(1, &b"b1"[..])]).unwrap();
        assert_eq!(a.last().unwrap().unwrap(), (3, b"a3".to_vec()));
        assert_eq!(b.last().unwrap().unwrap(), (1, b"b1".to_vec()));
        assert_eq!(store.raft_log(3).last().unwrap(), None);
        assert_eq!(
            a.read(2, 10).unwrap(),
            [(2, b"a2".to_vec()), (3, b"a3".to_vec())]
        );
        let many = a.get_many(&[3, 9, 1]).unwrap();
        drop((a, b, store));
        assert_eq!(
            many,
            [Some(Bytes::from("a3")), None, Some(Bytes::from("a1"))]
        );
    }

    #[test]
    fn truncate_and_purge_remove_the_right_ends() {
        let (_dir, store) = store();
        let log = store.raft_log(5);
        let entries: Vec<(u64, Vec<u8>)> = (1..=10).map(|i| (i, vec![i as u8])).collect();
        log.append(entries.iter().map(|(i, e)| (*i, e.as_slice())))
            .unwrap();
        log.truncate_from(8).unwrap();
        assert_eq!(log.last().unwrap().unwrap().0, 7);
        log.purge_upto(3, u64::MAX, b"p3").unwrap();
        assert_eq!(log.read(0, 100).unwrap(), [], "reads stop at the first gap");
        assert_eq!(log.read(4, 100).unwrap().len(), 4);
        assert_eq!(log.hard_state(keys::RAFT_PURGED).unwrap().unwrap(), b"p3");
        // Below the floor only, whatever Raft counts as purged.
        log.purge_upto(6, 5, b"p6").unwrap();
        assert_eq!(log.read(5, 100).unwrap().len(), 3);
        assert_eq!(log.read(4, 5).unwrap(), []);
        assert_eq!(log.hard_state(keys::RAFT_PURGED).unwrap().unwrap(), b"p6");
    }

    #[tokio::test]
    async fn group_commit_syncs_and_counts_rounds() {
        let (_dir, store) = store();
        store.raft_log(1).append([(1, &b"x"[..])]).unwrap();
        store.group_commit().sync().await.unwrap();
        assert!(store.stats().wal_syncs.load(Ordering::Relaxed) >= 1);
    }

    /// Flushed entries live in blob files, written and read with direct I/O where the file
    /// system allows it: unaligned sizes and offsets must come back intact after a reopen.
    #[test]
    fn flushed_entries_read_back_after_a_reopen() {
        // Written with direct I/O (where the probe allows it) and read back through the page
        // cache, and the other way round.
        for (write_direct, read_direct) in [(None, Some(false)), (Some(false), None)] {
            let dir = tempfile::tempdir().unwrap();
            let options = |direct_io| StoreOptions {
                direct_io,
                ..StoreOptions::new(dir.path())
            };
            let store = Store::open(&options(write_direct)).unwrap();
            let log = store.raft_log(7);
            // Odd sizes, above the blob threshold, so that no read is aligned by chance.
            let entries: Vec<(u64, Vec<u8>)> = (1..=50)
                .map(|i| (i, vec![i as u8; 1000 + 37 * i as usize]))
                .collect();
            log.append(entries.iter().map(|(i, e)| (*i, e.as_slice())))
                .unwrap();
            store.db.flush_cf(store.cf(crate::db::CF_RAFT_LOG)).unwrap();
            drop(log);
            drop(store);
            let store = Store::open(&options(read_direct)).unwrap();
            let log = store.raft_log(7);
            assert_eq!(log.read(1, 51).unwrap(), entries);
            let some: Vec<Bytes> = log
                .get_many(&[50, 3])
                .unwrap()
                .into_iter()
                .map(Option::unwrap)
                .collect();
            // Pinned values outlive every handle to the store: they keep it open.
            drop(log);
            drop(store);
            assert_eq!(some, [&entries[49].1, &entries[2].1]);
        }
    }

    #[test]
    fn deleting_a_group_leaves_its_neighbours() {
        let (_dir, store) = store();
        for g in [1, 2] {
            let log = store.raft_log(g);
            log.append([(1, &b"e"[..])]).unwrap();
            log.put_hard_state(keys::RAFT_VOTE, b"v").unwrap();
        }
        store.delete_group(1).unwrap();
        assert!(!store.group_exists(1).unwrap());
        assert!(store.group_exists(2).unwrap());
        assert_eq!(store.raft_log(1).last().unwrap(), None);
        assert!(store.raft_log(2).last().unwrap().is_some());
    }
}
