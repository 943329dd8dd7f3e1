//! The node-to-node transport: one TCP connection per peer carries every group's Raft
//! messages, forwarded proposals and leadership reports.
//!
//! A frame is `len u32 | id u64 | postcard(message)`; replies carry the id of their request
//! and may come back in any order. On each connection a writer task takes every frame
//! queued since its last write and sends them in one write, so the heartbeats and appends
//! of many groups share syscalls and packets. A connection that breaks fails its pending
//! calls (openraft retries them) and is re-established on the next call.
//!
//! Nothing here is authenticated: the Raft listener belongs on a private network.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, BytesMut};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use crate::codec;
use crate::messages::{Reply, Request};
use crate::types::NodeId;

/// Largest frame accepted from a peer. Append requests carry at most `max_payload_entries`
/// entries of at most a produce request each.
pub const MAX_FRAME: usize = 1 << 30;
/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// After a failed connection attempt, calls fail at once for this long.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(200);

/// Why a call did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("node {node} at {addr} is unreachable: {reason}")]
    Unreachable {
        node: NodeId,
        addr: String,
        reason: String,
    },
    #[error("node {node} did not answer within {timeout:?}")]
    Timeout { node: NodeId, timeout: Duration },
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Reply>>>>;

/// An open connection to one peer.
struct Link {
    frames: mpsc::UnboundedSender<BytesMut>,
    pending: Pending,
}

impl Link {
    fn is_open(&self) -> bool {
        !self.frames.is_closed()
    }
}

struct PeerState {
    addr: String,
    link: Option<Arc<Link>>,
    failed_at: Option<Instant>,
}

/// The node's side of all its peer connections.
pub struct Transport {
    peers: Mutex<HashMap<NodeId, PeerState>>,
    /// When each peer last answered anything.
    heard: Mutex<HashMap<NodeId, Instant>>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport").finish_non_exhaustive()
    }
}

fn encode_frame(id: u64, message: &impl Serialize) -> BytesMut {
    let body = codec::encode(message);
    let mut frame = BytesMut::with_capacity(12 + body.len());
    frame.put_u32((8 + body.len()) as u32);
    frame.put_u64(id);
    frame.put_slice(&body);
    frame
}

/// Reads one frame: `(id, body)`. `None` at a clean end of stream.
async fn read_frame(
    socket: &mut OwnedReadHalf,
    buf: &mut BytesMut,
) -> std::io::Result<Option<(u64, BytesMut)>> {
    loop {
        if buf.len() >= 4 {
            let len = u32::from_be_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
            if !(8..=MAX_FRAME).contains(&len) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("frame of {len} bytes is not a Strand peer frame"),
                ));
            }
            if buf.len() >= 4 + len {
                buf.advance(4);
                let mut frame = buf.split_to(len);
                let id = frame.get_u64();
                return Ok(Some((id, frame)));
            }
            buf.reserve(4 + len - buf.len());
        }
        if socket.read_buf(buf).await? == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(std::io::ErrorKind::UnexpectedEof.into())
            };
        }
    }
}

/// Writes every frame queued, many per write, until the queue closes or the socket fails.
async fn write_frames(mut socket: OwnedWriteHalf, mut frames: mpsc::UnboundedReceiver<BytesMut>) {
    while let Some(first) = frames.recv().await {
        // Let the other runnable tasks (the rest of a round of heartbeats, the replies of
        // a batch of requests) queue their frames first: one write instead of dozens.
        tokio::task::yield_now().await;
        let mut out = first;
        while let Ok(more) = frames.try_recv() {
            out.unsplit(more);
            if out.len() > 1 << 20 {
                break;
            }
        }
        if socket.write_all(&out).await.is_err() {
            return;
        }
    }
}

impl Transport {
    pub fn new() -> Arc<Transport> {
        Arc::new(Transport {
            peers: Mutex::new(HashMap::new()),
            heard: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        })
    }

    /// When `node` last answered a call, if ever.
    pub fn last_heard(&self, node: NodeId) -> Option<Instant> {
        self.heard.lock().expect("heard lock").get(&node).copied()
    }

    /// Sends `request` to `node` at `addr` and waits up to `timeout` for its reply.
    pub async fn call(
        &self,
        node: NodeId,
        addr: &str,
        request: &Request,
        timeout: Duration,
    ) -> Result<Reply, TransportError> {
        let link = self.link(node, addr).await?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        link.pending.lock().expect("pending lock").insert(id, tx);
        if link.frames.send(encode_frame(id, request)).is_err() {
            link.pending.lock().expect("pending lock").remove(&id);
            return Err(self.unreachable(node, addr, "the connection closed"));
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => {
                self.heard
                    .lock()
                    .expect("heard lock")
                    .insert(node, Instant::now());
                Ok(reply)
            }
            Ok(Err(_)) => Err(self.unreachable(node, addr, "the connection closed")),
            Err(_) => {
                link.pending.lock().expect("pending lock").remove(&id);
                Err(TransportError::Timeout { node, timeout })
            }
        }
    }

    /// Sends `request` without waiting for the reply.
    pub async fn notify(
        &self,
        node: NodeId,
        addr: &str,
        request: &Request,
    ) -> Result<(), TransportError> {
        let link = self.link(node, addr).await?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        link.frames
            .send(encode_frame(id, request))
            .map_err(|_| self.unreachable(node, addr, "the connection closed"))
    }

    fn unreachable(&self, node: NodeId, addr: &str, reason: &str) -> TransportError {
        TransportError::Unreachable {
            node,
            addr: addr.to_string(),
            reason: reason.to_string(),
        }
    }

    /// The open connection to `node`, connecting if there is none.
    async fn link(&self, node: NodeId, addr: &str) -> Result<Arc<Link>, TransportError> {
        {
            let mut peers = self.peers.lock().expect("peers lock");
            let peer = peers.entry(node).or_insert_with(|| PeerState {
                addr: addr.to_string(),
                link: None,
                failed_at: None,
            });
            if peer.addr != addr {
                // The peer moved: forget the old connection.
                *peer = PeerState {
                    addr: addr.to_string(),
                    link: None,
                    failed_at: None,
                };
            }
            if let Some(link) = peer.link.as_ref().filter(|l| l.is_open()) {
                return Ok(link.clone());
            }
            if peer
                .failed_at
                .is_some_and(|t| t.elapsed() < RECONNECT_BACKOFF)
            {
                return Err(self.unreachable(node, addr, "a recent connection attempt failed"));
            }
        }
        let connected = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await;
        let mut peers = self.peers.lock().expect("peers lock");
        let peer = peers.get_mut(&node).expect("inserted above");
        let socket = match connected {
            Ok(Ok(socket)) => socket,
            Ok(Err(e)) => {
                peer.failed_at = Some(Instant::now());
                return Err(self.unreachable(node, addr, &e.to_string()));
            }
            Err(_) => {
                peer.failed_at = Some(Instant::now());
                return Err(self.unreachable(node, addr, "connection attempt timed out"));
            }
        };
        // Another call may have connected meanwhile; use one connection per peer.
        if let Some(link) = peer.link.as_ref().filter(|l| l.is_open()) {
            return Ok(link.clone());
        }
        let _ = socket.set_nodelay(true);
        let (read_half, write_half) = socket.into_split();
        let (frames, queue) = mpsc::unbounded_channel();
        let pending: Pending = Arc::default();
        tokio::spawn(write_frames(write_half, queue));
        tokio::spawn(read_replies(read_half, pending.clone()));
        let link = Arc::new(Link { frames, pending });
        peer.link = Some(link.clone());
        peer.failed_at = None;
        Ok(link)
    }
}

/// Completes pending calls with the replies that come back; on a broken connection, fails
/// them all (their senders are dropped).
async fn read_replies(mut socket: OwnedReadHalf, pending: Pending) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    while let Ok(Some((id, body))) = read_frame(&mut socket, &mut buf).await {
        let Ok(reply) = codec::decode::<Reply>(&body) else {
            break;
        };
        if let Some(waiter) = pending.lock().expect("pending lock").remove(&id) {
            let _ = waiter.send(reply);
        }
    }
    pending.lock().expect("pending lock").clear();
}

/// Handles one inbound request.
pub type Handler =
    Arc<dyn Fn(Request) -> Pin<Box<dyn Future<Output = Reply> + Send>> + Send + Sync>;

/// Accepts peer connections and answers their requests with `handler`, concurrently.
pub async fn serve(listener: TcpListener, handler: Handler) {
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "raft listener accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let handler = handler.clone();
        tokio::spawn(async move {
            let (mut read_half, write_half) = socket.into_split();
            let (frames, queue) = mpsc::unbounded_channel();
            tokio::spawn(write_frames(write_half, queue));
            let mut buf = BytesMut::with_capacity(64 * 1024);
            loop {
                let (id, body) = match read_frame(&mut read_half, &mut buf).await {
                    Ok(Some(frame)) => frame,
                    Ok(None) => return,
                    Err(e) => {
                        tracing::warn!(%peer, error = %e, "closing raft connection");
                        return;
                    }
                };
                let request = match codec::decode::<Request>(&body) {
                    Ok(request) => request,
                    Err(e) => {
                        tracing::warn!(%peer, error = %e, "closing raft connection: unreadable message");
                        return;
                    }
                };
                let handler = handler.clone();
                let frames = frames.clone();
                tokio::spawn(async move {
                    let reply = handler(request).await;
                    let _ = frames.send(encode_frame(id, &reply));
                });
            }
        });
    }
}
