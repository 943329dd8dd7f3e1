//! Snapshots of a group's state machine.
//!
//! The state machine already lives in RocksDB, so a snapshot needs no serialisation to
//! exist: building one only reads the *durable* applied point (what memtable flushes have
//! persisted) and reports it, and Raft then purges its log up to there. Nothing is copied
//! until a follower has fallen behind the purged log; only then is the group's state dumped
//! (from one RocksDB snapshot, so data and applied point agree) and sent.

use strand_storage::keys::GroupId;

/// A group's state-machine contents at one applied point: its `state` keys (group prefix
/// removed) and values, in key order.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SnapshotData {
    pub group: GroupId,
    pub pairs: Vec<(Vec<u8>, Vec<u8>)>,
}
