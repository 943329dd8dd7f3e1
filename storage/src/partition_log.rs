//! A partition's index over its Raft log: where each record batch is (which entry, at what
//! position, how long), keyed by base offset; a time index; the leader-epoch history and a
//! small meta record. The batches themselves stay in the Raft log entries that carried
//! them, until the log cleaner rewrites them into the partition's state. The partition
//! state machine is the only writer (through a [`StateBatch`]); Fetch and ListOffsets read
//! concurrently.

use rocksdb::ReadOptions;

use crate::db::CF_STATE;
use crate::keys::{self, RaftGroupId};
use crate::{Result, StateBatch, StorageError, Store};

/// Per-partition counters kept with the data, updated in the same write as each append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionMeta {
    /// The offset the next appended record gets (log end offset).
    pub next_offset: i64,
    /// The first offset still stored.
    pub log_start_offset: i64,
    /// The largest batch max-timestamp seen, and the base offset of that batch.
    pub max_timestamp: i64,
    pub max_timestamp_batch: i64,
}

impl Default for PartitionMeta {
    fn default() -> Self {
        PartitionMeta {
            next_offset: 0,
            log_start_offset: 0,
            max_timestamp: -1,
            max_timestamp_batch: -1,
        }
    }
}

impl PartitionMeta {
    fn encode(&self) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[0..8].copy_from_slice(&self.next_offset.to_be_bytes());
        b[8..16].copy_from_slice(&self.log_start_offset.to_be_bytes());
        b[16..24].copy_from_slice(&self.max_timestamp.to_be_bytes());
        b[24..32].copy_from_slice(&self.max_timestamp_batch.to_be_bytes());
        b
    }

    fn decode(b: &[u8]) -> Result<PartitionMeta> {
        let field = |i: usize| -> Result<i64> {
            b.get(i * 8..i * 8 + 8)
                .and_then(|s| s.try_into().ok())
                .map(i64::from_be_bytes)
                .ok_or(StorageError::Corrupt {
                    what: "partition meta",
                    detail: format!("{} bytes", b.len()),
                })
        };
        Ok(PartitionMeta {
            next_offset: field(0)?,
            log_start_offset: field(1)?,
            max_timestamp: field(2)?,
            max_timestamp_batch: field(3)?,
        })
    }
}

/// Where a record batch is: `len` bytes at `position` in the value of Raft log entry
/// `raft_index` of the same group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLocation {
    pub raft_index: u64,
    pub position: u32,
    pub len: u32,
}

impl BatchLocation {
    /// The `raft_index` of a batch the log cleaner rewrote: it lives in the partition's
    /// state (see [`PartitionLog::cleaned`]), no longer in a Raft entry.
    pub const CLEANED: u64 = u64::MAX;

    pub fn cleaned(len: u32) -> BatchLocation {
        BatchLocation {
            raft_index: Self::CLEANED,
            position: 0,
            len,
        }
    }

    pub fn is_cleaned(&self) -> bool {
        self.raft_index == Self::CLEANED
    }

    fn encode(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0..8].copy_from_slice(&self.raft_index.to_be_bytes());
        b[8..12].copy_from_slice(&self.position.to_be_bytes());
        b[12..16].copy_from_slice(&self.len.to_be_bytes());
        b
    }

    fn decode(b: &[u8]) -> Result<BatchLocation> {
        if b.len() != 16 {
            return Err(StorageError::Corrupt {
                what: "batch location",
                detail: format!("{} bytes", b.len()),
            });
        }
        Ok(BatchLocation {
            raft_index: u64::from_be_bytes(b[0..8].try_into().expect("8 bytes")),
            position: u32::from_be_bytes(b[8..12].try_into().expect("4 bytes")),
            len: u32::from_be_bytes(b[12..16].try_into().expect("4 bytes")),
        })
    }
}

/// Handle to one partition's stored log. Cheap to clone.
#[derive(Clone)]
pub struct PartitionLog {
    store: Store,
    group: RaftGroupId,
}

impl PartitionLog {
    pub(crate) fn new(store: Store, group: RaftGroupId) -> PartitionLog {
        PartitionLog { store, group }
    }

    pub fn group(&self) -> RaftGroupId {
        self.group
    }

    pub fn meta(&self) -> Result<Option<PartitionMeta>> {
        self.store
            .get_state(&keys::state(self.group, keys::PARTITION_META))?
            .map(|b| PartitionMeta::decode(&b))
            .transpose()
    }

    /// The earliest delete horizon of a cleaned batch that held a tombstone when the last
    /// cleaning pass covered it: from then on a pass would drop that tombstone, even when
    /// nothing new was written.
    pub fn tombstone_expiry(&self) -> Result<Option<i64>> {
        let Some(value) = self
            .store
            .get_state(&keys::state(self.group, keys::TOMBSTONE_EXPIRY))?
        else {
            return Ok(None);
        };
        let bytes: [u8; 8] = value
            .as_slice()
            .try_into()
            .map_err(|_| StorageError::Corrupt {
                what: "tombstone expiry",
                detail: format!("{} bytes, not 8", value.len()),
            })?;
        Ok(Some(i64::from_be_bytes(bytes)))
    }

    pub fn put_tombstone_expiry(&self, batch: &mut StateBatch, expiry: Option<i64>) {
        let key = keys::state(self.group, keys::TOMBSTONE_EXPIRY);
        match expiry {
            Some(at) => batch.put(&key, &at.to_be_bytes()),
            None => batch.delete(&key),
        }
    }

    pub fn put_meta(&self, batch: &mut StateBatch, meta: &PartitionMeta) {
        batch.put(
            &keys::state(self.group, keys::PARTITION_META),
            &meta.encode(),
        );
    }

    /// Records where the batch with `base_offset` is.
    pub fn put_batch(&self, batch: &mut StateBatch, base_offset: i64, location: BatchLocation) {
        batch.put(&keys::batch(self.group, base_offset), &location.encode());
    }

    /// Stores the batch at `base_offset` as the log cleaner rewrote it, with the time after
    /// which its tombstones may go, and points the index at it.
    pub fn put_cleaned(
        &self,
        batch: &mut StateBatch,
        base_offset: i64,
        delete_horizon: i64,
        bytes: &[u8],
    ) {
        let mut value = Vec::with_capacity(8 + bytes.len());
        value.extend_from_slice(&delete_horizon.to_be_bytes());
        value.extend_from_slice(bytes);
        batch.put(&keys::cleaned(self.group, base_offset), &value);
        self.put_batch(
            batch,
            base_offset,
            BatchLocation::cleaned(bytes.len() as u32),
        );
    }

    /// A batch the log cleaner rewrote: its delete horizon and its bytes.
    pub fn cleaned(&self, base_offset: i64) -> Result<Option<(i64, Vec<u8>)>> {
        let Some(mut value) = self
            .store
            .get_state(&keys::cleaned(self.group, base_offset))?
        else {
            return Ok(None);
        };
        if value.len() < 8 {
            return Err(StorageError::Corrupt {
                what: "cleaned batch",
                detail: format!("{} bytes", value.len()),
            });
        }
        let horizon = i64::from_be_bytes(value[..8].try_into().expect("8 bytes"));
        value.drain(..8);
        Ok(Some((horizon, value)))
    }

    /// How many bytes of the batches below `end` the cleaner has rewritten and how many it
    /// has not (Kafka's clean and dirty sections), and the base offset of the first dirty one.
    pub fn cleaning_state(&self, end: i64) -> Result<(u64, u64, Option<i64>)> {
        let (mut clean, mut dirty, mut first_dirty) = (0u64, 0u64, None);
        let mut iter = self.batch_iter(end);
        iter.seek_to_first();
        while let (Some(key), Some(value)) = (iter.key(), iter.value()) {
            let location = BatchLocation::decode(value)?;
            if location.is_cleaned() {
                clean += u64::from(location.len);
            } else {
                dirty += u64::from(location.len);
                first_dirty = first_dirty.or_else(|| keys::batch_base_offset(key));
            }
            iter.next();
        }
        iter.status()?;
        Ok((clean, dirty, first_dirty))
    }

    /// Where the run of cleaned batches from the batch at or after `from` ends: the base
    /// offset of the first batch not cleaned, or `i64::MAX` when every later one is.
    pub fn cleaned_through(&self, from: i64) -> Result<i64> {
        let mut iter = self.batch_iter(i64::MAX);
        iter.seek(keys::batch(self.group, from));
        while let (Some(key), Some(value)) = (iter.key(), iter.value()) {
            if !BatchLocation::decode(value)?.is_cleaned() {
                return Ok(keys::batch_base_offset(key).unwrap_or(from));
            }
            iter.next();
        }
        iter.status()?;
        Ok(i64::MAX)
    }

    /// The base offset of the batch at which the batches not cleaned yet from `from` (below
    /// `end`) pass `max_bytes`, so that those before it hold at most that much (at least
    /// one batch); `None` when they all fit.
    pub fn dirty_bytes_end(&self, from: i64, end: i64, max_bytes: u64) -> Result<Option<i64>> {
        let mut iter = self.batch_iter(end);
        iter.seek(keys::batch(self.group, from));
        let mut bytes = 0u64;
        while let (Some(key), Some(value)) = (iter.key(), iter.value()) {
            let location = BatchLocation::decode(value)?;
            if !location.is_cleaned() {
                let len = u64::from(location.len);
                if bytes > 0 && bytes + len > max_bytes {
                    return Ok(keys::batch_base_offset(key));
                }
                bytes += len;
            }
            iter.next();
        }
        iter.status()?;
        Ok(None)
    }

    /// Bytes of the batches stored from the log start to the end, cleaned or not: the
    /// partition's size as DescribeLogDirs reports it (Kafka: its segments' bytes).
    pub fn stored_bytes(&self) -> Result<u64> {
        let (clean, dirty, _) = self.cleaning_state(i64::MAX)?;
        Ok(clean + dirty)
    }

    /// Records that the batch at `base_offset` raised the partition's max timestamp to
    /// `max_timestamp`, or, when the log start moves, that the first batch kept follows
    /// batches reaching that time. Either way a later entry never has an earlier time or a
    /// lower offset, so the index is sorted by both.
    pub fn put_time_index(&self, batch: &mut StateBatch, max_timestamp: i64, base_offset: i64) {
        batch.put(
            &keys::time_index(self.group, max_timestamp, base_offset),
            &[],
        );
    }

    /// Records the first offset written in leader epoch `epoch`.
    pub fn put_epoch(&self, batch: &mut StateBatch, epoch: u32, start_offset: i64) {
        batch.put(&keys::epoch(self.group, epoch), &start_offset.to_be_bytes());
    }

    /// Stores an idempotent producer's state (encoded by the caller).
    pub fn put_producer(&self, batch: &mut StateBatch, producer_id: i64, state: &[u8]) {
        batch.put(&keys::producer(self.group, producer_id), state);
    }

    pub fn delete_producer(&self, batch: &mut StateBatch, producer_id: i64) {
        batch.delete(&keys::producer(self.group, producer_id));
    }

    /// Every stored producer state, by producer id.
    pub fn producers(&self) -> Result<Vec<(i64, Vec<u8>)>> {
        let mut out = Vec::new();
        let start = keys::state(self.group, keys::PRODUCER);
        let end = keys::state_tag_end(self.group, keys::PRODUCER);
        self.store.scan_state(&start, &end, |k, v| {
            if let Some(id) = keys::decode_producer(k) {
                out.push((id, v.to_vec()));
            }
            true
        })?;
        Ok(out)
    }

    /// The leader-epoch history: `(epoch, first offset)`, oldest first.
    pub fn epochs(&self) -> Result<Vec<(u32, i64)>> {
        let mut out = Vec::new();
        let start = keys::state(self.group, keys::EPOCH);
        let end = keys::state_tag_end(self.group, keys::EPOCH);
        self.store.scan_state(&start, &end, |k, v| {
            if let (Some(epoch), Ok(offset)) = (keys::decode_epoch(k), v.try_into()) {
                out.push((epoch, i64::from_be_bytes(offset)));
            }
            true
        })?;
        Ok(out)
    }

    /// An iterator over the partition's batch index, below base offset `end`.
    fn batch_iter(&self, end: i64) -> rocksdb::DBRawIteratorWithThreadMode<'_, rocksdb::DB> {
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(keys::batch(self.group, 0).to_vec());
        ro.set_iterate_upper_bound(keys::batch(self.group, end).to_vec());
        self.store
            .db
            .raw_iterator_cf_opt(self.store.cf(CF_STATE), ro)
    }

    /// Locations of the batches holding offsets from `from` up to (not including) `end`,
    /// stopping once `max_bytes` is reached but always including at least one batch when
    /// one exists. The first may start before `from` (the batch containing it), as Kafka
    /// clients expect.
    pub fn locate(
        &self,
        from: i64,
        end: i64,
        max_bytes: usize,
    ) -> Result<Vec<(i64, BatchLocation)>> {
        self.scan_batches(from, end, max_bytes, true)
    }

    /// Like [`PartitionLog::locate`], but only batches whose base offset is at least
    /// `first_base`: what follows a batch already served, whatever offsets that batch held.
    pub fn locate_from_base(
        &self,
        first_base: i64,
        end: i64,
        max_bytes: usize,
    ) -> Result<Vec<(i64, BatchLocation)>> {
        self.scan_batches(first_base, end, max_bytes, false)
    }

    fn scan_batches(
        &self,
        from: i64,
        end: i64,
        max_bytes: usize,
        with_batch_containing_from: bool,
    ) -> Result<Vec<(i64, BatchLocation)>> {
        let mut out = Vec::new();
        if from >= end {
            return Ok(out);
        }
        let mut iter = self.batch_iter(end);
        if with_batch_containing_from {
            iter.seek_for_prev(keys::batch(self.group, from));
        }
        if !iter.valid() {
            iter.seek(keys::batch(self.group, from));
        }
        let mut total = 0usize;
        while iter.valid() {
            let (Some(key), Some(value)) = (iter.key(), iter.value()) else {
                break;
            };
            let location = BatchLocation::decode(value)?;
            if !out.is_empty() && total + location.len as usize > max_bytes {
                break;
            }
            total += location.len as usize;
            out.push((keys::batch_base_offset(key).unwrap_or_default(), location));
            iter.next();
        }
        iter.status()?;
        Ok(out)
    }

    /// The base offset of the last batch starting at or before `offset`: the batch holding
    /// it, when `offset` is below the log end.
    pub fn batch_at_or_before(&self, offset: i64) -> Result<Option<i64>> {
        let mut iter = self.batch_iter(i64::MAX);
        iter.seek_for_prev(keys::batch(self.group, offset));
        let found = iter.key().and_then(keys::batch_base_offset);
        iter.status()?;
        Ok(found)
    }

    /// Where the first batch still in a Raft entry is: the oldest entry the partition still
    /// reads (the batches before it, if any, are cleaned ones).
    pub fn first_location(&self) -> Result<Option<BatchLocation>> {
        let mut iter = self.batch_iter(i64::MAX);
        iter.seek_to_first();
        while let Some(value) = iter.value() {
            let location = BatchLocation::decode(value)?;
            if !location.is_cleaned() {
                return Ok(Some(location));
            }
            iter.next();
        }
        iter.status()?;
        Ok(None)
    }

    /// The base offset of the oldest batch that must stay for the batches below `end` to
    /// hold at least `bytes`: the batches from it on hold `bytes` or more, those after it
    /// less. `None` when all of them together hold less.
    pub fn oldest_needed_for(&self, end: i64, bytes: u64) -> Result<Option<i64>> {
        let mut iter = self.batch_iter(end);
        iter.seek_to_last();
        let mut held = 0u64;
        while let (Some(key), Some(value)) = (iter.key(), iter.value()) {
            held += u64::from(BatchLocation::decode(value)?.len);
            if held >= bytes {
                return Ok(keys::batch_base_offset(key));
            }
            iter.prev();
        }
        iter.status()?;
        Ok(None)
    }

    /// Forgets where the batches below `first_kept` are, once the log start has passed
    /// them. In the same write batch as the puts of the current round, so it also removes
    /// batches put earlier in that round.
    pub fn forget_batches_below(&self, batch: &mut StateBatch, first_kept: i64) {
        batch.delete_range(
            &keys::batch(self.group, 0),
            &keys::batch(self.group, first_kept),
        );
        batch.delete_range(
            &keys::cleaned(self.group, 0),
            &keys::cleaned(self.group, first_kept),
        );
    }

    /// Time index entries pointing below `base_offset`, oldest first (the index is sorted
    /// by time and by offset, so they are its head).
    pub fn time_index_below(&self, base_offset: i64) -> Result<Vec<(i64, i64)>> {
        let mut out = Vec::new();
        let start = keys::state(self.group, keys::TIME_INDEX);
        let end = keys::state_tag_end(self.group, keys::TIME_INDEX);
        self.store
            .scan_state(&start, &end, |k, _| match keys::decode_time_index(k) {
                Some((ts, base)) if base < base_offset => {
                    out.push((ts, base));
                    true
                }
                _ => false,
            })?;
        Ok(out)
    }

    pub fn delete_time_index(&self, batch: &mut StateBatch, max_timestamp: i64, base_offset: i64) {
        batch.delete(&keys::time_index(self.group, max_timestamp, base_offset));
    }

    /// Where the batch whose base offset is exactly `base_offset` is.
    pub fn location_of(&self, base_offset: i64) -> Result<Option<BatchLocation>> {
        self.store
            .get_state(&keys::batch(self.group, base_offset))?
            .map(|b| BatchLocation::decode(&b))
            .transpose()
    }

    /// The base offset of the first batch whose max timestamp is `>= timestamp`, found in
    /// the time index.
    pub fn first_batch_at_or_after(&self, timestamp: i64) -> Result<Option<i64>> {
        let mut found = None;
        let start = keys::time_index(self.group, timestamp, 0);
        let end = keys::state_tag_end(self.group, keys::TIME_INDEX);
        self.store.scan_state(&start, &end, |k, _| {
            found = keys::decode_time_index(k).map(|(_, base)| base);
            false
        })?;
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreOptions;

    fn fill(log: &PartitionLog, store: &Store, sizes: &[(i64, u32)]) {
        let mut b = store.state_batch();
        for (i, &(base, len)) in sizes.iter().enumerate() {
            let location = BatchLocation {
                raft_index: i as u64 + 1,
                position: 20,
                len,
            };
            log.put_batch(&mut b, base, location);
        }
        store.write_state(b).unwrap();
    }

    #[test]
    fn locating_starts_at_the_batch_containing_the_offset() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreOptions::new(dir.path())).unwrap();
        let log = store.partition_log(9);
        // Batches [0..5), [5..10), [10..12).
        fill(&log, &store, &[(0, 100), (5, 100), (10, 100)]);
        let bases = |v: Vec<(i64, BatchLocation)>| v.iter().map(|b| b.0).collect::<Vec<_>>();
        assert_eq!(bases(log.locate(7, 12, 1 << 20).unwrap()), [5, 10]);
        assert_eq!(bases(log.locate(0, 12, 150).unwrap()), [0]);
        assert_eq!(
            bases(log.locate(0, 12, 10).unwrap()),
            [0],
            "one whole batch even when it exceeds max_bytes"
        );
        assert_eq!(bases(log.locate(3, 5, 1 << 20).unwrap()), [0]);
        assert_eq!(
            bases(log.locate_from_base(1, 12, 1 << 20).unwrap()),
            [5, 10]
        );
        assert_eq!(bases(log.locate_from_base(5, 12, 150).unwrap()), [5]);
        assert_eq!(
            bases(log.locate_from_base(11, 12, 1 << 20).unwrap()),
            Vec::<i64>::new(),
            "no batch starts at or after 11"
        );
        assert_eq!(
            bases(log.locate(12, 12, 1 << 20).unwrap()),
            Vec::<i64>::new()
        );
        assert!(store
            .partition_log(10)
            .locate(0, 100, 100)
            .unwrap()
            .is_empty());
        assert_eq!(log.location_of(5).unwrap().unwrap().raft_index, 2);
        assert_eq!(log.location_of(6).unwrap(), None);
        assert_eq!(log.dirty_bytes_end(0, 12, 150).unwrap(), Some(5));
        assert_eq!(log.dirty_bytes_end(0, 12, 200).unwrap(), Some(10));
        assert_eq!(log.dirty_bytes_end(0, 12, 300).unwrap(), None);
        assert_eq!(log.dirty_bytes_end(0, 10, 150).unwrap(), Some(5));
        assert_eq!(log.dirty_bytes_end(5, 10, 150).unwrap(), None);
        assert_eq!(
            log.dirty_bytes_end(5, 12, 10).unwrap(),
            Some(10),
            "one whole batch even when it exceeds max_bytes"
        );
    }

    #[test]
    fn meta_epochs_and_time_index_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreOptions::new(dir.path())).unwrap();
        let log = store.partition_log(3);
        assert_eq!(log.meta().unwrap(), None);
        let meta = PartitionMeta {
            next_offset: 10,
            log_start_offset: 2,
            max_timestamp: 500,
            max_timestamp_batch: 5,
        };
        let mut b = store.state_batch();
        log.put_meta(&mut b, &meta);
        log.put_epoch(&mut b, 1, 0);
        log.put_epoch(&mut b, 3, 7);
        log.put_time_index(&mut b, 100, 0);
        log.put_time_index(&mut b, 500, 5);
        store.write_state(b).unwrap();
        assert_eq!(log.meta().unwrap(), Some(meta));
        assert_eq!(log.epochs().unwrap(), [(1, 0), (3, 7)]);
        assert_eq!(log.first_batch_at_or_after(50).unwrap(), Some(0));
        assert_eq!(log.first_batch_at_or_after(101).unwrap(), Some(5));
        assert_eq!(log.first_batch_at_or_after(501).unwrap(), None);
    }

    #[test]
    fn the_head_of_the_index_is_found_and_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreOptions::new(dir.path())).unwrap();
        let log = store.partition_log(4);
        // Batches [0..5), [5..10), [10..12) of 100, 200 and 300 bytes.
        fill(&log, &store, &[(0, 100), (5, 200), (10, 300)]);
        assert_eq!(log.batch_at_or_before(7).unwrap(), Some(5));
        assert_eq!(log.batch_at_or_before(5).unwrap(), Some(5));
        assert_eq!(log.batch_at_or_before(99).unwrap(), Some(10));
        assert_eq!(store.partition_log(3).batch_at_or_before(7).unwrap(), None);
        assert_eq!(log.oldest_needed_for(12, 300).unwrap(), Some(10));
        assert_eq!(log.oldest_needed_for(12, 301).unwrap(), Some(5));
        assert_eq!(log.oldest_needed_for(12, 600).unwrap(), Some(0));
        assert_eq!(log.oldest_needed_for(12, 601).unwrap(), None);
        assert_eq!(log.oldest_needed_for(10, 1).unwrap(), Some(5));

        let mut b = store.state_batch();
        log.put_time_index(&mut b, 100, 0);
        log.put_time_index(&mut b, 300, 5);
        log.put_time_index(&mut b, 400, 10);
        store.write_state(b).unwrap();
        assert_eq!(log.time_index_below(10).unwrap(), [(100, 0), (300, 5)]);
        assert_eq!(log.time_index_below(0).unwrap(), []);

        let mut b = store.state_batch();
        log.forget_batches_below(&mut b, 10);
        log.delete_time_index(&mut b, 100, 0);
        store.write_state(b).unwrap();
        assert_eq!(log.batch_at_or_before(9).unwrap(), None);
        assert_eq!(log.location_of(10).unwrap().unwrap().len, 300);
        assert_eq!(log.first_location().unwrap().unwrap().raft_index, 3);
        assert_eq!(store.partition_log(3).first_location().unwrap(), None);
        assert_eq!(log.first_batch_at_or_after(0).unwrap(), Some(5));
    }

    #[test]
    fn cleaned_batches_live_in_state_and_go_with_the_log_start() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreOptions::new(dir.path())).unwrap();
        let log = store.partition_log(4);
        fill(&log, &store, &[(0, 100), (5, 200), (10, 300)]);
        assert_eq!(log.cleaning_state(12).unwrap(), (0, 600, Some(0)));
        let mut b = store.state_batch();
        log.put_cleaned(&mut b, 0, 77, b"zero");
        log.put_cleaned(&mut b, 5, -1, b"five!");
        store.write_state(b).unwrap();
        assert_eq!(log.cleaned(0).unwrap(), Some((77, b"zero".to_vec())));
        assert_eq!(log.cleaned(10).unwrap(), None);
        assert_eq!(log.location_of(5).unwrap(), Some(BatchLocation::cleaned(5)));
        assert_eq!(log.cleaning_state(12).unwrap(), (9, 300, Some(10)));
        assert_eq!(log.cleaning_state(10).unwrap(), (9, 0, None));
        assert_eq!(log.cleaned_through(0).unwrap(), 10);
        assert_eq!(log.cleaned_through(5).unwrap(), 10);
        assert_eq!(log.cleaned_through(10).unwrap(), 10);
        assert_eq!(log.cleaned_through(12).unwrap(), i64::MAX);
        assert_eq!(
            log.dirty_bytes_end(0, 12, 100).unwrap(),
            None,
            "cleaned bytes count for nothing"
        );
        assert_eq!(log.tombstone_expiry().unwrap(), None);
        let mut b = store.state_batch();
        log.put_tombstone_expiry(&mut b, Some(-5));
        store.write_state(b).unwrap();
        assert_eq!(log.tombstone_expiry().unwrap(), Some(-5));
        let mut b = store.state_batch();
        log.put_tombstone_expiry(&mut b, None);
        store.write_state(b).unwrap();
        assert_eq!(log.tombstone_expiry().unwrap(), None);
        assert_eq!(
            log.first_location().unwrap().unwrap().raft_index,
            3,
            "the Raft log is read from the first batch not cleaned"
        );
        let mut b = store.state_batch();
        log.forget_batches_below(&mut b, 5);
        store.write_state(b).unwrap();
        assert_eq!(log.cleaned(0).unwrap(), None);
        assert_eq!(log.cleaned(5).unwrap(), Some((-1, b"five!".to_vec())));
    }

    #[test]
    fn unflushed_state_survives_a_clean_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(&StoreOptions::new(dir.path())).unwrap();
            fill(&store.partition_log(1), &store, &[(0, 10)]);
        }
        let store = Store::open(&StoreOptions::new(dir.path())).unwrap();
        assert_eq!(store.partition_log(1).locate(0, 1, 100).unwrap().len(), 1);
    }
}
