//! openraft's network interface for one group, over the node's shared [`Transport`].

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{
    Fatal, NetworkError, RPCError, RaftError, ReplicationClosed, StreamingError, Timeout,
    Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, OptionalSend, RPCTypes, Snapshot};

use crate::contacts::QuorumContacts;
use crate::messages::{Reply, Request};
use crate::transport::{Transport, TransportError};
use crate::types::{NodeId, RaftGroupId, Types, Vote};

/// See [`PeerClient::backoff`].
const REPLICATION_BACKOFF: Duration = Duration::from_millis(200);

/// Creates the per-peer clients openraft asks for, all sharing the node's transport.
pub struct NetworkFactory {
    node: NodeId,
    group: RaftGroupId,
    transport: Arc<Transport>,
    contacts: Arc<QuorumContacts>,
}

impl NetworkFactory {
    pub fn new(
        node: NodeId,
        group: RaftGroupId,
        transport: Arc<Transport>,
        contacts: Arc<QuorumContacts>,
    ) -> NetworkFactory {
        NetworkFactory {
            node,
            group,
            transport,
            contacts,
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
            contacts: self.contacts.clone(),
        }
    }
}

/// One group's view of one peer.
pub struct PeerClient {
    from: NodeId,
    group: RaftGroupId,
    target: NodeId,
    addr: String,
    transport: Arc<Transport>,
    contacts: Arc<QuorumContacts>,
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

    /// The peer answered but cannot take this group's RPCs now: most often it is restarting and
    /// has not opened the group yet. openraft retries a `Network` error at once, which spins
    /// until the group opens and starves the starting node of CPU; `Unreachable` makes the
    /// replication stream wait [`RaftNetwork::backoff`] first.
    fn refused(&self, reason: String) -> RPCError<NodeId, BasicNode, RaftError<NodeId>> {
        let reason = format!("node {} refused: {reason}", self.target);
        RPCError::Unreachable(Unreachable::new(&std::io::Error::other(reason)))
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
        let sent = Instant::now();
        match self.call(request, RPCTypes::AppendEntries, &option).await? {
            Reply::AppendEntries(r) => {
                if !matches!(r, AppendEntriesResponse::HigherVote(_)) {
                    self.contacts.accepted_by(self.group, self.target, sent);
                }
                Ok(r)
            }
            Reply::Refused(reason) => Err(self.refused(reason)),
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
            Reply::Refused(reason) => Err(self.refused(reason)),
            other => Err(RPCError::Network(network_error(format!(
                "unexpected reply {other:?}"
            )))),
        }
    }

    /// How long a replication stream waits after the peer was unreachable or refused. Shorter
    /// than openraft's 500 ms: a restarted peer opens its groups within a few hundred
    /// milliseconds of answering, and each wait delays its catch-up; the transport already
    /// rate-limits reconnects to a dead peer.
    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(REPLICATION_BACKOFF))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{self, Handler};
    use openraft::Vote;

    /// A peer that answers every request with a refusal, as a restarting node does for the
    /// groups it has not opened yet.
    async fn refusing_peer() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let handler: Handler =
            Arc::new(|_| Box::pin(async { Reply::Refused("group 5 is not open".into()) }));
        tokio::spawn(transport::serve(listener, handler));
        addr
    }

    #[tokio::test]
    async fn a_refusal_is_unreachable_so_the_replication_stream_backs_off() {
        let addr = refusing_peer().await;
        let mut factory = NetworkFactory::new(1, 5, Transport::new(), Default::default());
        let mut peer = factory.new_client(2, &BasicNode { addr }).await;
        let option = RPCOption::new(Duration::from_secs(5));

        let append = AppendEntriesRequest {
            vote: Vote::new_committed(1, 1),
            prev_log_id: None,
            leader_commit: None,
            entries: vec![],
        };
        let err = peer
            .append_entries(append, option.clone())
            .await
            .unwrap_err();
        assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");
        assert!(err.to_string().contains("group 5 is not open"), "{err}");

        let vote = VoteRequest::new(Vote::new(2, 1), None);
        let err = peer.vote(vote, option).await.unwrap_err();
        assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");
    }
}
