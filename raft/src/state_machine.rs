//! openraft's state-machine interface over a plain-Rust [`Machine`].
//!
//! The adapter owns what every group shares: the applied log id and membership (stored in
//! the same write as the entries' effects, so they always agree), the write of each apply
//! round, and snapshots (see [`crate::snapshot`]). A [`Machine`] only turns commands into
//! writes and responses, so the partition and controller logic are unit-tested without
//! Raft.

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, Snapshot, StorageIOError};
use strand_storage::keys::{self, RaftGroupId};
use strand_storage::{StateBatch, Store};

use crate::codec;
use crate::recent_entries::RecentEntries;
use crate::snapshot::{LogFloor, SnapshotData};
use crate::types::{
    Command, Entry, LogId, Response, SnapshotMeta, StorageError, StoredMembership, Types,
};

/// A deterministic state machine: the same commands in the same order give the same
/// writes on every replica.
pub trait Machine: Send + Sync + 'static {
    /// Called with the term of every applied entry, before the entry itself.
    fn observe_term(&mut self, term: u64, batch: &mut StateBatch);
    /// Applies one command, adding its effects to `batch`. An error is a failed read of the
    /// machine's own stored state, which stops the group as a failed write does.
    fn apply(
        &mut self,
        log_id: &LogId,
        command: Command,
        batch: &mut StateBatch,
    ) -> Result<Response, strand_storage::StorageError>;
    /// Adds whatever the round changed in aggregate (counters) to `batch`, just before it is
    /// written.
    fn finish_round(&mut self, batch: &mut StateBatch);
    /// The round's writes are stored: make the new state visible to readers.
    fn publish(&mut self);
    /// The first log entry this machine still reads once `applied` is applied (its stored
    /// state points into the log); everything below may be purged. Cheap: called after
    /// every round.
    fn keep_from(&self, applied: u64) -> u64;
    /// The stored state was replaced (snapshot installed): reload it.
    fn reload(&mut self) -> Result<(), strand_storage::StorageError>;
    /// Whether `command` reads the machine's stored state as the entries before it left
    /// it: the round so far is written before it is applied.
    fn reads_stored_state(&self, _command: &Command) -> bool {
        false
    }
}

/// The applied point, persisted with every apply round.
type AppliedState = (Option<LogId>, StoredMembership);

fn read_applied(store: &Store, group: RaftGroupId) -> Result<AppliedState, StorageError> {
    let raw = store
        .get_state(&keys::state(group, keys::APPLIED))
        .map_err(|e| StorageIOError::read_state_machine(&e))?;
    match raw {
        Some(bytes) => {
            codec::decode(&bytes).map_err(|e| StorageIOError::read_state_machine(&e).into())
        }
        None => Ok((None, StoredMembership::default())),
    }
}

fn snapshot_meta(applied: &AppliedState) -> SnapshotMeta {
    let (last_log_id, membership) = applied;
    SnapshotMeta {
        last_log_id: *last_log_id,
        last_membership: membership.clone(),
        snapshot_id: match last_log_id {
            Some(id) => format!("{}-{}", id.leader_id.term, id.index),
            None => "empty".to_string(),
        },
    }
}

/// openraft's view of one group's state machine.
pub struct StateMachine<M> {
    store: Store,
    group: RaftGroupId,
    machine: M,
    applied: AppliedState,
    /// The group's log store holds entries until they are applied here.
    recent: RecentEntries,
    /// Where the log store stops purging: the machine's [`Machine::keep_from`].
    floor: LogFloor,
    /// Whether a snapshot was built or installed since the group opened. Until then
    /// openraft is told there is none (and builds one, without state, at start if the log
    /// was ever purged): opening a node's groups reads no state.
    snapshotted: bool,
    /// See [`crate::RaftTuning::purge_unread`].
    purge_unread: bool,
}

impl<M: Machine> StateMachine<M> {
    /// The state machine of `group`, which lets its log store's `recent` entries go once
    /// they are applied and keeps its `floor` where the machine's reads start.
    pub fn open(
        store: Store,
        group: RaftGroupId,
        machine: M,
        recent: RecentEntries,
        floor: LogFloor,
    ) -> Result<Self, StorageError> {
        let applied = read_applied(&store, group)?;
        let index = applied_index(&applied);
        floor.set(machine.keep_from(index), index);
        Ok(StateMachine {
            store,
            group,
            machine,
            applied,
            recent,
            floor,
            snapshotted: false,
            purge_unread: false,
        })
    }

    /// Unsafe (see [`crate::RaftTuning::purge_unread`]): the floor follows the applied
    /// entry, whatever the machine still reads.
    pub fn purging_unread(mut self, purge_unread: bool) -> Self {
        self.purge_unread = purge_unread;
        self
    }

    /// The first entry the machine reads, as the log store is told.
    fn keep_from(&self) -> u64 {
        let applied = applied_index(&self.applied);
        if self.purge_unread {
            applied + 1
        } else {
            self.machine.keep_from(applied)
        }
    }

    /// A snapshot of the state as it is now, with the stored state if `with_state`: called
    /// on the state machine's task, between applies, so the state read is exactly the
    /// state at the applied point. The state is small next to the entries a snapshot
    /// carries (one key per batch, besides batches the log cleaner kept), so a snapshot is
    /// taken afresh whenever one is sent rather than kept.
    fn snapshot_now(&self, with_state: bool) -> Result<Snapshot<Types>, StorageError> {
        let state = if with_state {
            self.store
                .group_state(self.group)
                .map_err(|e| StorageIOError::read_state_machine(&e))?
        } else {
            Vec::new()
        };
        Ok(Snapshot {
            meta: snapshot_meta(&self.applied),
            snapshot: Box::new(SnapshotData {
                state,
                first_entry: self.keep_from(),
                entries: Vec::new(),
            }),
        })
    }

    /// Stores a round of applied entries with the applied point, and publishes it.
    fn write_round(&mut self, mut batch: StateBatch) -> Result<(), StorageError> {
        self.machine.finish_round(&mut batch);
        batch.put(
            &keys::state(self.group, keys::APPLIED),
            &codec::encode(&self.applied),
        );
        self.store
            .write_state(batch)
            .map_err(|e| StorageIOError::write_state_machine(&e))?;
        self.machine.publish();
        self.floor
            .set(self.keep_from(), applied_index(&self.applied));
        Ok(())
    }
}

/// The index of the last applied entry, 0 before any.
fn applied_index(applied: &AppliedState) -> u64 {
    applied.0.map_or(0, |id| id.index)
}

impl<M: Machine> RaftStateMachine<Types> for StateMachine<M> {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<AppliedState, StorageError> {
        Ok(self.applied.clone())
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = self.store.state_batch();
        let mut in_round = 0;
        let mut responses = Vec::new();
        let mut replies = Vec::new();
        for entry in entries {
            if let EntryPayload::Normal(command) = &entry.payload {
                if in_round > 0 && self.machine.reads_stored_state(command) {
                    let round = std::mem::replace(&mut batch, self.store.state_batch());
                    self.write_round(round)?;
                    in_round = 0;
                }
            }
            in_round += 1;
            self.machine
                .observe_term(entry.log_id.leader_id.term, &mut batch);
            let response = match entry.payload {
                EntryPayload::Blank => Response::None,
                EntryPayload::Normal(mut command) => {
                    let reply = command
                        .append_mut()
                        .map(|append| std::mem::take(&mut append.reply))
                        .unwrap_or_default();
                    let response = self
                        .machine
                        .apply(&entry.log_id, command, &mut batch)
                        .map_err(|e| StorageIOError::read_state_machine(&e))?;
                    if reply.is_wanted() {
                        replies.push((reply, response.clone()));
                    }
                    response
                }
                EntryPayload::Membership(membership) => {
                    self.applied.1 = StoredMembership::new(Some(entry.log_id), membership);
                    Response::None
                }
            };
            self.applied.0 = Some(entry.log_id);
            responses.push(response);
        }
        self.write_round(batch)?;
        // Only now: a producer that has its answer must find the records when it reads.
        for (reply, response) in replies {
            reply.send(response);
        }
        if let Some(applied) = self.applied.0 {
            self.recent.forget_upto(applied.index);
        }
        Ok(responses)
    }

    /// The snapshot is taken here, on the state machine's task, and without its state:
    /// openraft keeps only the metadata of a snapshot it builds (to know how far it may
    /// purge), and asks [`Self::get_current_snapshot`] for one to send.
    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshotted = true;
        SnapshotBuilder(Some(self.snapshot_now(false)))
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotData>, StorageError> {
        Ok(Box::default())
    }

    /// Replaces the group's state and the entries it reads by the snapshot's, in one
    /// write, and reloads the machine from them.
    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<SnapshotData>,
    ) -> Result<(), StorageError> {
        let failed = |e: strand_storage::StorageError| -> StorageError {
            StorageIOError::write_snapshot(Some(meta.signature()), &e).into()
        };
        let Some(last) = meta.last_log_id else {
            return Err(failed(strand_storage::StorageError::Corrupt {
                what: "snapshot",
                detail: "a snapshot without a last log id".into(),
            }));
        };
        let applied: AppliedState = (Some(last), meta.last_membership.clone());
        let mut state = snapshot.state;
        // The applied point is the snapshot's, whatever the sender's state said.
        let applied_key = keys::state(self.group, keys::APPLIED);
        state.retain(|(k, _)| k[..] != applied_key[..]);
        state.push((applied_key.to_vec(), codec::encode(&applied)));
        // openraft purges the log up to the snapshot as it installs it; the purge point is
        // recorded here, with the state (see `LogFloor`).
        self.store
            .install_group(
                self.group,
                &state,
                snapshot.first_entry,
                &snapshot.entries,
                &codec::encode(&last),
            )
            .map_err(failed)?;
        self.applied = applied;
        self.recent.forget_upto(applied_index(&self.applied));
        self.machine.reload().map_err(failed)?;
        self.floor
            .set(self.keep_from(), applied_index(&self.applied));
        self.snapshotted = true;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<Types>>, StorageError> {
        if !self.snapshotted {
            return Ok(None);
        }
        self.snapshot_now(true).map(Some)
    }
}

/// Hands over a snapshot taken by [`StateMachine::get_snapshot_builder`].
pub struct SnapshotBuilder(Option<Result<Snapshot<Types>, StorageError>>);

impl RaftSnapshotBuilder<Types> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<Types>, StorageError> {
        self.0.take().unwrap_or_else(|| {
            Err(StorageIOError::read_state_machine(&std::io::Error::other(
                "a snapshot builder is used once",
            ))
            .into())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::partition::{PartitionMachine, PartitionReader};
    use crate::types::{AppendBatches, AppliedReply, BatchSummary};
    use bytes::Bytes;
    use openraft::CommittedLeaderId;
    use strand_storage::StoreOptions;
    use tokio::sync::oneshot::error::TryRecvError;

    /// An append of one batch of `records` records, as the leader proposes it.
    fn append(records: i32) -> (Entry, tokio::sync::oneshot::Receiver<Response>) {
        append_at(1, records)
    }

    fn append_at(index: u64, records: i32) -> (Entry, tokio::sync::oneshot::Receiver<Response>) {
        let mut batch = vec![0u8; 61 + records as usize];
        batch[23..27].copy_from_slice(&(records - 1).to_be_bytes());
        let (reply, receiver) = AppliedReply::channel();
        let command = Command::Append(AppendBatches {
            batches: vec![BatchSummary {
                len: batch.len() as u32,
                last_offset_delta: records - 1,
                max_timestamp: 0,
                producer_id: -1,
                producer_epoch: -1,
                base_sequence: -1,
            }],
            data: Bytes::from(batch),
            reply,
        });
        let entry = Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(command),
        };
        (entry, receiver)
    }

    #[tokio::test]
    async fn the_proposer_gets_the_result_once_the_append_is_visible() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreOptions::new(dir.path())).unwrap();
        let (machine, status) = PartitionMachine::open(PartitionReader::new(
            store.partition_log(1),
            store.raft_log(1),
        ))
        .unwrap();
        let mut sm = StateMachine::open(
            store.clone(),
            1,
            machine,
            RecentEntries::default(),
            LogFloor::default(),
        )
        .unwrap();
        let (entry, mut receiver) = append(3);
        // What followers and readers of the stored log get: the same entry, no reply.
        let sent = codec::decode_entry(codec::encode_entry(&entry)).unwrap();
        assert!(
            matches!(&sent.payload, EntryPayload::Normal(Command::Append(a)) if !a.reply.is_wanted())
        );
        store
            .raft_log(1)
            .append([(1, codec::encode_entry(&entry).as_slice())])
            .unwrap();
        assert_eq!(receiver.try_recv(), Err(TryRecvError::Empty));

        let responses = sm.apply([entry]).await.unwrap();
        let expected = Response::Appended {
            base_offset: 0,
            log_start_offset: 0,
        };
        assert_eq!(responses, std::slice::from_ref(&expected));
        assert_eq!(receiver.try_recv(), Ok(expected));
        assert_eq!(status.borrow().high_watermark, 3);
    }

    /// An entry truncated before it is applied: once the log store's copies are gone the
    /// proposer's channel closes, and it takes openraft's answer instead.
    #[tokio::test]
    async fn a_reply_closes_when_the_last_copy_of_its_entry_is_gone() {
        let (entry, mut receiver) = append(1);
        let copy = entry.clone();
        drop(entry);
        assert_eq!(receiver.try_recv(), Err(TryRecvError::Empty));
        drop(copy);
        assert_eq!(receiver.try_recv(), Err(TryRecvError::Closed));
    }

    /// A partition whose head was deleted, its snapshot taken, sent (entries read from the
    /// sender's log) and installed on a replica that had only the first entries: the
    /// replica then serves the same batches, from the same entries, as the sender, and
    /// keeps its floor where the sender's is.
    #[tokio::test]
    async fn an_installed_snapshot_serves_what_the_sender_serves() {
        let open = |dir: &std::path::Path| {
            let store = Store::open(&StoreOptions::new(dir)).unwrap();
            let (machine, _) = PartitionMachine::open(PartitionReader::new(
                store.partition_log(3),
                store.raft_log(3),
            ))
            .unwrap();
            let log = crate::log_store::LogStore::new(store.raft_log(3));
            let floor = log.floor();
            let sm =
                StateMachine::open(store.clone(), 3, machine, log.recent(), floor.clone()).unwrap();
            (store, sm, floor, log)
        };
        let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, mut a_sm, a_floor, _) = open(a_dir.path());
        let (b, mut b_sm, b_floor, mut b_log) = open(b_dir.path());
        // Entries 1..=10, one batch of 2 records each: offsets 2i-2, 2i-1 at entry i.
        for index in 1..=10 {
            let (entry, _) = append_at(index, 2);
            let encoded = codec::encode_entry(&entry);
            a.raft_log(3).append([(index, encoded.as_slice())]).unwrap();
            if index <= 3 {
                b.raft_log(3).append([(index, encoded.as_slice())]).unwrap();
                b_sm.apply([entry.clone()]).await.unwrap();
            }
            a_sm.apply([entry]).await.unwrap();
        }
        assert_eq!(a_floor.get(), 1);
        // Offset 9 is in entry 5's batch: entries 1..=4 are no longer read.
        let start = Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), 11),
            payload: EntryPayload::Normal(Command::AdvanceLogStart { offset: 9 }),
        };
        a.raft_log(3)
            .append([(11, codec::encode_entry(&start).as_slice())])
            .unwrap();
        a_sm.apply([start]).await.unwrap();
        assert_eq!(a_floor.get(), 5);

        let built = a_sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        assert_eq!(built.meta.last_log_id.unwrap().index, 11);
        let snapshot = a_sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(snapshot.meta, built.meta);
        let mut data = *snapshot.snapshot;
        assert_eq!(data.first_entry, 5);
        data.entries = a
            .raft_log(3)
            .read(data.first_entry, 12)
            .unwrap()
            .into_iter()
            .map(|(i, e)| (i, Bytes::from(e)))
            .collect();
        // openraft records the purge up to the snapshot before the install is written: the
        // log store leaves it to the install, so no crash between them leaves a log that
        // starts past the state.
        let purged = |store: &Store| {
            let raw = store.raft_log(3).hard_state(keys::RAFT_PURGED).unwrap();
            raw.map(|b| codec::decode::<LogId>(&b).unwrap().index)
        };
        openraft::storage::RaftLogStorage::purge(&mut b_log, snapshot.meta.last_log_id.unwrap())
            .await
            .unwrap();
        assert_eq!(purged(&b), None);
        assert_eq!(b.raft_log(3).read(1, 4).unwrap().len(), 3);
        b_sm.install_snapshot(&snapshot.meta, Box::new(data))
            .await
            .unwrap();
        assert_eq!(purged(&b), Some(11));

        assert_eq!(b_floor.get(), 5);
        assert_eq!(b_sm.applied_state().await.unwrap().0.unwrap().index, 11);
        assert_eq!(
            b.raft_log(3).read(1, 100).unwrap(),
            [],
            "entries below 5 are gone"
        );
        assert_eq!(
            b.raft_log(3).read(5, 100).unwrap(),
            a.raft_log(3).read(5, 100).unwrap()
        );
        let read = |store: &Store| {
            let reader = crate::kafka::partition::PartitionReader::new(
                store.partition_log(3),
                store.raft_log(3),
            );
            let batches = reader.read(0, 20, usize::MAX).unwrap();
            (
                batches.iter().map(|b| b.base_offset).collect::<Vec<_>>(),
                batches.bytes,
            )
        };
        let (offsets, bytes) = read(&b);
        assert_eq!(offsets, [8, 10, 12, 14, 16, 18]);
        assert_eq!((offsets, bytes), read(&a));
        assert_eq!(
            b.get_state(&keys::state(3, keys::PARTITION_META)).unwrap(),
            a.get_state(&keys::state(3, keys::PARTITION_META)).unwrap()
        );
    }
}
