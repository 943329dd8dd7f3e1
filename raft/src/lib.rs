//! Replication for Strand: one openraft group per partition plus one controller group,
//! all on one RocksDB and one transport per node.
//!
//! - [`types`]: the openraft type configuration and the replicated commands.
//! - [`log_store`], [`state_machine`]: thin adapters from openraft's storage traits to
//!   `strand-storage`; the state machines behind them are plain Rust ([`partition`],
//!   [`controller`]) and are tested without Raft.
//! - [`node`]: the multi-raft node that opens, creates and removes groups.
//! - [`network`]: openraft's network traits over the node's transport.
//!
//! openraft is used with `single-term-leader`, so a term has at most one leader and the
//! term can serve as the Kafka leader epoch.

// openraft's storage traits return its `StorageError` (about 200 bytes) by value; our
// helpers return the same type so `?` works, and the size is openraft's choice.
#![allow(clippy::result_large_err)]

mod codec;
pub mod controller;
pub mod log_store;
pub mod network;
pub mod node;
pub mod partition;
pub mod producers;
pub mod snapshot;
pub mod state_machine;
pub mod types;

pub use controller::{ClusterMetadata, PartitionInfo, TopicInfo, CONTROLLER_GROUP};
pub use node::{
    Leadership, NodeIdentity, PartitionReplica, Proposal, ProposeError, RaftNode, RaftTuning,
};
pub use partition::{PartitionReader, PartitionStatus, StoredBatch};
pub use types::{
    AppendBatches, BatchSummary, BrokerInfo, Command, ControllerCommand, GroupId, NodeId,
    Rejection, Response,
};
