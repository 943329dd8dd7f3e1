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
use strand_storage::RaftLog;

use crate::contacts::QuorumContacts;
use crate::log_store::MAX_APPEND_BYTES;
use crate::messages::{Reply, Request};
use crate::snapshot::SnapshotChunk;
use crate::transport::{Transport, TransportError};
use crate::types::{NodeId, RaftGroupId, Types, Vote};

/// See [`PeerClient::backoff`].
const REPLICATION_BACKOFF: Duration = Duration::from_millis(200);

/// How long a peer may take to take one snapshot chunk; the last one, which installs the
/// whole snapshot, gets [`SNAPSHOT_INSTALL_TIMEOUT`].
const SNAPSHOT_CHUNK_TIMEOUT: Duration = Duration::from_secs(10);
const SNAPSHOT_INSTALL_TIMEOUT: Duration = Duration::from_secs(120);

/// Creates the per-peer clients openraft asks for, all sharing the node's transport.
pub struct NetworkFactory {
    node: NodeId,
    group: RaftGroupId,
    transport: Arc<Transport>,
    contacts: Arc<QuorumContacts>,
    /// The group's log, which snapshots are sent from.
    log: RaftLog,
}

impl NetworkFactory {
    pub fn new(
        node: NodeId,
        transport: Arc<Transport>,
        contacts: Arc<QuorumContacts>,
        log: RaftLog,
    ) -> NetworkFactory {
        NetworkFactory {
            node,
            group: log.group(),
            transport,
            contacts,
            log,
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
            log: self.log.clone(),
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
    log: RaftLog,
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

    /// Sends the snapshot's state, then its entries read from this node's log, one chunk at
    /// a time: each waits for the peer's answer, so a transfer takes a share of the peer
    /// connection, never all of it.
    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot<Types>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<Types, Fatal<NodeId>>> {
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            sent = self.send_snapshot(vote, snapshot) => sent.map_err(|e| match e {
                RPCError::Timeout(t) => StreamingError::Timeout(t),
                RPCError::Unreachable(u) => StreamingError::Unreachable(u),
                other => StreamingError::Network(network_error(other.to_string())),
            }),
        }
    }
}

impl PeerClient {
    async fn send_snapshot(
        &self,
        vote: Vote,
        snapshot: Snapshot<Types>,
    ) -> RpcResult<SnapshotResponse<NodeId>> {
        let Snapshot { meta, snapshot } = snapshot;
        let end = meta.last_log_id.map_or(0, |id| id.index + 1);
        let mut next = snapshot.first_entry;
        let mut state = Some(snapshot.state);
        tracing::info!(group = self.group, to = self.target, snapshot = %meta.snapshot_id,
            first_entry = next, "sending a snapshot");
        loop {
            let entries = if next < end {
                self.log
                    .read_limited(next, end, MAX_APPEND_BYTES)
                    .map_err(|e| RPCError::Network(network_error(e.to_string())))?
            } else {
                Vec::new()
            };
            if next < end && entries.first().map(|(i, _)| *i) != Some(next) {
                // Purged since the snapshot was taken: openraft sends the newer one.
                return Err(RPCError::Network(network_error(format!(
                    "entry {next} of group {} is gone",
                    self.group
                ))));
            }
            next += entries.len() as u64;
            let done = next >= end;
            let chunk = SnapshotChunk {
                vote,
                meta: meta.clone(),
                state: state.take(),
                first_entry: snapshot.first_entry,
                entries: entries
                    .into_iter()
                    .map(|(i, e)| (i, bytes::Bytes::from(e)))
                    .collect(),
                done,
            };
            let timeout = if done {
                SNAPSHOT_INSTALL_TIMEOUT
            } else {
                SNAPSHOT_CHUNK_TIMEOUT
            };
            let request = Request::Snapshot {
                group: self.group,
                chunk,
            };
            let option = RPCOption::new(timeout);
            match self
                .call(request, RPCTypes::InstallSnapshot, &option)
                .await?
            {
                Reply::Ack if !done => {}
                Reply::Installed(response) if done => return Ok(response),
                Reply::Refused(reason) => return Err(self.refused(reason)),
                other => {
                    return Err(RPCError::Network(network_error(format!(
                        "unexpected reply {other:?}"
                    ))))
                }
            }
        }
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
        let dir = tempfile::tempdir().unwrap();
        let store =
            strand_storage::Store::open(&strand_storage::StoreOptions::new(dir.path())).unwrap();
        let mut factory =
            NetworkFactory::new(1, Transport::new(), Default::default(), store.raft_log(5));
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
