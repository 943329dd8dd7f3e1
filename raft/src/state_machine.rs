//! openraft's state-machine interface over a plain-Rust [`Machine`].
//!
//! The adapter owns what every group shares: the applied log id and membership (stored in
//! the same write as the entries' effects, so they always agree), the write of each apply
//! round, and snapshots (metadata only; see [`crate::snapshot`]). A [`Machine`] only turns
//! commands into writes and responses, so the partition and controller logic are
//! unit-tested without Raft.

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, Snapshot, StorageIOError};
use strand_storage::keys::{self, RaftGroupId};
use strand_storage::{StateBatch, Store};

use crate::codec;
use crate::recent_entries::RecentEntries;
use crate::snapshot::SnapshotData;
use crate::types::{
    AppliedReply, Command, Entry, LogId, Response, SnapshotMeta, StorageError, StoredMembership,
    Types,
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
    /// The stored state was replaced (snapshot installed): reload it.
    fn reload(&mut self) -> Result<(), strand_storage::StorageError>;
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
}

impl<M: Machine> StateMachine<M> {
    /// The state machine of `group`, which lets its log store's `recent` entries go once
    /// they are applied.
    pub fn open(
        store: Store,
        group: RaftGroupId,
        machine: M,
        recent: RecentEntries,
    ) -> Result<Self, StorageError> {
        let applied = read_applied(&store, group)?;
        Ok(StateMachine {
            store,
            group,
            machine,
            applied,
            recent,
        })
    }
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
        let mut responses = Vec::new();
        let mut replies = Vec::new();
        for entry in entries {
            self.machine
                .observe_term(entry.log_id.leader_id.term, &mut batch);
            let response = match entry.payload {
                EntryPayload::Blank => Response::None,
                EntryPayload::Normal(mut command) => {
                    let reply = match &mut command {
                        Command::Append(append) => std::mem::take(&mut append.reply),
                        _ => AppliedReply::default(),
                    };
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
        self.machine.finish_round(&mut batch);
        batch.put(
            &keys::state(self.group, keys::APPLIED),
            &codec::encode(&self.applied),
        );
        self.store
            .write_state(batch)
            .map_err(|e| StorageIOError::write_state_machine(&e))?;
        self.machine.publish();
        // Only now: a producer that has its answer must find the records when it reads.
        for (reply, response) in replies {
            reply.send(response);
        }
        if let Some(applied) = self.applied.0 {
            self.recent.forget_upto(applied.index);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            store: self.store.clone(),
            group: self.group,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotData>, StorageError> {
        Ok(Box::default())
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        _snapshot: Box<SnapshotData>,
    ) -> Result<(), StorageError> {
        Err(StorageIOError::write_snapshot(
            Some(meta.signature()),
            &std::io::Error::other(
                "snapshot installation is not supported: Raft logs are never purged, so a \
                 replica always catches up from the log",
            ),
        )
        .into())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<Types>>, StorageError> {
        Ok(None)
    }
}

/// Describes the applied state (metadata only; see [`crate::snapshot`]).
pub struct SnapshotBuilder {
    store: Store,
    group: RaftGroupId,
}

impl RaftSnapshotBuilder<Types> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<Types>, StorageError> {
        let applied = read_applied(&self.store, self.group)?;
        Ok(Snapshot {
            meta: snapshot_meta(&applied),
            snapshot: Box::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::partition::PartitionMachine;
    use crate::types::{AppendBatches, BatchSummary};
    use bytes::Bytes;
    use openraft::CommittedLeaderId;
    use strand_storage::StoreOptions;
    use tokio::sync::oneshot::error::TryRecvError;

    /// An append of one batch of `records` records, as the leader proposes it.
    fn append(records: i32) -> (Entry, tokio::sync::oneshot::Receiver<Response>) {
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
            log_id: LogId::new(CommittedLeaderId::new(1, 1), 1),
            payload: EntryPayload::Normal(command),
        };
        (entry, receiver)
    }

    #[tokio::test]
    async fn the_proposer_gets_the_result_once_the_append_is_visible() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreOptions::new(dir.path())).unwrap();
        let (machine, status) = PartitionMachine::open(store.partition_log(1)).unwrap();
        let mut sm =
            StateMachine::open(store.clone(), 1, machine, RecentEntries::default()).unwrap();
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
}
