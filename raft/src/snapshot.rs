//! Snapshots: what a replica behind a group's purge point receives instead of the entries
//! that are gone.
//!
//! A group's state machine may keep reading the entries it applied (a partition serves its
//! record batches from them), so a snapshot at index X is the machine's stored state at X
//! together with the entries from the first one that state still reads up to X. Installed,
//! it leaves the replica exactly as the sender was at X: the same state, the same entries
//! at the same indexes. The decision and its alternatives are in ARCHITECTURE.md.
//!
//! A snapshot is built from the sender's state alone (its entries stay in its log until
//! sent: they are committed, so they never change) and moved in [`SnapshotChunk`]s by
//! [`crate::network`]; the receiver's [`Inbox`] holds them in memory until the last one
//! arrives, so receiving a partition's snapshot takes as much memory as the partition
//! retains.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use openraft::Snapshot;
use serde::{Deserialize, Serialize};

use crate::types::{RaftGroupId, SnapshotMeta, Types, Vote};

/// A snapshot's data.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotData {
    /// Every stored key and value of the group's state machine at the snapshot's index.
    pub state: Vec<(Vec<u8>, Vec<u8>)>,
    /// The first entry the state reads; the snapshot carries the entries from here to its
    /// index.
    pub first_entry: u64,
    /// Those entries (index, encoded entry): empty where the snapshot was built, read from
    /// the sender's log as it is sent, filled in by the receiver.
    pub entries: Vec<(u64, Bytes)>,
}

/// What a group's log store must know of its state machine, to purge safely. Set by the
/// state machine, read by the log store. Cheap to clone.
///
/// - The floor: the first entry the machine still reads. The store never deletes at or above
///   it, whatever openraft asks: openraft purges a replica's log up to a snapshot it has just
///   installed, entries the snapshot brought included.
/// - The applied entry whose effects are written. openraft records a purge up to a snapshot
///   it is installing without waiting for the install; recorded before the install is
///   written, it would leave a replica that crashed in between with a log that starts after
///   its state ends. The store leaves such a purge to the install, which records it in the
///   same write as the state.
#[derive(Clone, Debug, Default)]
pub struct LogFloor(Arc<[AtomicU64; 2]>);

const FLOOR: usize = 0;
const APPLIED: usize = 1;

impl LogFloor {
    /// The first entry that must stay.
    pub fn get(&self) -> u64 {
        self.0[FLOOR].load(Ordering::Acquire)
    }

    /// The last entry whose effects are written.
    pub fn applied(&self) -> u64 {
        self.0[APPLIED].load(Ordering::Acquire)
    }

    pub(crate) fn set(&self, floor: u64, applied: u64) {
        self.0[FLOOR].store(floor, Ordering::Release);
        self.0[APPLIED].store(applied, Ordering::Release);
    }
}

impl SnapshotData {
    /// The bytes of the entries it carries.
    pub fn entry_bytes(&self) -> u64 {
        self.entries.iter().map(|(_, e)| e.len() as u64).sum()
    }
}

/// One message of a snapshot's transfer: the first carries the state, then the entries
/// follow in order, a bounded number of bytes at a time; the last is marked `done`.
#[derive(Debug, Serialize, Deserialize)]
pub struct SnapshotChunk {
    /// The sending leader's vote, checked when the snapshot is installed.
    pub vote: Vote,
    pub meta: SnapshotMeta,
    /// The machine's state, on the first chunk only.
    pub state: Option<Vec<(Vec<u8>, Vec<u8>)>>,
    pub first_entry: u64,
    pub entries: Vec<(u64, Bytes)>,
    pub done: bool,
}

/// At most this many snapshots are received at once (each is held in memory whole); a
/// sender refused for it retries after its backoff.
const MAX_RECEIVING: usize = 4;

/// A transfer with no chunk for this long is dropped (its sender stopped or was deposed).
const IDLE: Duration = Duration::from_secs(60);

/// Snapshots being received, by group, one at a time per group.
#[derive(Default)]
pub struct Inbox {
    receiving: Mutex<HashMap<RaftGroupId, Receiving>>,
    /// Snapshots installed, and the entry bytes they carried, for the metrics.
    pub installed: AtomicU64,
    pub installed_bytes: AtomicU64,
}

struct Receiving {
    vote: Vote,
    snapshot_id: String,
    data: SnapshotData,
    next: u64,
    last_chunk: Instant,
}

impl Inbox {
    /// Takes one chunk; once the last is in, the whole snapshot and the vote to install it
    /// under. A first chunk starts a transfer, replacing one from the same or an older
    /// leader; a chunk of another transfer is refused and leaves the current one alone; a
    /// chunk out of order ends the transfer (the sender starts it again).
    pub fn receive(
        &self,
        group: RaftGroupId,
        chunk: SnapshotChunk,
    ) -> Result<Option<(Vote, Snapshot<Types>)>, String> {
        let now = Instant::now();
        let mut receiving = self.receiving.lock().expect("snapshot inbox lock");
        receiving.retain(|_, r| now.duration_since(r.last_chunk) < IDLE);
        if let Some(state) = chunk.state {
            match receiving.get(&group) {
                Some(r) if r.vote > chunk.vote => {
                    return Err(format!(
                        "a snapshot of group {group} from a newer leader is being received"
                    ))
                }
                None if receiving.len() >= MAX_RECEIVING => {
                    return Err(format!(
                        "{MAX_RECEIVING} snapshots are being received already"
                    ))
                }
                _ => {}
            }
            receiving.insert(
                group,
                Receiving {
                    vote: chunk.vote,
                    snapshot_id: chunk.meta.snapshot_id.clone(),
                    data: SnapshotData {
                        state,
                        first_entry: chunk.first_entry,
                        entries: Vec::new(),
                    },
                    next: chunk.first_entry,
                    last_chunk: now,
                },
            );
        }
        let Some(r) = receiving.get_mut(&group) else {
            return Err(format!("no snapshot of group {group} is being received"));
        };
        if r.vote != chunk.vote || r.snapshot_id != chunk.meta.snapshot_id {
            return Err(format!("a chunk of another snapshot of group {group}"));
        }
        let gap = (r.next..)
            .zip(&chunk.entries)
            .find(|(due, (index, _))| index != due)
            .map(|(due, (index, _))| format!("entry {index} where {due} was due"));
        if let Some(why) = gap {
            receiving.remove(&group);
            return Err(why);
        }
        r.next += chunk.entries.len() as u64;
        r.last_chunk = now;
        r.data.entries.extend(chunk.entries);
        if !chunk.done {
            return Ok(None);
        }
        let r = receiving.remove(&group).expect("present above");
        drop(receiving);
        let last = chunk.meta.last_log_id.map_or(0, |id| id.index);
        if r.next <= last && r.data.first_entry <= last {
            return Err(format!(
                "the snapshot ends at entry {last} but its entries stop before {}",
                r.next
            ));
        }
        Ok(Some((
            r.vote,
            Snapshot {
                meta: chunk.meta,
                snapshot: Box::new(r.data),
            },
        )))
    }

    /// Counts a snapshot installed that carried `bytes` of entries.
    pub fn count_installed(&self, bytes: u64) {
        self.installed.fetch_add(1, Ordering::Relaxed);
        self.installed_bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::CommittedLeaderId;

    fn chunk(first: bool, entries: &[u64], done: bool) -> SnapshotChunk {
        SnapshotChunk {
            vote: Vote::new_committed(2, 1),
            meta: SnapshotMeta {
                last_log_id: Some(crate::types::LogId::new(CommittedLeaderId::new(2, 1), 12)),
                last_membership: Default::default(),
                snapshot_id: "2-12".into(),
            },
            state: first.then(|| vec![(vec![0, 0, 0, 0, 0, 0, 0, 4, 1], vec![7])]),
            first_entry: 10,
            entries: entries
                .iter()
                .map(|i| (*i, Bytes::from(vec![*i as u8])))
                .collect(),
            done,
        }
    }

    fn taken(result: Result<Option<(Vote, Snapshot<Types>)>, String>) -> bool {
        matches!(result, Ok(None))
    }

    #[test]
    fn chunks_make_a_snapshot_only_whole_and_in_order() {
        let inbox = Inbox::default();
        assert!(
            inbox.receive(4, chunk(false, &[10], false)).is_err(),
            "no start"
        );
        assert!(taken(inbox.receive(4, chunk(true, &[10], false))));
        assert!(taken(inbox.receive(4, chunk(false, &[11], false))));
        let (vote, snapshot) = inbox
            .receive(4, chunk(false, &[12], true))
            .unwrap()
            .unwrap();
        assert_eq!(vote, Vote::new_committed(2, 1));
        assert_eq!(snapshot.meta.snapshot_id, "2-12");
        let indexes: Vec<u64> = snapshot.snapshot.entries.iter().map(|(i, _)| *i).collect();
        assert_eq!(indexes, [10, 11, 12]);
        assert_eq!(snapshot.snapshot.state.len(), 1);

        // A gap ends the transfer; so does a snapshot that stops short of its index.
        assert!(taken(inbox.receive(4, chunk(true, &[10], false))));
        assert!(inbox.receive(4, chunk(false, &[12], false)).is_err());
        assert!(
            inbox.receive(4, chunk(false, &[11], false)).is_err(),
            "ended"
        );
        assert!(inbox.receive(4, chunk(true, &[10, 11], true)).is_err());
    }

    #[test]
    fn a_stray_chunk_leaves_the_transfer_alone_and_transfers_are_bounded() {
        let inbox = Inbox::default();
        let older = |mut c: SnapshotChunk| {
            c.vote = Vote::new_committed(1, 3);
            c
        };
        assert!(taken(inbox.receive(4, chunk(true, &[10], false))));
        // An older leader's chunk, or its new transfer, is refused; the current one goes on.
        assert!(inbox.receive(4, older(chunk(false, &[11], false))).is_err());
        assert!(inbox.receive(4, older(chunk(true, &[10], false))).is_err());
        assert!(matches!(
            inbox.receive(4, chunk(false, &[11, 12], true)),
            Ok(Some(_))
        ));

        for group in 0..MAX_RECEIVING as u64 {
            assert!(taken(inbox.receive(group, chunk(true, &[], false))));
        }
        assert!(inbox.receive(99, chunk(true, &[], false)).is_err());
        assert!(
            taken(inbox.receive(0, chunk(true, &[], false))),
            "a group already receiving starts over"
        );
    }
}
