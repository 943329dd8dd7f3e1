//! A partition: the state machine that gives committed record batches their offsets, and
//! the reader that serves them.
//!
//! The batches stay in the Raft log entries that carried them (the Raft log is the
//! partition log); applying an entry only records, for each batch, its offsets and where
//! it sits in the entry. Offsets are assigned here, when an entry is applied, never when it
//! is proposed: every replica applies the same entries in the same order and so assigns
//! the same offsets, and Raft's own entries (blank, membership) take none. The term of the
//! entry is the batch's partition leader epoch. The reader stamps both into the batch
//! header as it reads the batch out (into a copy of the header where the rest is shared).

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use strand_protocol::batch::{patch_header, PATCHED_HEADER_BYTES};
use strand_storage::{
    BatchLocation, PartitionLog, PartitionMeta, RaftLog, StateBatch, StorageError,
};
use tokio::sync::watch;

use crate::codec;
use crate::kafka::compaction;
use crate::kafka::producer_state::{self, ProducerBatch, ProducerEntry, Producers, Verdict};
use crate::state_machine::Machine;
use crate::types::{AppendBatches, BatchSummary, Command, LogId, Rejection, Response};

/// What readers of a partition need to know, published after every apply round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionStatus {
    /// Everything below is committed and readable (the log end offset of applied data).
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

/// Batches this big or bigger are sent from where storage read them (see
/// [`PartitionReader::read_located_pieces`]); smaller ones cost less to copy than to send
/// as pieces of their own.
const SHARE_FROM: usize = 16 * 1024;

/// Kafka leader epochs are `i32`; Raft terms beyond that range would be a cluster that has
/// held two billion elections.
fn epoch_of(term: u64) -> i32 {
    i32::try_from(term).unwrap_or(i32::MAX)
}

pub struct PartitionMachine {
    log: PartitionLog,
    /// Reads stored batches for the log cleaner.
    reader: PartitionReader,
    meta: PartitionMeta,
    last_epoch: Option<i32>,
    meta_changed: bool,
    producers: Producers,
    status: watch::Sender<PartitionStatus>,
    /// Batches and time index entries put in the current round: not yet in the store, so
    /// moving the log start consults them as well as what is stored.
    round_batches: Vec<i64>,
    round_time_index: Vec<(i64, i64)>,
    /// The Raft index of the entry holding the first batch kept (`None`: no batch), the
    /// oldest entry this partition reads; `first_entry_moved` once the log start moved
    /// past it, until it is looked up again after the round is stored.
    first_entry: Option<u64>,
    first_entry_moved: bool,
    /// See [`crate::RaftTuning::compact_by_hash`].
    compact_by_hash: bool,
}

impl PartitionMachine {
    /// Loads the partition's stored state.
    pub fn open(
        reader: PartitionReader,
    ) -> Result<(PartitionMachine, watch::Receiver<PartitionStatus>), strand_storage::StorageError>
    {
        let mut machine = PartitionMachine {
            log: reader.index().clone(),
            reader,
            meta: PartitionMeta::default(),
            last_epoch: None,
            meta_changed: false,
            producers: Producers::default(),
            status: watch::channel(PartitionStatus {
                high_watermark: 0,
                log_start_offset: 0,
            })
            .0,
            round_batches: Vec::new(),
            round_time_index: Vec::new(),
            first_entry: None,
            first_entry_moved: false,
            compact_by_hash: false,
        };
        machine.reload()?;
        let rx = machine.status.subscribe();
        Ok((machine, rx))
    }

    /// Unsafe (see [`crate::RaftTuning::compact_by_hash`]).
    pub fn compact_by_hash(&mut self, on: bool) {
        self.compact_by_hash = on;
    }

    /// Appends the batches; `now` is the leader's clock for a timed append, which idempotent
    /// producers' state keeps instead of the batches' own times.
    fn append(
        &mut self,
        log_id: &LogId,
        append: AppendBatches,
        now: Option<i64>,
        batch: &mut StateBatch,
    ) -> Response {
        let total: usize = append.batches.iter().map(|b| b.len as usize).sum();
        if total != append.data.len() || append.batches.is_empty() {
            return Response::Rejected(Rejection::InvalidAppend);
        }

        // Judge every idempotent batch first: the command is applied whole or not at all.
        let mut staged: HashMap<i64, ProducerEntry> = HashMap::new();
        let mut duplicate_of = None;
        let mut offset = self.meta.next_offset;
        for summary in &append.batches {
            if summary.producer_id >= 0 {
                let batch = producer_batch(summary, now);
                let known = staged
                    .get(&batch.producer_id)
                    .or_else(|| self.producers.entries.get(&batch.producer_id));
                match producer_state::check(known, &batch) {
                    Verdict::Append => {
                        let entry = producer_state::record(known, &batch, offset);
                        staged.insert(batch.producer_id, entry);
                    }
                    Verdict::Duplicate { base_offset } => {
                        duplicate_of.get_or_insert(base_offset);
                    }
                    Verdict::Reject(why) => return Response::Rejected(why),
                }
            }
            offset += summary.last_offset_delta as i64 + 1;
        }
        if let Some(base_offset) = duplicate_of {
            // A retry: answer with where it was stored. A retry mixed with new batches
            // cannot come from a well-behaved producer.
            return if staged.is_empty() {
                Response::Appended {
                    base_offset,
                    log_start_offset: self.meta.log_start_offset,
                }
            } else {
                Response::Rejected(Rejection::OutOfOrderSequence)
            };
        }
        for (id, entry) in staged {
            self.producers.entries.insert(id, entry);
            self.producers.changed.push(id);
        }

        let base_offset = self.meta.next_offset;
        self.first_entry.get_or_insert(log_id.index);
        let mut position = codec::append_data_start(append.batches.len());
        for summary in &append.batches {
            let offset = self.meta.next_offset;
            let location = BatchLocation {
                raft_index: log_id.index,
                position: position as u32,
                len: summary.len,
            };
            position += summary.len as usize;
            self.log.put_batch(batch, offset, location);
            self.round_batches.push(offset);
            if summary.max_timestamp > self.meta.max_timestamp {
                self.log
                    .put_time_index(batch, summary.max_timestamp, offset);
                self.round_time_index.push((summary.max_timestamp, offset));
                self.meta.max_timestamp = summary.max_timestamp;
                self.meta.max_timestamp_batch = offset;
            }
            self.meta.next_offset += summary.last_offset_delta as i64 + 1;
        }
        self.meta_changed = true;
        Response::Appended {
            base_offset,
            log_start_offset: self.meta.log_start_offset,
        }
    }

    /// Moves the log start up to `offset` (at most the log end) and forgets the batches
    /// wholly below it. The batch holding the new start stays whole: a fetch from the start
    /// gets that batch, as Kafka serves it. The time index keeps, for the first batch
    /// kept, the largest timestamp of those forgotten, so it still answers "the first
    /// batch whose records reach time t" from the new start on.
    fn advance_log_start(
        &mut self,
        offset: i64,
        batch: &mut StateBatch,
    ) -> Result<Response, StorageError> {
        let start = offset.min(self.meta.next_offset);
        if start > self.meta.log_start_offset {
            let first_kept = if start < self.meta.next_offset {
                let stored = self.log.batch_at_or_before(start)?;
                let in_round = self.round_batches.iter().copied().filter(|b| *b <= start);
                stored.into_iter().chain(in_round).max().unwrap_or(start)
            } else {
                start
            };
            self.log.forget_batches_below(batch, first_kept);
            let mut forgotten = self.log.time_index_below(first_kept)?;
            forgotten.extend(
                self.round_time_index
                    .iter()
                    .filter(|(_, b)| *b < first_kept),
            );
            for &(ts, base) in &forgotten {
                self.log.delete_time_index(batch, ts, base);
            }
            if let Some(&(ts, _)) = forgotten.iter().max() {
                self.log.put_time_index(batch, ts, first_kept);
                self.round_time_index.push((ts, first_kept));
            }
            if self.meta.max_timestamp_batch < first_kept {
                // Which batch now holds the largest timestamp is unknown without reading
                // them all; ListOffsets answers MAX_TIMESTAMP as for an empty log until a
                // batch with a larger timestamp comes.
                self.meta.max_timestamp_batch = -1;
            }
            self.meta.log_start_offset = start;
            self.meta_changed = true;
            self.first_entry_moved = true;
        }
        Ok(Response::LogStartAdvanced {
            log_start_offset: self.meta.log_start_offset,
        })
    }
}

impl PartitionMachine {
    /// A log cleaner pass (see [`compaction`]) over the batches from the log start below
    /// `upto`. The round before it is stored (see [`Machine::reads_stored_state`]), so the
    /// pass reads every batch it covers from the store.
    fn compact(
        &mut self,
        upto: i64,
        now: i64,
        delete_retention_ms: i64,
        batch: &mut StateBatch,
    ) -> Result<Response, StorageError> {
        let pass = compaction::Pass {
            start: self.meta.log_start_offset,
            upto: upto.min(self.meta.next_offset),
            now,
            delete_retention_ms,
            by_hash: self.compact_by_hash,
        };
        let done = compaction::clean(&self.reader, pass, batch)?;
        // The entries of the batches cleaned are no longer read.
        self.first_entry_moved = true;
        if self.meta.max_timestamp_batch < done.covered_upto {
            // The record with the largest timestamp may be gone, as after a deletion.
            self.meta.max_timestamp_batch = -1;
            self.meta_changed = true;
        }
        Ok(Response::Compacted {
            bytes_before: done.bytes_before,
            bytes_after: done.bytes_after,
        })
    }
}

fn producer_batch(summary: &BatchSummary, now: Option<i64>) -> ProducerBatch {
    ProducerBatch {
        producer_id: summary.producer_id,
        epoch: summary.producer_epoch,
        first_seq: summary.base_sequence,
        last_offset_delta: summary.last_offset_delta,
        time: now.unwrap_or(summary.max_timestamp),
        leader_clock: now.is_some(),
    }
}

impl Machine for PartitionMachine {
    /// A new term starts a new leader epoch at the current log end (Kafka records an epoch
    /// when its leader takes over, even before it writes).
    fn observe_term(&mut self, term: u64, batch: &mut StateBatch) {
        let epoch = epoch_of(term);
        if self.last_epoch.is_none_or(|last| epoch > last) {
            self.log
                .put_epoch(batch, epoch as u32, self.meta.next_offset);
            self.last_epoch = Some(epoch);
        }
    }

    fn apply(
        &mut self,
        log_id: &LogId,
        command: Command,
        batch: &mut StateBatch,
    ) -> Result<Response, StorageError> {
        Ok(match command {
            Command::Append(append) => self.append(log_id, append, None, batch),
            Command::AppendAt { append, now } => self.append(log_id, append, Some(now), batch),
            Command::ExpireProducers { before } => Response::ProducersExpired {
                count: self.producers.expire(before) as u32,
            },
            Command::AdvanceLogStart { offset } => self.advance_log_start(offset, batch)?,
            Command::Compact {
                upto,
                now,
                delete_retention_ms,
            } => self.compact(upto, now, delete_retention_ms, batch)?,
            Command::Controller(_) => Response::Rejected(Rejection::WrongGroup),
        })
    }

    fn reads_stored_state(&self, command: &Command) -> bool {
        matches!(command, Command::Compact { .. })
    }

    fn finish_round(&mut self, batch: &mut StateBatch) {
        self.round_batches.clear();
        self.round_time_index.clear();
        if self.meta_changed {
            self.log.put_meta(batch, &self.meta);
            self.meta_changed = false;
        }
        for id in self.producers.changed.drain(..) {
            if let Some(entry) = self.producers.entries.get(&id) {
                self.log.put_producer(batch, id, &codec::encode(entry));
            }
        }
        for id in self.producers.removed.drain(..) {
            self.log.delete_producer(batch, id);
        }
    }

    fn publish(&mut self) {
        if self.first_entry_moved {
            // Until it is found, the entry that held the first batch before is as safe a
            // floor as any.
            if let Ok(first) = self.log.first_location() {
                self.first_entry = first.map(|l| l.raft_index);
                self.first_entry_moved = false;
            }
        }
        self.status.send_replace(PartitionStatus {
            high_watermark: self.meta.next_offset,
            log_start_offset: self.meta.log_start_offset,
        });
    }

    fn keep_from(&self, applied: u64) -> u64 {
        self.first_entry.unwrap_or(applied + 1)
    }

    fn reload(&mut self) -> Result<(), strand_storage::StorageError> {
        self.round_batches.clear();
        self.round_time_index.clear();
        self.first_entry = self.log.first_location()?.map(|l| l.raft_index);
        self.first_entry_moved = false;
        self.meta = self.log.meta()?.unwrap_or_default();
        self.last_epoch = self.log.epochs()?.last().map(|(e, _)| *e as i32);
        self.producers = Producers::default();
        for (id, bytes) in self.log.producers()? {
            let entry = codec::decode(&bytes).map_err(|e| StorageError::Corrupt {
                what: "producer state",
                detail: e.to_string(),
            })?;
            self.producers.entries.insert(id, entry);
        }
        self.publish();
        Ok(())
    }
}

/// A record batch as served: its base offset and its bytes, header stamped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBatch {
    pub base_offset: i64,
    pub bytes: Bytes,
}

/// Batches read for a fetch, back to back in one buffer as the response carries them.
#[derive(Debug, Default)]
pub struct ReadBatches {
    pub bytes: Bytes,
    /// Each batch's base offset and where it lies in `bytes`.
    pub batches: Vec<(i64, std::ops::Range<usize>)>,
}

impl ReadBatches {
    /// Each batch on its own (cheap: they share the buffer).
    pub fn iter(&self) -> impl Iterator<Item = StoredBatch> + '_ {
        self.batches.iter().map(|(base_offset, range)| StoredBatch {
            base_offset: *base_offset,
            bytes: self.bytes.slice(range.clone()),
        })
    }
}

/// Reads a partition's committed batches out of its Raft log, through its index.
#[derive(Clone)]
pub struct PartitionReader {
    index: PartitionLog,
    entries: RaftLog,
}

impl PartitionReader {
    pub fn new(index: PartitionLog, entries: RaftLog) -> PartitionReader {
        PartitionReader { index, entries }
    }

    /// The partition's idempotent producers, as last applied.
    pub fn producers(&self) -> Result<Vec<(i64, ProducerEntry)>, StorageError> {
        self.index
            .producers()?
            .into_iter()
            .map(|(id, bytes)| {
                codec::decode(&bytes)
                    .map(|e| (id, e))
                    .map_err(|e| StorageError::Corrupt {
                        what: "producer state",
                        detail: e.to_string(),
                    })
            })
            .collect()
    }

    /// The partition's index (meta, epochs, time index).
    pub fn index(&self) -> &PartitionLog {
        &self.index
    }

    /// Batches holding offsets from `from` up to (not including) `end`, within `max_bytes`
    /// but at least one (see [`PartitionLog::locate`]).
    pub fn read(&self, from: i64, end: i64, max_bytes: usize) -> Result<ReadBatches, StorageError> {
        self.read_located(&self.locate(from, end, max_bytes)?)
    }

    /// Where the batches [`PartitionReader::read`] would read are, by base offset: their
    /// lengths, without reading them.
    pub fn locate(
        &self,
        from: i64,
        end: i64,
        max_bytes: usize,
    ) -> Result<Vec<(i64, BatchLocation)>, StorageError> {
        self.index.locate(from, end, max_bytes)
    }

    /// Reads batches found by [`PartitionReader::locate`]. Committed batches never change,
    /// so they may be read any time after being located (unless retention removed them
    /// meanwhile, which is an error).
    pub fn read_located(
        &self,
        located: &[(i64, BatchLocation)],
    ) -> Result<ReadBatches, StorageError> {
        // One buffer for the whole answer: each batch is copied once, out of the entry
        // RocksDB read, straight into it, and stamped there.
        let total: usize = located.iter().map(|(_, l)| l.len as usize).sum();
        let mut out = BytesMut::with_capacity(total);
        let mut batches = Vec::with_capacity(located.len());
        self.for_each_located(located, |base_offset, piece, epoch| {
            let start = out.len();
            out.extend_from_slice(&piece);
            patch_header(&mut out[start..], base_offset, epoch);
            batches.push((base_offset, start..out.len()));
            Ok(())
        })?;
        Ok(ReadBatches {
            bytes: out.freeze(),
            batches,
        })
    }

    /// The batches [`PartitionReader::read_located`] reads, as pieces to write out one after
    /// the other, with as few copies as makes sense: a batch of [`SHARE_FROM`] bytes or
    /// more goes as its stamped header (copied) and the rest of it, shared with the entry
    /// RocksDB read it into; smaller ones are copied, stamped, into a buffer they share.
    pub fn read_located_pieces(
        &self,
        located: &[(i64, BatchLocation)],
    ) -> Result<Vec<Bytes>, StorageError> {
        // The bytes of a batch copied: all of a small one, the stamped header of a big one.
        let copied_of = |len: usize| {
            if len < SHARE_FROM {
                len
            } else {
                PATCHED_HEADER_BYTES
            }
        };
        let copied: usize = located.iter().map(|(_, l)| copied_of(l.len as usize)).sum();
        let mut small = BytesMut::with_capacity(copied);
        let mut pieces = Vec::new();
        self.for_each_located(located, |base_offset, piece, epoch| {
            let at = small.len();
            let copied = copied_of(piece.len());
            small.extend_from_slice(&piece[..copied]);
            patch_header(&mut small[at..], base_offset, epoch);
            if copied < piece.len() {
                pieces.push(small.split().freeze());
                pieces.push(piece.slice(copied..));
            }
            Ok(())
        })?;
        if !small.is_empty() {
            pieces.push(small.freeze());
        }
        Ok(pieces)
    }

    /// Reads the entries holding `located` (each once) and calls `each` with every batch,
    /// in order: its bytes (shared with what RocksDB read) and its leader epoch. A cleaned
    /// batch is read from where the cleaner stored it, with the epoch it was stamped with.
    fn for_each_located(
        &self,
        located: &[(i64, BatchLocation)],
        mut each: impl FnMut(i64, Bytes, i32) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        let mut wanted: Vec<u64> = located
            .iter()
            .filter(|(_, l)| !l.is_cleaned())
            .map(|(_, l)| l.raft_index)
            .collect();
        wanted.dedup();
        let entries = self.entries.get_many(&wanted)?;
        let mut next = wanted.iter().zip(entries.iter());
        let mut current = None;
        for &(base_offset, location) in located {
            if location.is_cleaned() {
                let (_, bytes) = self
                    .index
                    .cleaned(base_offset)?
                    .ok_or_else(|| missing(base_offset, location))?;
                let epoch =
                    epoch_stamped_in(&bytes).ok_or_else(|| missing(base_offset, location))?;
                each(base_offset, Bytes::from(bytes), epoch)?;
                continue;
            }
            while current.is_none_or(|(index, _): (&u64, _)| *index != location.raft_index) {
                current = Some(next.next().ok_or_else(|| missing(base_offset, location))?);
            }
            let entry = current
                .and_then(|(_, e)| e.as_ref())
                .ok_or_else(|| missing(base_offset, location))?;
            let (range, epoch) = batch_in(entry, location)?;
            each(base_offset, entry.slice(range), epoch)?;
        }
        Ok(())
    }

    /// The batches of entries after `applied` (appended here, not yet committed), numbered
    /// from `next_offset` as if every one will commit, and the offset after them. Serving them breaks the guarantee
    /// that a read never sees what may yet vanish: only the Jepsen self-check's unsafe
    /// read mode calls this, to show the harness catches it.
    #[cfg(feature = "unsafe-modes")]
    pub fn read_uncommitted(
        &self,
        applied: u64,
        mut next_offset: i64,
    ) -> Result<(Vec<StoredBatch>, i64), StorageError> {
        let mut batches = Vec::new();
        for (index, stored) in self.entries.read(applied + 1, u64::MAX)? {
            let entry = codec::decode_entry(stored.clone()).map_err(|e| StorageError::Corrupt {
                what: "raft entry",
                detail: format!("entry {index}: {e}"),
            })?;
            let openraft::EntryPayload::Normal(command) = entry.payload else {
                continue;
            };
            if let Some(append) = command.append() {
                // Where applying the entry would locate each batch.
                let mut position = codec::append_data_start(append.batches.len());
                for summary in &append.batches {
                    let location = BatchLocation {
                        raft_index: index,
                        position: position as u32,
                        len: summary.len,
                    };
                    position += summary.len as usize;
                    batches.push(StoredBatch {
                        base_offset: next_offset,
                        bytes: stamped(&stored, next_offset, location)?,
                    });
                    next_offset += summary.last_offset_delta as i64 + 1;
                }
            }
        }
        Ok((batches, next_offset))
    }

    /// The batch whose base offset is exactly `base_offset`.
    pub fn batch_at(&self, base_offset: i64) -> Result<Option<Bytes>, StorageError> {
        let Some(location) = self.index.location_of(base_offset)? else {
            return Ok(None);
        };
        let read = self.read_located(&[(base_offset, location)])?;
        Ok(Some(read.bytes))
    }
}

fn missing(base_offset: i64, location: BatchLocation) -> StorageError {
    let detail = if location.is_cleaned() {
        format!("the cleaned batch at offset {base_offset} is missing")
    } else {
        format!("Raft entry {} is missing", location.raft_index)
    };
    StorageError::Corrupt {
        what: "partition index",
        detail,
    }
}

/// The partition leader epoch in a batch's header (stamped when it was first read).
fn epoch_stamped_in(batch: &[u8]) -> Option<i32> {
    (batch.len() >= PATCHED_HEADER_BYTES)
        .then(|| i32::from_be_bytes(batch[12..16].try_into().expect("4 bytes")))
}

/// Copies a batch out of its stored entry and stamps its base offset and leader epoch.
#[cfg(feature = "unsafe-modes")]
fn stamped(entry: &[u8], base_offset: i64, location: BatchLocation) -> Result<Bytes, StorageError> {
    let (range, epoch) = batch_in(entry, location)?;
    let mut batch = BytesMut::from(&entry[range]);
    patch_header(&mut batch, base_offset, epoch);
    Ok(batch.freeze())
}

/// Where a located batch lies in its stored entry, and its leader epoch (the entry's term).
fn batch_in(
    entry: &[u8],
    location: BatchLocation,
) -> Result<(std::ops::Range<usize>, i32), StorageError> {
    let start = location.position as usize;
    let range = start..start + location.len as usize;
    match codec::entry_term(entry) {
        Some(term) if range.end <= entry.len() && range.len() >= PATCHED_HEADER_BYTES => {
            Ok((range, epoch_of(term)))
        }
        _ => Err(StorageError::Corrupt {
            what: "partition index",
            detail: format!("{location:?} is outside its entry of {} bytes", entry.len()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::BatchSummary;
    use bytes::Bytes;
    use openraft::CommittedLeaderId;
    use strand_storage::{Store, StoreOptions};

    fn fake_batch(records: i32, max_ts: i64) -> (Vec<u8>, BatchSummary) {
        let mut b = vec![0u8; 61 + records as usize];
        b[23..27].copy_from_slice(&(records - 1).to_be_bytes());
        let summary = BatchSummary {
            len: b.len() as u32,
            last_offset_delta: records - 1,
            max_timestamp: max_ts,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
        };
        let last = b.len() - 1;
        b[last] = 0xAB;
        (b, summary)
    }

    fn append_of(batches: &[(Vec<u8>, BatchSummary)]) -> Command {
        Command::Append(AppendBatches {
            data: Bytes::from(
                batches
                    .iter()
                    .flat_map(|(b, _)| b.clone())
                    .collect::<Vec<_>>(),
            ),
            batches: batches.iter().map(|(_, s)| *s).collect(),
            ..AppendBatches::default()
        })
    }

    fn log_id(term: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    /// Appends the command to group 1's Raft log, as openraft would, then applies it.
    fn apply(m: &mut PartitionMachine, store: &Store, id: LogId, cmd: Command) -> Response {
        let entry = crate::types::Entry {
            log_id: id,
            payload: openraft::EntryPayload::Normal(cmd.clone()),
        };
        let stored = codec::encode_entry(&entry);
        store
            .raft_log(1)
            .append([(id.index, stored.as_slice())])
            .unwrap();
        let mut wb = store.state_batch();
        m.observe_term(id.leader_id.term, &mut wb);
        let r = m.apply(&id, cmd, &mut wb).unwrap();
        m.finish_round(&mut wb);
        store.write_state(wb).unwrap();
        m.publish();
        r
    }

    #[test]
    fn offsets_are_contiguous_and_batches_stamped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreOptions::new(dir.path())).unwrap();
        let (mut m, status) = PartitionMachine::open(PartitionReader::new(
            store.partition_log(1),
            store.raft_log(1),
        ))
        .unwrap();
        let r1 = apply(
            &mut m,
            &store,
            log_id(2, 1),
            append_of(&[fake_batch(3, 100)]),
        );
        let r2 = apply(
            &mut m,
            &store,
            log_id(3, 2),
            append_of(&[fake_batch(2, 90), fake_batch(1, 200)]),
        );
        assert_eq!(
            (r1, r2),
            (
                Response::Appended {
                    base_offset: 0,
                    log_start_offset: 0
                },
                Response::Appended {
                    base_offset: 3,
                    log_start_offset: 0
                }
            )
        );
        assert_eq!(status.borrow().high_watermark, 6);
        let reader = PartitionReader::new(store.partition_log(1), store.raft_log(1));
        let read = reader.read(0, 6, 1 << 20).unwrap();
        let stored: Vec<StoredBatch> = read.iter().collect();
        assert_eq!(
            read.bytes.len(),
            stored.iter().map(|b| b.bytes.len()).sum::<usize>()
        );
        let bases: Vec<i64> = stored.iter().map(|b| b.base_offset).collect();
        assert_eq!(bases, [0, 3, 5]);
        for b in &stored {
            assert_eq!(
                i64::from_be_bytes(b.bytes[0..8].try_into().unwrap()),
                b.base_offset
            );
        }
        let epoch = |b: &Bytes| i32::from_be_bytes(b[12..16].try_into().unwrap());
        assert_eq!(epoch(&stored[0].bytes), 2);
        assert_eq!(epoch(&stored[1].bytes), 3);
        let log = store.partition_log(1);
        assert_eq!(log.epochs().unwrap(), [(2, 0), (3, 3)]);
        // The batch at offset 3 has an older max timestamp (90) and is not indexed: the
        // first batch reaching 95 or 100 is the one at 0, the first reaching 101 is at 5.
        assert_eq!(log.first_batch_at_or_after(95).unwrap(), Some(0));
        assert_eq!(log.first_batch_at_or_after(100).unwrap(), Some(0));
        assert_eq!(log.first_batch_at_or_after(101).unwrap(), Some(5));
    }

    /// A timed append stamps its producers with the leader's clock, replacing whatever
    /// time they had; an untimed one with the batch's own create time. Both survive a
    /// reopen.
    #[test]
    fn producer_state_keeps_the_leaders_clock_when_the_append_carries_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreOptions::new(dir.path())).unwrap();
        let reader = || PartitionReader::new(store.partition_log(1), store.raft_log(1));
        let (mut m, _) = PartitionMachine::open(reader()).unwrap();
        let from = |producer_id, base_sequence, max_ts| {
            let (b, summary) = fake_batch(1, max_ts);
            let summary = BatchSummary {
                producer_id,
                producer_epoch: 0,
                base_sequence,
                ..summary
            };
            let Command::Append(append) = append_of(&[(b, summary)]) else {
                unreachable!()
            };
            append
        };
        let timed = |append, now| Command::AppendAt { append, now };
        let commands = [
            Command::Append(from(7, 0, 100)),
            Command::Append(from(8, 0, i64::MAX)),
            timed(from(8, 1, i64::MAX), 5_000),
            timed(from(9, 0, i64::MAX), 6_000),
        ];
        for (index, command) in (1..).zip(commands) {
            apply(&mut m, &store, log_id(1, index), command);
        }
        drop(m);
        let (m, _) = PartitionMachine::open(reader()).unwrap();
        let times: Vec<(i64, i64)> = m
            .reader
            .producers()
            .unwrap()
            .into_iter()
            .map(|(id, e)| (id, e.last_timestamp))
            .collect();
        assert_eq!(times, [(7, 100), (8, 5_000), (9, 6_000)]);
    }

    /// Read in pieces, big batches shared with the entries read and small ones copied, the
    /// bytes are those of the copying read: stamped the same, in the same order.
    #[test]
    fn pieces_make_the_same_bytes_as_the_copying_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreOptions::new(dir.path())).unwrap();
        let (mut m, _) = PartitionMachine::open(PartitionReader::new(
            store.partition_log(1),
            store.raft_log(1),
        ))
        .unwrap();
        let big = 2 * SHARE_FROM as i32;
        apply(
            &mut m,
            &store,
            log_id(2, 1),
            append_of(&[fake_batch(big, 1)]),
        );
        let mixed = [fake_batch(3, 2), fake_batch(big, 3), fake_batch(1, 4)];
        apply(&mut m, &store, log_id(4, 2), append_of(&mixed));
        apply(&mut m, &store, log_id(4, 3), append_of(&[fake_batch(2, 5)]));
        let reader = PartitionReader::new(store.partition_log(1), store.raft_log(1));
        let end = 2 * big as i64 + 6;
        let located = reader.locate(0, end, usize::MAX).unwrap();
        assert_eq!(located.len(), 5);
        let copied = reader.read_located(&located).unwrap().bytes;
        let pieces = reader.read_located_pieces(&located).unwrap();
        assert_eq!(pieces.concat(), copied);
        assert!(
            pieces
                .iter()
                .any(|p| p.len() == big as usize + 61 - PATCHED_HEADER_BYTES),
            "a big batch's body is a piece of its own: {:?}",
            pieces.iter().map(Bytes::len).collect::<Vec<_>>()
        );
        // From the middle of an entry, the located batches only.
        let located = reader.locate(big as i64 + 3, end, usize::MAX).unwrap();
        assert_eq!(
            reader.read_located_pieces(&located).unwrap().concat(),
            reader.read_located(&located).unwrap().bytes
        );
    }

    #[test]
    fn state_reloads_after_reopen_and_bad_appends_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreOptions::new(dir.path())).unwrap();
        let (mut m, _) = PartitionMachine::open(PartitionReader::new(
            store.partition_log(1),
            store.raft_log(1),
        ))
        .unwrap();
        apply(&mut m, &store, log_id(1, 1), append_of(&[fake_batch(5, 1)]));
        let (b, mut s) = fake_batch(1, 1);
        s.len += 1;
        let bad = apply(&mut m, &store, log_id(1, 2), append_of(&[(b, s)]));
        assert_eq!(bad, Response::Rejected(Rejection::InvalidAppend));
        let (_, status) = PartitionMachine::open(PartitionReader::new(
            store.partition_log(1),
            store.raft_log(1),
        ))
        .unwrap();
        assert_eq!(status.borrow().high_watermark, 5);
    }

    /// A step of the model test: appends and log start moves, several to a round.
    #[derive(Debug, Clone)]
    enum Step {
        /// A batch of `records` records whose largest timestamp is `ts`.
        Append { records: i32, ts: i64 },
        /// Move the log start `ahead` offsets past where it is (perhaps past the log end).
        Advance { ahead: i64 },
    }

    /// What the partition must look like: its batches (base, records, max timestamp),
    /// log start and end, and the largest timestamp of the batches forgotten.
    #[derive(Debug, Default)]
    struct Model {
        batches: Vec<(i64, i64, i64)>,
        start: i64,
        end: i64,
    }

    impl Model {
        fn step(&mut self, step: &Step) {
            match *step {
                Step::Append { records, ts } => {
                    self.batches.push((self.end, records as i64, ts));
                    self.end += records as i64;
                }
                Step::Advance { ahead } => {
                    self.start = (self.start + ahead).min(self.end).max(self.start);
                }
            }
        }

        /// The batches holding offsets at or after the log start.
        fn kept(&self) -> Vec<i64> {
            self.batches
                .iter()
                .filter(|(base, n, _)| base + n > self.start)
                .map(|b| b.0)
                .collect()
        }

        /// The first kept batch whose records, with all before it, reach time `t`.
        fn first_reaching(&self, t: i64) -> Option<i64> {
            let mut running = i64::MIN;
            for &(base, n, ts) in &self.batches {
                running = running.max(ts);
                if base + n > self.start && running >= t {
                    return Some(base);
                }
            }
            None
        }
    }

    fn step_strategy() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![
            3 => (1..5i32, 0..100i64).prop_map(|(records, ts)| Step::Append { records, ts }),
            1 => (0..12i64).prop_map(|ahead| Step::Advance { ahead }),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Random appends and log start moves, some in the same apply round, with reopens
        /// in between, against a model: the log start and end, the batches still indexed
        /// (nothing wholly below the start), reads from the start and the time index.
        #[test]
        fn moving_the_log_start_matches_the_model(
            rounds in proptest::collection::vec(
                (proptest::collection::vec(step_strategy(), 1..4), proptest::bool::ANY),
                1..25,
            )
        ) {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(&StoreOptions::new(dir.path())).unwrap();
            let (mut m, mut status) = PartitionMachine::open(PartitionReader::new(store.partition_log(1), store.raft_log(1))).unwrap();
            let mut model = Model::default();
            let mut index = 0;
            for (steps, reopen) in rounds {
                let mut wb = store.state_batch();
                for step in &steps {
                    let cmd = match *step {
                        Step::Append { records, ts } => append_of(&[fake_batch(records, ts)]),
                        Step::Advance { ahead } => Command::AdvanceLogStart {
                            offset: model.start + ahead,
                        },
                    };
                    model.step(step);
                    index += 1;
                    let id = log_id(1, index);
                    let entry = crate::types::Entry {
                        log_id: id,
                        payload: openraft::EntryPayload::Normal(cmd.clone()),
                    };
                    store
                        .raft_log(1)
                        .append([(index, codec::encode_entry(&entry).as_slice())])
                        .unwrap();
                    m.observe_term(1, &mut wb);
                    m.apply(&id, cmd, &mut wb).unwrap();
                }
                m.finish_round(&mut wb);
                store.write_state(wb).unwrap();
                m.publish();
                if reopen {
                    (m, status) = PartitionMachine::open(PartitionReader::new(store.partition_log(1), store.raft_log(1))).unwrap();
                }

                let now = *status.borrow();
                proptest::prop_assert_eq!(
                    (now.log_start_offset, now.high_watermark),
                    (model.start, model.end)
                );
                let reader = PartitionReader::new(store.partition_log(1), store.raft_log(1));
                let indexed: Vec<i64> = reader
                    .locate(0, model.end, usize::MAX)
                    .unwrap()
                    .iter()
                    .map(|b| b.0)
                    .collect();
                proptest::prop_assert_eq!(&indexed, &model.kept());
                let read: Vec<i64> = reader
                    .read(model.start, model.end, usize::MAX)
                    .unwrap()
                    .iter()
                    .map(|b| b.base_offset)
                    .collect();
                proptest::prop_assert_eq!(&read, &model.kept());
                for t in [0, 10, 33, 50, 77, 99, 100] {
                    let found = store
                        .partition_log(1)
                        .first_batch_at_or_after(t)
                        .unwrap()
                        .filter(|b| *b < model.end);
                    proptest::prop_assert_eq!(found, model.first_reaching(t), "t = {}", t);
                }
            }
        }
    }
}
