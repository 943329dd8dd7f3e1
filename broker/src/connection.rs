//! One client connection: a reader that cuts frames and starts each request, and a writer
//! that sends the responses back in request order.
//!
//! The reader starts requests one at a time, in arrival order, so their effects happen in
//! the order the client sent them (two pipelined produce requests to one partition are
//! appended in that order). A produce request then waits for replication in its own task,
//! so many can be in flight. Clients match responses by position, so the writer awaits
//! each request's outcome in arrival order; the bounded queue between the two is the
//! connection's limit on requests in flight. A request that cannot be read ends the
//! connection after the responses before it have been sent, which is what Kafka does;
//! nothing a client sends can affect any other connection.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use strand_protocol::codec::decode_request;
use strand_protocol::frame::{take_frame, LateChunks, OutFrame, Part};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::handlers::{self, Outcome, Pending};
use crate::Broker;

/// Requests a connection may have in flight before the reader waits for the writer.
const MAX_IN_FLIGHT: usize = 32;

/// Serves one connection until the client closes it or sends something unreadable.
pub async fn serve(broker: Arc<Broker>, socket: TcpStream, peer: SocketAddr) {
    let _ = socket.set_nodelay(true);
    let span = tracing::debug_span!("connection", %peer);
    async move {
        broker.metrics.connection_opened();
        let (read_half, write_half) = socket.into_split();
        let (tx, rx) = mpsc::channel(MAX_IN_FLIGHT);
        let reader = read_requests(&broker, read_half, tx, peer);
        let writer = write_responses(write_half, rx);
        tokio::pin!(reader, writer);
        tokio::select! {
            // The reader is done (end of input, or it queued a final Close): let the
            // writer send what is queued.
            _ = &mut reader => writer.await,
            // The writer is done (socket error or Close): stop reading.
            _ = &mut writer => {}
        }
        broker.metrics.connection_closed();
    }
    .instrument(span)
    .await
}

async fn read_requests(
    broker: &Arc<Broker>,
    mut socket: OwnedReadHalf,
    tx: mpsc::Sender<Pending>,
    peer: SocketAddr,
) {
    let max_frame = broker.config.max_request_bytes;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        loop {
            let frame = match take_frame(&mut buf, max_frame) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    broker.metrics.bad_request();
                    tracing::warn!(error = %e, "closing connection");
                    let _ = tx.send(Pending::Ready(Outcome::Close)).await;
                    return;
                }
            };
            let pending = match decode_request(frame) {
                Ok(request) => handlers::start(broker, request, peer).await,
                Err(e) => match e.reply() {
                    Some(reply) => Pending::Ready(Outcome::Reply(reply)),
                    None => {
                        broker.metrics.bad_request();
                        tracing::warn!(error = %e, "closing connection");
                        let _ = tx.send(Pending::Ready(Outcome::Close)).await;
                        return;
                    }
                },
            };
            if tx.send(pending).await.is_err() {
                return;
            }
        }
        match socket.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

async fn write_responses(mut socket: OwnedWriteHalf, mut rx: mpsc::Receiver<Pending>) {
    while let Some(pending) = rx.recv().await {
        let outcome = match pending {
            Pending::Ready(outcome) => outcome,
            Pending::Running(task) => match task.await {
                Ok(outcome) => outcome,
                Err(e) => {
                    tracing::error!(error = %e, "request handler failed; closing connection");
                    Outcome::Close
                }
            },
        };
        match outcome {
            Outcome::Reply(frame) => {
                if write_frame(&mut socket, frame).await.is_err() {
                    return;
                }
            }
            Outcome::NoReply => {}
            Outcome::Close => {
                let _ = socket.shutdown().await;
                return;
            }
        }
    }
}

/// Writes a frame: runs of ready parts with as few system calls as the socket allows, late
/// parts a chunk at a time, each chunk read while the client takes in the ones before.
async fn write_frame(socket: &mut OwnedWriteHalf, frame: OutFrame) -> std::io::Result<()> {
    let mut ready: Vec<Bytes> = Vec::new();
    for part in frame.into_parts() {
        match part {
            Part::Ready(bytes) => ready.push(bytes),
            Part::Late(late) => {
                write_ready(socket, &ready).await?;
                ready.clear();
                for chunk in LateChunks::new(late) {
                    write_ready(socket, &chunk.map_err(cannot_finish)?).await?;
                }
            }
        }
    }
    write_ready(socket, &ready).await
}

/// A late part that cannot be produced leaves its frame half sent, and the connection is
/// no use after it: logged here, closed by the caller.
fn cannot_finish(e: std::io::Error) -> std::io::Error {
    tracing::warn!(error = %e, "cannot finish a response; closing connection");
    e
}

/// Writes `parts` in order, vectored.
async fn write_ready(socket: &mut OwnedWriteHalf, parts: &[Bytes]) -> std::io::Result<()> {
    if let [one] = parts {
        return socket.write_all(one).await;
    }
    let (mut index, mut offset) = (0, 0);
    loop {
        while index < parts.len() && parts[index].len() == offset {
            index += 1;
            offset = 0;
        }
        if index == parts.len() {
            return Ok(());
        }
        let slices: Vec<IoSlice<'_>> = std::iter::once(&parts[index][offset..])
            .chain(parts[index + 1..].iter().map(|p| &p[..]))
            .take(64)
            .map(IoSlice::new)
            .collect();
        let mut written = socket.write_vectored(&slices).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        // Move past what was written: whole parts, then into the next one.
        while written > 0 {
            let step = written.min(parts[index].len() - offset);
            written -= step;
            offset += step;
            if offset == parts[index].len() {
                index += 1;
                offset = 0;
            }
        }
    }
}
