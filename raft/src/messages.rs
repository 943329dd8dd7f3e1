//! The messages nodes send each other over the transport: requests, replies, and the types
//! they carry. The transport frames them; the node's services ([`crate::peers`],
//! [`crate::heartbeat`], [`crate::handover`], [`crate::membership`]) answer them.
//!
//! They are encoded with postcard, which encodes enum variants by their index and struct
//! fields in order: add new variants at the end and never reorder, or nodes of two versions
//! stop understanding each other.

use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

use crate::snapshot::SnapshotChunk;
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
    /// A piece of a snapshot of `group` for a replica behind its leader's purge point.
    Snapshot {
        group: RaftGroupId,
        chunk: SnapshotChunk,
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
    /// A snapshot's last chunk was received and the snapshot installed (or refused for an
    /// older vote).
    Installed(SnapshotResponse<NodeId>),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    /// Postcard's bytes for each message kind: a variant or field moved breaks this test
    /// before it breaks a rolling upgrade.
    #[test]
    fn messages_keep_their_encoding() {
        let requests: [(Request, &[u8]); 5] = [
            (
                Request::Leaders {
                    from: 1,
                    leaders: vec![LeaderReport {
                        group: 9,
                        term: 2,
                        in_sync: vec![1, 2],
                        voters: Some(vec![1, 2, 3]),
                    }],
                },
                &[3, 1, 1, 9, 2, 2, 1, 2, 1, 3, 1, 2, 3],
            ),
            (Request::HandOver { group: 7, to: 2 }, &[4, 7, 2]),
            (
                Request::StartElection {
                    group: 300,
                    after_ms: 5,
                },
                &[5, 0xac, 0x02, 5],
            ),
            (
                Request::ControllerMembership(ControllerMembership::Admit {
                    id: 3,
                    addr: "a:1".into(),
                }),
                &[6, 0, 3, 3, b'a', b':', b'1'],
            ),
            (
                Request::ControllerMembership(ControllerMembership::Remove { id: 3 }),
                &[6, 1, 3],
            ),
        ];
        for (request, bytes) in requests {
            assert_eq!(codec::encode(&request), bytes, "{request:?}");
        }
        let replies: [(Reply, &[u8]); 7] = [
            (Reply::NotLeader { leader: Some(3) }, &[3, 1, 3]),
            (Reply::NotLeader { leader: None }, &[3, 0]),
            (Reply::Ack, &[4]),
            (
                Reply::HandedOver(Err(HandoverError::NotInSync(3))),
                &[5, 1, 1, 3],
            ),
            (Reply::Changed(Ok(())), &[6, 0]),
            (Reply::Refused("no".into()), &[7, 2, b'n', b'o']),
            (Reply::QuietConfirmed(vec![1, 2]), &[8, 2, 1, 2]),
        ];
        for (reply, bytes) in replies {
            assert_eq!(codec::encode(&reply), bytes, "{reply:?}");
        }
    }
}
