//! The replicas of the Kafka state machines: a partition's Raft group with its reader and
//! published status, and the controller's with its published metadata and offsets.

use std::sync::Arc;

use tokio::sync::watch;

use super::controller::{ClusterMetadata, GroupOffsets, SharedOffsets};
use super::partition::{PartitionReader, PartitionStatus};
use crate::replica::Replica;

/// A partition replica: its Raft group, the reader of its data and its published status.
pub struct PartitionReplica {
    pub replica: Replica,
    pub reader: PartitionReader,
    pub(crate) status: watch::Receiver<PartitionStatus>,
}

impl PartitionReplica {
    pub fn status(&self) -> PartitionStatus {
        *self.status.borrow()
    }

    /// A receiver that changes whenever the high watermark moves (for long polls).
    pub fn watch_status(&self) -> watch::Receiver<PartitionStatus> {
        self.status.clone()
    }
}

/// The controller replica and its published metadata.
pub struct ControllerReplica {
    pub replica: Replica,
    pub(crate) metadata: watch::Receiver<Arc<ClusterMetadata>>,
    pub(crate) offsets: SharedOffsets,
}

impl ControllerReplica {
    pub fn metadata(&self) -> Arc<ClusterMetadata> {
        self.metadata.borrow().clone()
    }

    pub fn watch_metadata(&self) -> watch::Receiver<Arc<ClusterMetadata>> {
        self.metadata.clone()
    }

    /// Consumer groups' committed offsets, as this replica has applied them.
    pub fn offsets(&self) -> std::sync::RwLockReadGuard<'_, GroupOffsets> {
        self.offsets.read().expect("offsets lock")
    }
}
