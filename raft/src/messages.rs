//! The messages nodes send each other over the transport: requests, replies, and the types
//! they carry. The transport frames them; the node's services ([`crate::peers`],
//! [`crate::heartbeat`], [`crate::handover`], [`crate::membership`]) answer them.
//!
//! They are encoded with postcard, which encodes enum variants by their index and struct
//! fields in order: add new variants at the end and never reorder, or nodes of two versions
//! stop understanding each other.

use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, VoteRequest, VoteResponse};
use serde::{Deserialize, Serialize};

use crate::types::{Command, NodeId, RaftGroupId, Response, Types, Vote};

/// A message to a peer.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    AppendEntries {
        group: RaftGroupId,
        rpc: AppendEntriesRequest<Types>,
    },
    Vote {
        group: RaftGroupId,
        rpc: VoteRequest<NodeId>,
    },
    /// Propose `command` to `group` on its leader (for callers on other nodes).
    Propose {
        group: RaftGroupId,
        command: Command,
    },
    /// The groups the sender leads, with their terms and in-sync replicas.
    Leaders {
        from: NodeId,
        leaders: Vec<LeaderReport>,
    },
    /// Hand the leadership of `group` (which the receiver leads) over to `to`.
    HandOver { group: RaftGroupId, to: NodeId },
    /// Stand for election in `group` after `after_ms`: its leader is handing it over.
    StartElection { group: RaftGroupId, after_ms: u64 },
    /// Change the controller group's members (on its leader).
    ControllerMembership(ControllerMembership),
    /// Heartbeats of the quiet groups `from` leads and the receiver follows (see
    /// `crate::heartbeat`).
    QuietHeartbeats {
        from: NodeId,
        groups: Vec<QuietGroup>,
    },
}

/// A peer's answer.
#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    AppendEntries(AppendEntriesResponse<NodeId>),
    Vote(VoteResponse<NodeId>),
    Proposed(Response),
    /// The receiver does not lead the group; `leader` if it knows who does.
    NotLeader {
        leader: Option<NodeId>,
    },
    Ack,
    HandedOver(Result<(), HandoverError>),
    Changed(Result<(), String>),
    /// The request could not be handled (unknown group, shutting down).
    Refused(String),
    /// The quiet groups whose heartbeat the receiver confirmed.
    QuietConfirmed(Vec<RaftGroupId>),
}

/// One group a node leads, as it reports it to its peers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderReport {
    pub group: RaftGroupId,
    pub term: u64,
    pub in_sync: Vec<NodeId>,
    /// The group's voters, once the membership that names them is committed; `None`
    /// while it changes.
    pub voters: Option<Vec<NodeId>>,
}

/// One group in a [`Request::QuietHeartbeats`]: its leader's vote and last log index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuietGroup {
    pub group: RaftGroupId,
    pub vote: Vote,
    pub last_log_index: u64,
}

/// A change to the controller group's members.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControllerMembership {
    /// Add a node as a learner.
    Admit { id: NodeId, addr: String },
    /// Take a node out (replacing it by a learner if it was a voter).
    Remove { id: NodeId },
}

/// Why leadership was not handed over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum HandoverError {
    #[error("node {0} already leads the partition")]
    NotNeeded(NodeId),
    #[error("node {0} is not an in-sync replica of the partition")]
    NotInSync(NodeId),
    #[error("the partition has no leader right now")]
    NoLeader,
    #[error("{0}")]
    Unavailable(String),
}
