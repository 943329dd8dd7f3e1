//! Replication for Strand: one openraft group per partition plus one controller group,
//! all on one RocksDB and one transport per node.
//!
//! - [`types`]: the openraft type configuration and the replicated commands.
//! - [`log_store`], [`state_machine`]: thin adapters from openraft's storage traits to
//!   `strand-storage`; the state machines behind them are plain Rust ([`partition`],
//!   [`controller`]) and are tested without Raft.
//! - [`node`]: the multi-raft node that opens, creates and removes groups; [`replica`]: one
//!   group on it.
//! - [`transport`]: one multiplexed TCP connection per peer; [`network`]: openraft's network
//!   traits over it; [`peers`]: forwarded proposals and leader reports between nodes;
//!   [`handover`]: moving leadership to preferred replicas (ElectLeaders, balancing);
//!   [`membership`]: nodes joining and leaving, partitions moving between nodes;
//!   `election_timer`: openraft's election timer, run only in groups that may need it;
//!   `heartbeat`: every group's heartbeats at once, one message per peer for quiet groups.
//!
//! openraft is used with `single-term-leader`, so a term has at most one leader and the
//! term can serve as the Kafka leader epoch.

// openraft's storage traits return its `StorageError` (about 200 bytes) by value; our
// helpers return the same type so `?` works, and the size is openraft's choice.
#![allow(clippy::result_large_err)]

mod codec;
pub mod controller;
mod election_timer;
pub mod handover;
mod heartbeat;
pub mod log_store;
pub mod membership;
pub mod network;
pub mod node;
pub mod partition;
pub mod peers;
pub mod producers;
pub mod recent_entries;
pub mod replica;
pub mod snapshot;
pub mod state_machine;
pub mod transport;
pub mod types;

pub use controller::{ClusterMetadata, GroupOffsets, PartitionInfo, TopicInfo, CONTROLLER_GROUP};
pub use handover::HandoverError;
pub use membership::ControllerMembership;
pub use node::{NodeError, NodeIdentity, RaftNode, RaftTuning};
pub use partition::{PartitionReader, PartitionStatus, StoredBatch};
pub use peers::KnownLeader;
pub use replica::{Leadership, PartitionReplica, Proposal, ProposeError, Replica};
pub use transport::Transport;
pub use types::{
    AppendBatches, BatchSummary, BrokerInfo, Command, CommittedOffset, ControllerCommand, GroupId,
    NodeId, Rejection, Response, TopicPartition,
};
