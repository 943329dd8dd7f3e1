//! openraft's network interface for one group, routed through the node's shared
//! [`Transport`], which carries every group's messages to a peer over one connection.

use std::future::Future;
use std::sync::Arc;

use openraft::error::{
    Fatal, NetworkError, RPCError, RaftError, ReplicationClosed, StreamingError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, OptionalSend, Snapshot};
use serde::{Deserialize, Serialize};

use crate::snapshot::SnapshotData;
use crate::types::{GroupId, NodeId, SnapshotMeta, Types, Vote};

/// A Raft message for one group on a peer.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftRequest {
    AppendEntries(AppendEntriesRequest<Types>),
    Vote(VoteRequest<NodeId>),
    Snapshot {
        vote: Vote,
        meta: SnapshotMeta,
        data: SnapshotData,
    },
}

/// The peer's answer.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftReply {
    AppendEntries(AppendEntriesResponse<NodeId>),
    Vote(VoteResponse<NodeId>),
    Snapshot(SnapshotResponse<NodeId>),
    /// The peer could not handle the request (unknown group, shutting down, bad input).
    Refused(String),
}

/// Why a message did not reach its peer.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("node {node} at {addr} is unreachable: {reason}")]
    Unreachable {
        node: NodeId,
        addr: String,
        reason: String,
    },
}

/// Carries Raft messages between nodes.
///
/// A single node has no peers, so every group's membership is just itself and openraft
/// never calls out; a message to another node reports it unreachable. The multi-node
/// transport (one multiplexed connection per node pair) plugs in here.
#[derive(Debug, Default)]
pub struct Transport {}

impl Transport {
    pub fn new() -> Arc<Transport> {
        Arc::new(Transport {})
    }

    pub async fn call(
        &self,
        target: NodeId,
        addr: &str,
        _group: GroupId,
        _request: RaftRequest,
    ) -> Result<RaftReply, TransportError> {
        Err(TransportError::Unreachable {
            node: target,
            addr: addr.to_string(),
            reason: "this node has no Raft transport to other nodes".into(),
        })
    }
}

/// Creates the per-peer clients openraft asks for, all sharing the node's transport.
pub struct NetworkFactory {
    group: GroupId,
    transport: Arc<Transport>,
}

impl NetworkFactory {
    pub fn new(group: GroupId, transport: Arc<Transport>) -> NetworkFactory {
        NetworkFactory { group, transport }
    }
}

impl RaftNetworkFactory<Types> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            group: self.group,
            target,
            addr: node.addr.clone(),
            transport: self.transport.clone(),
        }
    }
}

/// One group's view of one peer.
pub struct PeerClient {
    group: GroupId,
    target: NodeId,
    addr: String,
    transport: Arc<Transport>,
}

fn refused(reason: String) -> NetworkError {
    NetworkError::new(&std::io::Error::other(reason))
}

impl PeerClient {
    async fn call(&self, request: RaftRequest) -> Result<RaftReply, Unreachable> {
        self.transport
            .call(self.target, &self.addr, self.group, request)
            .await
            .map_err(|e| Unreachable::new(&e))
    }
}

type RpcResult<T> = Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId>>>;

impl RaftNetwork<Types> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<Types>,
        _option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        match self.call(RaftRequest::AppendEntries(rpc)).await? {
            RaftReply::AppendEntries(r) => Ok(r),
            RaftReply::Refused(reason) => Err(RPCError::Network(refused(reason))),
            other => Err(RPCError::Network(refused(format!(
                "unexpected reply {other:?}"
            )))),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        match self.call(RaftRequest::Vote(rpc)).await? {
            RaftReply::Vote(r) => Ok(r),
            RaftReply::Refused(reason) => Err(RPCError::Network(refused(reason))),
            other => Err(RPCError::Network(refused(format!(
                "unexpected reply {other:?}"
            )))),
        }
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot<Types>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<Types, Fatal<NodeId>>> {
        let request = RaftRequest::Snapshot {
            vote,
            meta: snapshot.meta,
            data: *snapshot.snapshot,
        };
        let reply = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            reply = self.call(request) => reply?,
        };
        match reply {
            RaftReply::Snapshot(r) => Ok(r),
            RaftReply::Refused(reason) => Err(StreamingError::Network(refused(reason))),
            other => Err(StreamingError::Network(refused(format!(
                "unexpected reply {other:?}"
            )))),
        }
    }
}
