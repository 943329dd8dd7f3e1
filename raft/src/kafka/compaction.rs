//! Log compaction as a partition's state machine applies it (Kafka's log cleaner, made a
//! replicated decision).
//!
//! The leader chooses what to clean (the batches below `upto`) and the clock (`now`) and
//! proposes them through Raft; each replica then cleans the same batches with the same
//! inputs and so stores the same bytes. A pass first reads the dirty batches (not cleaned
//! before) for the offset of each key's last record among them, then rebuilds every batch
//! with the records that stay, the dirty ones from that first read. Batches cleaned before
//! hold each key at most once, so a record of theirs goes only when a dirty batch has a
//! later record of its key, and the key map holds the dirty section's keys alone, as
//! Kafka's offset map does. Every batch the pass covers ends up stored in the partition's
//! state as a cleaned batch (see [`strand_storage::PartitionLog::put_cleaned`]), so the
//! Raft entries that held them can be purged. A batch whose records cannot be read is kept
//! whole, as it is.
//!
//! A tombstone stays for `delete.retention.ms` after the pass that first cleaned it (the
//! batch's delete horizon, as Kafka's KIP-534), so consumers that read the old value also
//! see the delete. Each pass stores the earliest horizon among the batches it kept a
//! tombstone in ([`strand_storage::PartitionLog::tombstone_expiry`]), so the leader knows
//! when a pass is due with nothing new written.

use std::borrow::Cow;
use std::collections::HashMap;

use bytes::Bytes;
use strand_protocol::compaction::{clean_batch, for_each_keyed_record, Cleaned, KeyedRecord};
use strand_protocol::records::MAX_INFLATED_BATCH_BYTES;
use strand_storage::{BatchLocation, StateBatch, StorageError};

use super::partition::PartitionReader;

/// Batches read at once.
const READ_CHUNK: usize = 256;

/// The inputs of one cleaning pass, decided by the leader.
#[derive(Debug, Clone, Copy)]
pub struct Pass {
    /// The log start: batches wholly before it are gone already.
    pub start: i64,
    /// Dirty batches below it are cleaned; batches cleaned before are covered wherever
    /// they are.
    pub upto: i64,
    pub now: i64,
    pub delete_retention_ms: i64,
    /// Unsafe (see [`crate::RaftTuning::compact_by_hash`]).
    pub by_hash: bool,
}

impl Pass {
    /// What the pass tells keys apart by: the key itself, or in the unsafe mode one byte.
    fn identity<'k>(&self, key: &'k [u8]) -> Cow<'k, [u8]> {
        if self.by_hash {
            Cow::Owned(vec![key.iter().fold(0u8, |h, b| h.rotate_left(3) ^ b)])
        } else {
            Cow::Borrowed(key)
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassResult {
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// The batches below it were covered: past `Pass::upto` when it extends to batches
    /// cleaned before.
    pub covered_upto: i64,
}

/// A stored batch as the cleaner reads it: its base offset, bytes, and delete horizon
/// (`None`: not cleaned before).
struct Read {
    base_offset: i64,
    bytes: Bytes,
    horizon: Option<i64>,
}

/// Runs a cleaning pass over the partition `reader` reads, adding its writes to `batch`.
pub fn clean(
    reader: &PartitionReader,
    pass: Pass,
    batch: &mut StateBatch,
) -> Result<PassResult, StorageError> {
    // A pass may end below an earlier one (min.compaction.lag.ms raised, a leader whose
    // clock is behind): it still covers the batches cleaned before past its end, none of
    // them dirty, so that their tombstones expire and count in the expiry it stores.
    let upto = reader.index().cleaned_through(pass.upto)?;
    let located = reader.index().locate(pass.start, upto, usize::MAX)?;
    let (cleaned_before, dirty): (Vec<_>, Vec<_>) =
        located.iter().copied().partition(|(_, l)| l.is_cleaned());

    // The dirty batches are read once and kept for their rebuild: the leader caps them
    // (the broker's cleaner), and the pass's output is held in memory anyway.
    let mut last_of_key: HashMap<Vec<u8>, i64> = HashMap::new();
    let mut dirty_reads = Vec::with_capacity(dirty.len());
    for_each_read(reader, &dirty, upto, |read| {
        // A batch that cannot be read adds no keys, and is kept whole below.
        let _ = for_each_keyed_record(&read.bytes, MAX_INFLATED_BATCH_BYTES, |r| {
            if let Some(key) = r.key {
                last_of_key.insert(pass.identity(key).into_owned(), r.offset);
            }
        });
        dirty_reads.push(read);
        Ok(())
    })?;

    let index = reader.index();
    let mut result = PassResult {
        covered_upto: upto,
        ..PassResult::default()
    };
    let mut tombstone_expiry: Option<i64> = None;
    let mut rebuild = |read: Read| {
        let first_cleaning = read.horizon.is_none();
        let horizon = read
            .horizon
            .unwrap_or_else(|| pass.now.saturating_add(pass.delete_retention_ms));
        let tombstones_expired = !first_cleaning && pass.now >= horizon;
        let mut tombstone_kept = false;
        let keep = |r: KeyedRecord<'_>| {
            let kept = match r.key {
                Some(key) => {
                    last_of_key
                        .get(pass.identity(key).as_ref())
                        .is_none_or(|&last| last == r.offset)
                        && !(r.tombstone && tombstones_expired)
                }
                None => false,
            };
            tombstone_kept |= kept && r.tombstone;
            kept
        };
        let cleaned =
            clean_batch(&read.bytes, MAX_INFLATED_BATCH_BYTES, keep).unwrap_or(Cleaned::Unchanged);
        if tombstone_kept {
            tombstone_expiry = Some(tombstone_expiry.map_or(horizon, |t| t.min(horizon)));
        }
        result.bytes_before += read.bytes.len() as u64;
        match cleaned {
            Cleaned::Unchanged => {
                result.bytes_after += read.bytes.len() as u64;
                if first_cleaning {
                    index.put_cleaned(batch, read.base_offset, horizon, &read.bytes);
                }
            }
            Cleaned::Rebuilt(bytes) => {
                result.bytes_after += bytes.len() as u64;
                index.put_cleaned(batch, read.base_offset, horizon, &bytes);
            }
        }
    };
    for_each_read(reader, &cleaned_before, upto, |read| {
        rebuild(read);
        Ok(())
    })?;
    dirty_reads.into_iter().for_each(rebuild);
    index.put_tombstone_expiry(batch, tombstone_expiry);
    Ok(result)
}

/// Reads the batches of `located` that end below `upto`, in order, a chunk at a time.
fn for_each_read(
    reader: &PartitionReader,
    located: &[(i64, BatchLocation)],
    upto: i64,
    mut each: impl FnMut(Read) -> Result<(), StorageError>,
) -> Result<(), StorageError> {
    for chunk in located.chunks(READ_CHUNK) {
        let in_entries: Vec<(i64, BatchLocation)> = chunk
            .iter()
            .filter(|(_, l)| !l.is_cleaned())
            .copied()
            .collect();
        let from_entries = reader.read_located(&in_entries)?;
        let mut from_entries = from_entries.iter();
        for &(base_offset, location) in chunk {
            let (bytes, horizon) = if location.is_cleaned() {
                let (horizon, bytes) =
                    reader
                        .index()
                        .cleaned(base_offset)?
                        .ok_or_else(|| StorageError::Corrupt {
                            what: "partition index",
                            detail: format!("the cleaned batch at offset {base_offset} is missing"),
                        })?;
                (Bytes::from(bytes), Some(horizon))
            } else {
                let stored = from_entries.next().ok_or(StorageError::Corrupt {
                    what: "partition index",
                    detail: format!("the batch at offset {base_offset} was not read"),
                })?;
                (stored.bytes, None)
            };
            if last_offset(&bytes).is_some_and(|last| last < upto) {
                each(Read {
                    base_offset,
                    bytes,
                    horizon,
                })?;
            }
        }
    }
    Ok(())
}

fn last_offset(batch: &[u8]) -> Option<i64> {
    strand_protocol::batch::BatchHeader::parse(batch)
        .ok()
        .map(|h| h.last_offset())
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use bytes::{Bytes, BytesMut};
    use openraft::CommittedLeaderId;
    use proptest::prelude::*;
    use strand_protocol::kafka_protocol::indexmap::IndexMap;
    use strand_protocol::kafka_protocol::records::{
        Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
        TimestampType,
    };
    use strand_storage::{Store, StoreOptions};

    use super::*;
    use crate::codec;
    use crate::kafka::partition::PartitionMachine;
    use crate::state_machine::Machine;
    use crate::types::{AppendBatches, BatchSummary, Command, LogId};

    /// A record as written: key number and value (`None`: a tombstone).
    type Written = (u8, Option<u32>);

    fn append(records: &[Written], ts: i64, compression: Compression) -> Command {
        let records: Vec<Record> = records
            .iter()
            .enumerate()
            .map(|(i, (k, v))| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                // The encoder starts a new batch where sequences are not consecutive.
                sequence: i as i32 - 1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                timestamp: ts,
                key: Some(Bytes::from(format!("{k}"))),
                value: v.map(|v| Bytes::from(v.to_string())),
                headers: IndexMap::new(),
            })
            .collect();
        let mut data = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression,
        };
        RecordBatchEncoder::encode(&mut data, &records, &options).unwrap();
        Command::Append(AppendBatches {
            batches: vec![BatchSummary {
                len: data.len() as u32,
                last_offset_delta: records.len() as i32 - 1,
                max_timestamp: ts,
                producer_id: -1,
                producer_epoch: -1,
                base_sequence: -1,
            }],
            data: data.freeze(),
            ..AppendBatches::default()
        })
    }

    /// One partition replica, applying entries as the state machine adapter does: in
    /// rounds, with the round so far written before a command that reads stored state.
    struct Replica {
        _dir: tempfile::TempDir,
        store: Store,
        machine: PartitionMachine,
        round: Option<strand_storage::StateBatch>,
        index: u64,
    }

    impl Replica {
        fn new() -> Replica {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(&StoreOptions::new(dir.path())).unwrap();
            let (machine, _) = PartitionMachine::open(Self::reader_of(&store)).unwrap();
            Replica {
                _dir: dir,
                store,
                machine,
                round: None,
                index: 0,
            }
        }

        fn reader_of(store: &Store) -> PartitionReader {
            PartitionReader::new(store.partition_log(1), store.raft_log(1))
        }

        fn apply(&mut self, command: Command) {
            if self.machine.reads_stored_state(&command) {
                self.end_round();
            }
            self.index += 1;
            let id = LogId::new(CommittedLeaderId::new(1, 1), self.index);
            let entry = crate::types::Entry {
                log_id: id,
                payload: openraft::EntryPayload::Normal(command.clone()),
            };
            self.store
                .raft_log(1)
                .append([(self.index, codec::encode_entry(&entry).as_slice())])
                .unwrap();
            let round = self.round.get_or_insert_with(|| self.store.state_batch());
            self.machine.observe_term(1, round);
            self.machine.apply(&id, command, round).unwrap();
        }

        fn end_round(&mut self) {
            if let Some(mut round) = self.round.take() {
                self.machine.finish_round(&mut round);
                self.store.write_state(round).unwrap();
                self.machine.publish();
            }
        }

        fn reopen(&mut self) {
            self.end_round();
            (self.machine, _) = PartitionMachine::open(Self::reader_of(&self.store)).unwrap();
        }

        /// The bytes served from the log start, and the records in them, decoded as a
        /// client decodes them (CRC checked): offset to record.
        fn read(&mut self) -> (Bytes, BTreeMap<i64, Written>) {
            self.end_round();
            let meta = self
                .store
                .partition_log(1)
                .meta()
                .unwrap()
                .unwrap_or_default();
            let read = Self::reader_of(&self.store)
                .read(meta.log_start_offset, meta.next_offset, usize::MAX)
                .unwrap();
            let mut records = BTreeMap::new();
            let mut bytes = read.bytes.clone();
            for set in RecordBatchDecoder::decode_all(&mut bytes).unwrap() {
                for r in set.records {
                    let text = |b: &Bytes| std::str::from_utf8(b).unwrap().to_string();
                    let key = text(r.key.as_ref().unwrap()).parse().unwrap();
                    let value = r.value.as_ref().map(|v| text(v).parse().unwrap());
                    assert!(records.insert(r.offset, (key, value)).is_none());
                }
            }
            (read.bytes, records)
        }

        fn first_entry_read(&self) -> u64 {
            self.machine.keep_from(self.index)
        }
    }

    #[derive(Debug, Clone)]
    enum Step {
        Append(Vec<Written>, u8),
        /// Clean below the batch `back` batches before the log end (0: the end); `now`
        /// advances by `later` ms first.
        Compact {
            later: i64,
            back: usize,
        },
        DeleteRecords {
            ahead: i64,
        },
        Reopen,
    }

    fn step() -> impl Strategy<Value = Step> {
        let written = (0u8..6, prop::option::weighted(0.8, 0u32..1000));
        prop_oneof![
            6 => (prop::collection::vec(written, 1..4), 0u8..5)
                .prop_map(|(r, c)| Step::Append(r, c)),
            2 => (0i64..3, prop::sample::select(vec![0usize, 0, 1, 3]))
                .prop_map(|(later, back)| Step::Compact { later: later * 500, back }),
            1 => (0i64..3).prop_map(|ahead| Step::DeleteRecords { ahead }),
            1 => Just(Step::Reopen),
        ]
    }

    const DELETE_RETENTION_MS: i64 = 1_000;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Random appends, cleaning passes, deletions and restarts against a model of the
        /// log; a second replica applies the same entries in one-entry rounds and must serve
        /// the same bytes.
        #[test]
        fn cleaning_keeps_each_keys_last_record_and_is_the_same_on_every_replica(
            steps in prop::collection::vec(step(), 1..40)
        ) {
            let mut a = Replica::new();
            let mut b = Replica::new();
            let codecs = [Compression::None, Compression::Gzip, Compression::Snappy,
                Compression::Lz4, Compression::Zstd];
            // Every record written, by offset; each batch's base offset; the log start;
            // when each offset was first cleaned; and the offsets a pass removed: those
            // below its `upto` with a later record of their key below it, and tombstones
            // cleaned at least delete.retention.ms before it.
            let mut written: BTreeMap<i64, Written> = BTreeMap::new();
            let mut bases: Vec<i64> = Vec::new();
            let (mut start, mut end, mut now) = (0i64, 0i64, 1_000_000i64);
            let mut first_cleaned: BTreeMap<i64, i64> = BTreeMap::new();
            let mut removed: BTreeSet<i64> = BTreeSet::new();
            // The earliest horizon of a tombstone the last pass kept; how far passes reached.
            let mut tombstone_expiry: Option<i64> = None;
            let mut cleaned_to = 0i64;
            for step in steps {
                let command = match &step {
                    Step::Append(records, codec) => {
                        bases.push(end);
                        for r in records {
                            written.insert(end, *r);
                            end += 1;
                        }
                        Some(append(records, now, codecs[*codec as usize]))
                    }
                    Step::Compact { later, back } => {
                        now += later;
                        let upto = match back {
                            0 => end,
                            back => bases.len().checked_sub(*back).map_or(0, |i| bases[i]),
                        };
                        // The command's `upto`; the pass also covers what earlier ones did.
                        let command_upto = upto;
                        let upto = upto.max(cleaned_to);
                        cleaned_to = upto;
                        let mut last_of_key: BTreeMap<u8, i64> = BTreeMap::new();
                        for (&offset, &(key, _)) in written.range(..upto) {
                            last_of_key.insert(key, offset);
                        }
                        for (&offset, &(key, value)) in written.range(..upto) {
                            let cleaned = *first_cleaned.entry(offset).or_insert(now);
                            if last_of_key[&key] != offset
                                || (value.is_none() && now >= cleaned + DELETE_RETENTION_MS)
                            {
                                removed.insert(offset);
                            }
                        }
                        // The pass covers the batches from the one holding the log start.
                        let batch_ends = bases.iter().skip(1).copied().chain([end]);
                        let covered_from = bases
                            .iter()
                            .zip(batch_ends)
                            .find(|&(_, batch_end)| start < batch_end)
                            .map_or(end, |(&base, _)| base);
                        tombstone_expiry = written
                            .range(covered_from..upto.max(covered_from))
                            .filter(|(o, (_, v))| v.is_none() && !removed.contains(o))
                            .map(|(o, _)| first_cleaned[o] + DELETE_RETENTION_MS)
                            .min();
                        Some(Command::Compact {
                            upto: command_upto,
                            now,
                            delete_retention_ms: DELETE_RETENTION_MS,
                        })
                    }
                    Step::DeleteRecords { ahead } => {
                        start = (start + ahead).min(end);
                        Some(Command::AdvanceLogStart { offset: start })
                    }
                    Step::Reopen => None,
                };
                match command {
                    Some(command) => {
                        a.apply(command.clone());
                        b.apply(command);
                        b.end_round();
                    }
                    None => a.reopen(),
                }
            }
            let (bytes_a, read) = a.read();
            let (bytes_b, _) = b.read();
            prop_assert_eq!(&bytes_a, &bytes_b, "replicas serve different bytes");
            for replica in [&a, &b] {
                let stored = replica.store.partition_log(1).tombstone_expiry().unwrap();
                prop_assert_eq!(stored, tombstone_expiry, "the tombstone expiry");
            }
            // ListOffsets MAX_TIMESTAMP answers with the batch the meta names: it must
            // still hold a record.
            let meta = a.store.partition_log(1).meta().unwrap().unwrap_or_default();
            if meta.max_timestamp_batch >= 0 {
                let next = bases.iter().copied().find(|&b| b > meta.max_timestamp_batch);
                let held = read.range(meta.max_timestamp_batch..next.unwrap_or(end));
                prop_assert!(held.count() > 0, "batch {} is empty", meta.max_timestamp_batch);
            }
            let cleaned_upto = first_cleaned.keys().next_back().map_or(0, |o| o + 1);
            // The log start moves by whole batches: records before it may still be served.
            for (offset, record) in &read {
                prop_assert_eq!(Some(record), written.get(offset), "offset {} changed", offset);
            }
            for &offset in written.range(start..).map(|(o, _)| o) {
                if removed.contains(&offset) {
                    prop_assert!(!read.contains_key(&offset), "offset {} kept", offset);
                } else {
                    prop_assert!(read.contains_key(&offset), "offset {} lost", offset);
                }
            }
            if cleaned_upto == end && end > start {
                prop_assert_eq!(a.first_entry_read(), a.index + 1, "cleaned entries still read");
            }
        }
    }
}
