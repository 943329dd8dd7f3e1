//! Snapshots, which Strand does not need yet.
//!
//! A partition's Raft log is its data, so nothing is ever purged from it: a follower that
//! falls behind, or a new replica, catches up from the log itself, as a Kafka follower
//! fetches the leader's log. Raft snapshots only become necessary once retention deletes
//! the head of a log; then a replica behind that point must receive the partition's
//! remaining data in a snapshot. Until then the snapshot is its metadata alone, openraft
//! is configured never to take one, and installing one is refused.

use serde::{Deserialize, Serialize};

/// A snapshot's data: empty, see the module documentation.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotData {}
