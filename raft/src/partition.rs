//! The partition state machine: turns committed appends into stored batches with
//! contiguous offsets, and keeps the leader-epoch history.
//!
//! Offsets are assigned here, when an entry is applied, never when it is proposed: every
//! replica applies the same entries in the same order and so assigns the same offsets, and
//! Raft's own entries (blank, membership) take none. The Raft term of the entry becomes the
//! batch's partition leader epoch.

use strand_storage::{PartitionLog, PartitionMeta, StateBatch};
use tokio::sync::watch;

use crate::state_machine::Machine;
use crate::types::{AppendBatches, Command, LogId, Rejection, Response};

/// What readers of a partition need to know, published after every apply round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionStatus {
    /// Everything below is committed and readable (the log end offset of applied data).
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

/// Writes the broker-owned fields of a v2 record batch header: the base offset (bytes
/// 0..8) and the partition leader epoch (bytes 12..16). The batch CRC starts at byte 21,
/// so it stays valid.
pub fn stamp_batch_header(batch: &mut [u8], base_offset: i64, leader_epoch: i32) {
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
    batch[12..16].copy_from_slice(&leader_epoch.to_be_bytes());
}

/// Kafka leader epochs are `i32`; Raft terms beyond that range would be a cluster that has
/// held two billion elections.
fn epoch_of(term: u64) -> i32 {
    i32::try_from(term).unwrap_or(i32::MAX)
}

pub struct PartitionMachine {
    log: PartitionLog,
    meta: PartitionMeta,
    last_epoch: Option<i32>,
    meta_changed: bool,
    status: watch::Sender<PartitionStatus>,
}

impl PartitionMachine {
    /// Loads the partition's stored state.
    pub fn open(
        log: PartitionLog,
    ) -> Result<(PartitionMachine, watch::Receiver<PartitionStatus>), strand_storage::StorageError>
    {
        let mut machine = PartitionMachine {
            log,
            meta: PartitionMeta::default(),
            last_epoch: None,
            meta_changed: false,
            status: watch::channel(PartitionStatus {
                high_watermark: 0,
                log_start_offset: 0,
            })
            .0,
        };
        machine.reload()?;
        let rx = machine.status.subscribe();
        Ok((machine, rx))
    }

    fn append(&mut self, term: u64, append: AppendBatches, batch: &mut StateBatch) -> Response {
        let total: usize = append.batches.iter().map(|b| b.len as usize).sum();
        if total != append.data.len() || append.batches.is_empty() {
            return Response::Rejected(Rejection::InvalidAppend);
        }
        let epoch = epoch_of(term);
        let base_offset = self.meta.next_offset;
        let mut at = 0usize;
        for summary in &append.batches {
            let len = summary.len as usize;
            let mut bytes = append.data[at..at + len].to_vec();
            at += len;
            let offset = self.meta.next_offset;
            stamp_batch_header(&mut bytes, offset, epoch);
            self.log.put_batch(batch, offset, &bytes);
            if summary.max_timestamp > self.meta.max_timestamp {
                self.log
                    .put_time_index(batch, summary.max_timestamp, offset);
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

    fn apply(&mut self, log_id: &LogId, command: Command, batch: &mut StateBatch) -> Response {
        match command {
            Command::Append(append) => self.append(log_id.leader_id.term, append, batch),
            Command::Controller(_) => Response::Rejected(Rejection::WrongGroup),
        }
    }

    fn finish_round(&mut self, batch: &mut StateBatch) {
        if self.meta_changed {
            self.log.put_meta(batch, &self.meta);
            self.meta_changed = false;
        }
    }

    fn publish(&mut self) {
        self.status.send_replace(PartitionStatus {
            high_watermark: self.meta.next_offset,
            log_start_offset: self.meta.log_start_offset,
        });
    }

    fn reload(&mut self) -> Result<(), strand_storage::StorageError> {
        self.meta = self.log.meta()?.unwrap_or_default();
        self.last_epoch = self.log.epochs()?.last().map(|(e, _)| *e as i32);
        self.publish();
        Ok(())
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
        };
        b[60] = 0xAB;
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
        })
    }

    fn log_id(term: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn apply(m: &mut PartitionMachine, store: &Store, id: LogId, cmd: Command) -> Response {
        let mut wb = store.state_batch();
        m.observe_term(id.leader_id.term, &mut wb);
        let r = m.apply(&id, cmd, &mut wb);
        m.finish_round(&mut wb);
        store.write_state(wb).unwrap();
        m.publish();
        r
    }

    #[test]
    fn offsets_are_contiguous_and_batches_stamped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreOptions::new(dir.path())).unwrap();
        let (mut m, status) = PartitionMachine::open(store.partition_log(1)).unwrap();
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
        let stored = store.partition_log(1).read(0, 6, 1 << 20).unwrap();
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

    #[test]
    fn state_reloads_after_reopen_and_bad_appends_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreOptions::new(dir.path())).unwrap();
        let (mut m, _) = PartitionMachine::open(store.partition_log(4)).unwrap();
        apply(&mut m, &store, log_id(1, 1), append_of(&[fake_batch(5, 1)]));
        let (b, mut s) = fake_batch(1, 1);
        s.len += 1;
        let bad = apply(&mut m, &store, log_id(1, 2), append_of(&[(b, s)]));
        assert_eq!(bad, Response::Rejected(Rejection::InvalidAppend));
        let (_, status) = PartitionMachine::open(store.partition_log(4)).unwrap();
        assert_eq!(status.borrow().high_watermark, 5);
    }
}
