//! Replication for Strand: one openraft group per partition plus one controller group,
//! all on one RocksDB and one transport per node.
//!
//! - `types`: the openraft type configuration and the replicated commands.
//! - `log_store`, `state_machine`: thin adapters from openraft's storage traits to
//!   `strand-storage`; the state machines behind them are plain Rust, in `kafka/`
//!   (`partition`, `producer_state`, `controller`), and are tested without Raft.
//! - `node`: the multi-raft node that opens, creates and removes groups; `replica`: one
//!   group on it.
//! - `transport`: one multiplexed TCP connection per peer, carrying the `messages`;
//!   `network`: openraft's network traits over it; `contacts`: when followers last accepted
//!   this node as leader (its quorum checks); `peers`: forwarded proposals and leader
//!   reports between nodes; `handover`: moving leadership to preferred replicas
//!   (ElectLeaders, balancing); `membership`: nodes joining and leaving, partitions moving
//!   between nodes; `election_timer`: openraft's election timer, run only in groups that may
//!   need it; `heartbeat`: every group's heartbeats at once, one message per peer for quiet
//!   groups.
//!
//! The modules are private; what the broker uses is re-exported below.
//!
//! openraft is used with `single-term-leader`, so a term has at most one leader and the
//! term can serve as the Kafka leader epoch.

// openraft's storage traits return its `StorageError` (about 200 bytes) by value; our
// helpers return the same type so `?` works, and the size is openraft's choice.
#![allow(clippy::result_large_err)]

mod codec;
mod contacts;
mod election_timer;
mod handover;
mod heartbeat;
mod kafka;
mod log_store;
mod membership;
mod messages;
mod network;
mod node;
mod peers;
mod purge;
mod recent_entries;
mod replica;
mod snapshot;
mod state_machine;
mod transport;
mod types;

pub use kafka::controller::{
    ClusterMetadata, GroupOffsets, PartitionInfo, TopicInfo, CONTROLLER_GROUP,
};
pub use kafka::partition::{PartitionReader, PartitionStatus, StoredBatch};
pub use kafka::replicas::{ControllerReplica, PartitionReplica};
pub use messages::{ControllerMembership, HandoverError};
pub use node::{NodeError, NodeIdentity, RaftNode, RaftTuning};
pub use peers::KnownLeader;
pub use replica::{Leadership, Proposal, ProposeError, Replica};
pub use transport::Transport;
pub use types::{
    AppendBatches, BatchSummary, BrokerInfo, Command, CommittedOffset, ControllerCommand, NodeId,
    RaftGroupId, Rejection, Response, TopicPartition,
};
