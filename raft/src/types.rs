//! The openraft type configuration and the commands every Raft group replicates.
//!
//! One configuration serves all groups: the controller group applies [`ControllerCommand`]s,
//! partition groups apply [`Command::Append`]. Commands carry everything the state machine
//! needs, already validated by the broker, so applying them is deterministic and identical
//! on every replica.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

pub use strand_storage::keys::RaftGroupId;

/// Node ids are Kafka broker ids.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// Strand's openraft types.
    pub Types:
        D = Command,
        R = Response,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        SnapshotData = crate::snapshot::SnapshotData,
);

pub type Raft = openraft::Raft<Types>;
pub type LogId = openraft::LogId<NodeId>;
pub type Entry = openraft::Entry<Types>;
pub type Vote = openraft::Vote<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
pub type StorageError = openraft::StorageError<NodeId>;

/// A replicated command.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    /// Append record batches to a partition.
    Append(AppendBatches),
    /// Forget a partition's idempotent producers whose last batch is older than `before`
    /// (milliseconds since the epoch, decided by the leader).
    ExpireProducers { before: i64 },
    /// Change cluster metadata (controller group only).
    Controller(ControllerCommand),
    /// Move a partition's log start offset up to `offset` (or its log end, if lower):
    /// retention and DeleteRecords, decided by the leader and applied at the same point of
    /// the log on every replica. A start at or below the current one changes nothing.
    AdvanceLogStart { offset: i64 },
    /// Clean a compacted partition's batches below `upto` (a batch boundary the leader
    /// chose): keep each key's last record, drop tombstones first cleaned more than
    /// `delete_retention_ms` before `now` (ms since the epoch). Offsets never change. The
    /// leader decides the inputs; every replica computes the same result from them.
    Compact {
        upto: i64,
        now: i64,
        delete_retention_ms: i64,
    },
    /// [`Command::Append`], with the proposing leader's clock (ms since the epoch): the
    /// time idempotent producers' state keeps, so a client's timestamps cannot keep a
    /// producer from expiring. Only proposed once every node reads it (a feature level).
    AppendAt { append: AppendBatches, now: i64 },
}

impl Command {
    /// The batches of an append, timed or not.
    pub fn append(&self) -> Option<&AppendBatches> {
        match self {
            Command::Append(append) | Command::AppendAt { append, .. } => Some(append),
            _ => None,
        }
    }

    pub fn append_mut(&mut self) -> Option<&mut AppendBatches> {
        match self {
            Command::Append(append) | Command::AppendAt { append, .. } => Some(append),
            _ => None,
        }
    }
}

/// Record batches for one partition, exactly as the producer sent them, with the facts the
/// broker learnt while validating them. The state machine assigns offsets and stamps each
/// batch's header when it applies the command.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AppendBatches {
    /// The batches, back to back.
    pub data: Bytes,
    /// One summary per batch, in order.
    pub batches: Vec<BatchSummary>,
    /// Where the leader that proposed the append wants its result. Kept in memory only:
    /// entries sent to followers or read back from disk have none.
    #[serde(skip)]
    pub reply: AppliedReply,
}

/// Hands an append's result from the state machine straight to the produce request that
/// waits for it, as soon as the append is applied and visible to readers. openraft
/// delivers the same result too, but only after a round trip through the group's core
/// task, which is busy appending and replicating the group's next entries: the direct
/// hand-off is what the proposer uses whenever it arrives first. If the entry is never
/// applied here (truncated after a change of leader), the sender is dropped and openraft's
/// answer is the one that counts.
#[derive(Clone, Default)]
pub struct AppliedReply(Option<Arc<Mutex<Option<oneshot::Sender<Response>>>>>);

impl AppliedReply {
    pub fn channel() -> (AppliedReply, oneshot::Receiver<Response>) {
        let (sender, receiver) = oneshot::channel();
        (
            AppliedReply(Some(Arc::new(Mutex::new(Some(sender))))),
            receiver,
        )
    }

    /// Whether a proposer waits on this reply (only on the node that proposed it).
    pub fn is_wanted(&self) -> bool {
        self.0.is_some()
    }

    /// Sends `response`; only the first call of all the entry's copies sends anything.
    pub fn send(&self, response: Response) {
        let sender = self
            .0
            .as_ref()
            .and_then(|slot| slot.lock().expect("reply lock").take());
        if let Some(sender) = sender {
            // The proposer may have given up (timeout); nothing then waits for it.
            let _ = sender.send(response);
        }
    }
}

impl std::fmt::Debug for AppliedReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_wanted() {
            "AppliedReply(wanted)"
        } else {
            "AppliedReply(none)"
        })
    }
}

/// What the state machine needs to know of a batch without parsing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchSummary {
    /// Size in bytes, header included.
    pub len: u32,
    /// Offsets the batch occupies, minus one.
    pub last_offset_delta: i32,
    pub max_timestamp: i64,
    /// The idempotent producer's id (-1 for none), epoch and first sequence number.
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
}

/// A change to cluster metadata.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControllerCommand {
    /// Create a topic whose partition `i` is replicated on `replicas[i]`.
    CreateTopic {
        name: String,
        topic_id: [u8; 16],
        replicas: Vec<Vec<NodeId>>,
        configs: BTreeMap<String, String>,
    },
    DeleteTopic {
        name: String,
    },
    /// Record (or update) a broker's addresses.
    RegisterBroker(BrokerInfo),
    /// Hand out the next `count` producer ids (to one broker's InitProducerId).
    AllocateProducerIds {
        count: u32,
    },
    /// Record a consumer group's committed offsets, checked by the group coordinator.
    CommitOffsets {
        group: String,
        offsets: Vec<(TopicPartition, CommittedOffset)>,
    },
    /// Forget a consumer group's committed offsets: those of `partitions`, or all of them.
    DeleteOffsets {
        group: String,
        partitions: Option<Vec<TopicPartition>>,
    },
    /// Start moving a partition to `replicas` (the partition's leader carries it out), or
    /// with `None` cancel a move not yet completed.
    Reassign {
        group: RaftGroupId,
        replicas: Option<Vec<NodeId>>,
    },
    /// The partition's voters are now `replicas`: the move is done.
    CompleteReassignment {
        group: RaftGroupId,
        replicas: Vec<NodeId>,
    },
    /// Replace a topic's configs.
    SetTopicConfigs {
        name: String,
        configs: BTreeMap<String, String>,
    },
    /// Forget a broker that holds no replicas any more.
    UnregisterBroker {
        id: NodeId,
    },
    /// Add partitions to a topic that has `count - replicas.len()` of them, new partition
    /// `i` replicated on `replicas[i]` (CreatePartitions). Refused if the topic's count
    /// changed since the broker planned it.
    AddPartitions {
        name: String,
        count: usize,
        replicas: Vec<Vec<NodeId>>,
    },
    /// Raise cluster feature `name` to `level` (never lowers it): from then on nodes may
    /// write what that level adds, since every node can read it.
    FinalizeFeature {
        name: String,
        level: i16,
    },
}

/// A topic name and partition index.
pub type TopicPartition = (String, i32);

/// A consumer group's committed position in one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedOffset {
    pub offset: i64,
    /// The leader epoch of the last record consumed, or -1.
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    /// When the coordinator accepted the commit, in milliseconds since the epoch.
    pub commit_timestamp: i64,
}

/// The outcome of applying a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Batches were appended; the first got `base_offset`.
    Appended {
        base_offset: i64,
        log_start_offset: i64,
    },
    TopicCreated {
        groups: Vec<RaftGroupId>,
    },
    TopicDeleted,
    BrokerRegistered,
    /// Producer ids `first .. first + count` are now this caller's to hand out.
    ProducerIds {
        first: i64,
        count: u32,
    },
    ProducersExpired {
        count: u32,
    },
    OffsetsCommitted,
    OffsetsDeleted {
        count: u32,
    },
    /// Reassign, CompleteReassignment and UnregisterBroker succeeded.
    Done,
    /// The command was refused; nothing changed.
    Rejected(Rejection),
    /// Raft's own entries (blank, membership) produce no result.
    None,
    /// The partition's log start offset after an `AdvanceLogStart`.
    LogStartAdvanced {
        log_start_offset: i64,
    },
    /// What a `Compact` did: the bytes of the batches it went over, before and after.
    Compacted {
        bytes_before: u64,
        bytes_after: u64,
    },
}

/// Why a command was refused at apply time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Rejection {
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    #[error("this group does not accept that command")]
    WrongGroup,
    #[error("the batch summaries do not match the data")]
    InvalidAppend,
    #[error("the batch does not continue its producer's sequence")]
    OutOfOrderSequence,
    #[error("the producer's epoch is older than the partition's")]
    InvalidProducerEpoch,
    #[error("no partition is replicated by group {0}")]
    UnknownPartition(RaftGroupId),
    #[error("no reassignment of group {0} is in progress")]
    NoReassignment(RaftGroupId),
    #[error("broker {0} is not in the cluster")]
    UnknownBroker(NodeId),
    #[error("broker {0} still holds replicas of {1}: move them away first")]
    BrokerInUse(NodeId, String),
    #[error("topic '{0}' has {1} partitions now")]
    PartitionCountChanged(String, usize),
}

/// A broker as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerInfo {
    pub id: NodeId,
    /// Kafka listener address clients should use.
    pub host: String,
    pub port: u16,
    /// Address of the node's Raft transport.
    pub raft_addr: String,
    pub rack: Option<String>,
}
