//! openraft's network interface for one group, over the node's shared [`Transport`].

use std::future::Future;
use std::sync::Arc;

use openraft::error::{
    Fatal, NetworkError, RPCError, RaftError, ReplicationClosed, StreamingError, Timeout,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, OptionalSend, RPCTypes, Snapshot};

use crate::transport::{Reply, Request, Transport, TransportError};
use crate::types::{GroupId, NodeId, Types, Vote};

/// Creates the per-peer clients openraft asks for, all sharing the node's transport.
pub struct NetworkFactory {
    node: NodeId,
    group: GroupId,
    transport: Arc<Transport>,
}

impl NetworkFactory {
    pub fn new(node: NodeId, group: GroupId, transport: Arc<Transport>) -> NetworkFactory {
        NetworkFactory {
            node,
            group,
            transport,
        }
    }
}

impl RaftNetworkFactory<Types> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            from: self.node,
            group: self.group,
            target,
            addr: node.addr.clone(),
            transport: self.transport.clone(),
        }
    }
}

/// One group's view of one peer.
pub struct PeerClient {
    from: NodeId,
    group: GroupId,
    target: NodeId,
    addr: String,
    transport: Arc<Transport>,
}

fn network_error(reason: impl Into<String>) -> NetworkError {
    NetworkError::new(&std::io::Error::other(reason.into()))
}

type RpcResult<T> = Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId>>>;

impl PeerClient {
    async fn call(&self, request: Request, rpc: RPCTypes, option: &RPCOption) -> RpcResult<Reply> {
        match self
            .transport
            .call(self.target, &self.addr, &request, option.hard_ttl())
            .await
        {
            Ok(reply) => Ok(reply),
            Err(e @ TransportError::Unreachable { .. }) => {
                Err(RPCError::Unreachable(Unreachable::new(&e)))
            }
            Err(TransportError::Timeout { timeout, .. }) => Err(RPCError::Timeout(Timeout {
                action: rpc,
                id: self.from,
                target: self.target,
                timeout,
            })),
        }
    }
}

impl RaftNetwork<Types> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<Types>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        let request = Request::AppendEntries {
            group: self.group,
            rpc,
        };
        match self.call(request, RPCTypes::AppendEntries, &option).await? {
            Reply::AppendEntries(r) => {
                if !matches!(r, AppendEntriesResponse::HigherVote(_)) {
                    self.transport.accepted_by(self.group, self.target);
                }
                Ok(r)
            }
            Reply::Refused(reason) => Err(RPCError::Network(network_error(reason))),
            other => Err(RPCError::Network(network_error(format!(
                "unexpected reply {other:?}"
            )))),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        let request = Request::Vote {
            group: self.group,
            rpc,
        };
        match self.call(request, RPCTypes::Vote, &option).await? {
            Reply::Vote(r) => Ok(r),
            Reply::Refused(reason) => Err(RPCError::Network(network_error(reason))),
            other => Err(RPCError::Network(network_error(format!(
                "unexpected reply {other:?}"
            )))),
        }
    }

    /// Never used: Raft logs are never purged, so every peer catches up from the log (see
    /// [`crate::snapshot`]).
    async fn full_snapshot(
        &mut self,
        _vote: Vote,
        _snapshot: Snapshot<Types>,
        _cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<Types, Fatal<NodeId>>> {
        Err(StreamingError::Network(network_error(
            "snapshot transfer is not supported: Raft logs are never purged",
        )))
    }
}
