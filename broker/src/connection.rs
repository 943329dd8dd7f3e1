//! One client connection: a reader that cuts frames and starts each request, and a writer
//! that sends the responses back in request order.
//!
//! The reader starts requests one at a time, in arrival order, so their effects happen in
//! the order the client sent them (two pipelined produce requests to one partition are
//! appended in that order). A produce request then waits for replication in its own task,
//! so many can be in flight. Clients match responses by position, so the writer awaits
//! each request's outcome in arrival order; the bounded queue between the two is the
//! connection's limit on requests in flight. A request that cannot be read ends the
//! connection after the responses before it have been sent (but for a JoinGroup or
//! SyncGroup still waiting: once the reader stops, those stop waiting for their group and
//! end the connection, see [`HungUp`]), as Kafka closes a connection on a bad request;
//! nothing a client sends can affect any other connection.
//!
//! A connection is closed when it stays idle (nothing to read, nothing being answered)
//! for `connections.max.idle.ms`, and when a request it began to send does not arrive
//! whole within `frame-read-timeout-ms`. A frame larger than the read buffer takes its size
//! from the node's request memory ([`crate::limits::RequestMemory`]) before it is buffered.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use strand_protocol::codec::decode_request;
use strand_protocol::frame::{frame_size, take_frame, LateBytes, LateChunks, OutFrame, Part};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::Instrument;

use crate::handlers::{self, HungUp, Outcome, Pending, ReadAhead, ReadAheadPlan};
use crate::metrics::Closed;
use crate::Broker;

/// Requests a connection may have in flight before the reader waits for the writer.
const MAX_IN_FLIGHT: usize = 32;

/// The read buffer each connection starts with; larger frames take request memory.
const READ_BUFFER: usize = 64 * 1024;

/// Serves one connection until the client closes it or sends something unreadable.
pub async fn serve(broker: Arc<Broker>, socket: TcpStream, peer: SocketAddr) {
    let _ = socket.set_nodelay(true);
    let span = tracing::debug_span!("connection", %peer);
    async move {
        broker.metrics.connection_opened();
        let (read_half, write_half) = socket.into_split();
        let (tx, rx) = mpsc::channel(MAX_IN_FLIGHT);
        let answering = Answering::new();
        let reader = read_requests(&broker, read_half, tx, peer, &answering);
        let stalled = broker.config.connections_max_idle;
        let writer = write_responses(write_half, rx, &answering, stalled);
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

/// What the writer tells the reader, which decides when the connection is idle.
struct Answering {
    unanswered: AtomicUsize,
    opened: Instant,
    /// Milliseconds from `opened` to the last answer written.
    last_answer_ms: AtomicU64,
}

impl Answering {
    fn new() -> Self {
        Answering {
            unanswered: AtomicUsize::new(0),
            opened: Instant::now(),
            last_answer_ms: AtomicU64::new(0),
        }
    }

    fn asked(&self) {
        self.unanswered.fetch_add(1, Ordering::AcqRel);
    }

    fn answered(&self) {
        let ms = self.opened.elapsed().as_millis() as u64;
        self.last_answer_ms.fetch_max(ms, Ordering::AcqRel);
        self.unanswered.fetch_sub(1, Ordering::AcqRel);
    }

    /// Since when the connection has been idle, given its last read; `None` while a
    /// request is being answered.
    fn idle_since(&self, last_read: Instant) -> Option<Instant> {
        if self.unanswered.load(Ordering::Acquire) > 0 {
            return None;
        }
        let answered = self.opened
            + std::time::Duration::from_millis(self.last_answer_ms.load(Ordering::Acquire));
        Some(last_read.max(answered))
    }
}

async fn read_requests(
    broker: &Arc<Broker>,
    mut socket: OwnedReadHalf,
    tx: mpsc::Sender<Pending>,
    peer: SocketAddr,
    answering: &Answering,
) {
    let max_frame = broker.config.max_request_bytes;
    let read_ahead = ReadAhead::new(broker.read_ahead.clone());
    // Held until the reader stops.
    let (_reading, hung_up) = HungUp::channel();
    let mut buf = BytesMut::with_capacity(READ_BUFFER);
    // The request memory the frame being read holds, and when its first bytes came.
    let mut held = None;
    let mut frame_started = None;
    let mut last_read = Instant::now();
    let idle = broker.config.connections_max_idle;
    loop {
        loop {
            if let (None, Some(size)) = (&held, frame_size(&buf)) {
                let size = usize::try_from(size).unwrap_or(0);
                if size > READ_BUFFER && size <= max_frame {
                    // No longer than a frame may take to arrive.
                    let until = Instant::now() + broker.config.frame_read_timeout;
                    let taken = broker.request_memory.take(size);
                    let Ok(taken) = tokio::time::timeout_at(until, taken).await else {
                        broker.metrics.closed(Closed::ReadTimeout);
                        tracing::debug!("closing connection: no request memory in time");
                        let _ = tx.send(Pending::Ready(Outcome::Close)).await;
                        return;
                    };
                    held = Some(taken);
                    // The time to send it runs from when it may be read.
                    frame_started = Some(Instant::now());
                }
            }
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
            frame_started = None;
            // Read: the bytes are the request's now.
            held = None;
            let pending = match decode_request(frame, handlers::SUPPORTED_APIS) {
                Ok(request) => handlers::start(broker, request, peer, &read_ahead, &hung_up).await,
                Err(e) => match e.reply(handlers::SUPPORTED_APIS) {
                    Some(reply) => Pending::Ready(Outcome::Reply(reply)),
                    None => {
                        broker.metrics.bad_request();
                        tracing::warn!(error = %e, "closing connection");
                        let _ = tx.send(Pending::Ready(Outcome::Close)).await;
                        return;
                    }
                },
            };
            answering.asked();
            if tx.send(pending).await.is_err() {
                return;
            }
        }
        if buf.is_empty() {
            frame_started = None;
        } else if frame_started.is_none() {
            frame_started = Some(Instant::now());
        }
        let (deadline, why) = match frame_started {
            Some(started) => (
                started + broker.config.frame_read_timeout,
                Closed::ReadTimeout,
            ),
            None => {
                let since = answering.idle_since(last_read);
                (since.unwrap_or_else(Instant::now) + idle, Closed::Idle)
            }
        };
        match tokio::time::timeout_at(deadline, socket.read_buf(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return,
            Ok(Ok(_)) => last_read = Instant::now(),
            // Answered or asked since the wait began: not idle yet.
            Err(_)
                if why == Closed::Idle
                    && answering
                        .idle_since(last_read)
                        .is_none_or(|since| since + idle > Instant::now()) => {}
            Err(_) => {
                broker.metrics.closed(why);
                tracing::debug!(?why, "closing connection");
                // Not kept while the writer may be stuck on a client that stopped reading.
                drop(held.take());
                let _ = tx.send(Pending::Ready(Outcome::Close)).await;
                return;
            }
        }
    }
}

/// Writes the answers in request order. One that takes longer than `stalled` to write (the
/// client stopped reading) ends the connection, as an idle one would.
async fn write_responses(
    mut socket: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Pending>,
    answering: &Answering,
    stalled: std::time::Duration,
) {
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
        let (frame, then) = match outcome {
            Outcome::Reply(frame) => (frame, None),
            Outcome::ReplyThenReadAhead(frame, read_ahead) => (frame, Some(read_ahead)),
            Outcome::NoReply => {
                answering.answered();
                continue;
            }
            Outcome::Close => {
                let _ = socket.shutdown().await;
                return;
            }
        };
        let written = tokio::time::timeout(stalled, write_frame(&mut socket, frame, then)).await;
        answering.answered();
        if !matches!(written, Ok(Ok(_))) {
            return;
        }
    }
}

/// Late chunks (two megabytes each, or the part of a fetch read ahead) read ahead of the
/// socket, per response being written: enough for the disk to keep reading while the socket
/// sends what was read ahead.
const LATE_CHUNKS_AHEAD: usize = 8;

/// Writes a frame: runs of ready parts with as few system calls as the socket allows, late
/// parts as a blocking reader produces their chunks. The reader runs on its own thread, up
/// to [`LATE_CHUNKS_AHEAD`] ahead: the disk and the socket then work at the same time, and
/// a read from disk never holds up the runtime's workers (other connections' produces).
/// `then` runs on that thread once the late parts are read, so the disk goes on to the
/// read-ahead without a pause while the socket sends the last chunks.
async fn write_frame(
    socket: &mut OwnedWriteHalf,
    frame: OutFrame,
    then: Option<ReadAheadPlan>,
) -> std::io::Result<()> {
    // The ready parts in order, `None` for each late one, which its reader gets.
    let mut steps = Vec::new();
    let mut late_parts = Vec::new();
    for part in frame.into_parts() {
        match part {
            Part::Ready(bytes) => steps.push(Some(bytes)),
            Part::Late(late) => {
                steps.push(None);
                late_parts.push(late);
            }
        }
    }
    let mut chunks = read_late_parts(late_parts, then);
    let mut ready: Vec<Bytes> = Vec::new();
    for step in steps {
        match step {
            Some(bytes) => ready.push(bytes),
            // The next late part: its chunks, up to the `None` that ends it.
            None => {
                write_ready(socket, &ready).await?;
                ready.clear();
                while let Some(chunk) = chunks
                    .recv()
                    .await
                    .unwrap_or_else(|| Err(std::io::Error::other("the late reader stopped")))
                    .map_err(cannot_finish)?
                {
                    write_ready(socket, &chunk).await?;
                }
            }
        }
    }
    write_ready(socket, &ready).await
}

/// A chunk of a late part, `None` once the part is done.
type LateChunk = std::io::Result<Option<Vec<Bytes>>>;

/// Reads the chunks of `late_parts`, in order, on a blocking thread, into a channel that
/// holds [`LATE_CHUNKS_AHEAD`]: each part's chunks, then `None`. A part's chunks are held
/// to its promised length ([`LateChunks`]); the reader stops at the first error, after
/// sending it, or once the writer has gone. Then, if all went well, it runs `then`.
fn read_late_parts(
    late_parts: Vec<Box<dyn LateBytes>>,
    then: Option<ReadAheadPlan>,
) -> mpsc::Receiver<LateChunk> {
    let (tx, rx) = mpsc::channel(LATE_CHUNKS_AHEAD);
    if late_parts.is_empty() && then.is_none() {
        return rx;
    }
    tokio::task::spawn_blocking(move || {
        for late in late_parts {
            let part = LateChunks::new(late).map(|chunk| chunk.map(Some));
            for chunk in part.chain([Ok(None)]) {
                let failed = chunk.is_err();
                if tx.blocking_send(chunk).is_err() || failed {
                    return;
                }
            }
        }
        drop(tx);
        if let Some(read_ahead) = then {
            read_ahead.run();
        }
    });
    rx
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

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use tokio::net::TcpListener;

    use super::*;

    /// A late part that promises `promised` bytes and produces `chunks`, whatever they add
    /// up to.
    struct Chunks {
        promised: usize,
        chunks: VecDeque<Vec<Bytes>>,
    }

    impl LateBytes for Chunks {
        fn len(&self) -> usize {
            self.promised
        }

        fn next_chunk(&mut self) -> std::io::Result<Option<Vec<Bytes>>> {
            Ok(self.chunks.pop_front())
        }
    }

    fn late(chunks: Vec<Vec<Bytes>>) -> Part {
        let promised = chunks.iter().flatten().map(Bytes::len).sum();
        late_promising(promised, chunks)
    }

    fn late_promising(promised: usize, chunks: Vec<Vec<Bytes>>) -> Part {
        Part::Late(Box::new(Chunks {
            promised,
            chunks: chunks.into(),
        }))
    }

    /// Writes `frame` to a loopback socket: what `write_frame` returned and what the
    /// client received before the connection closed.
    async fn send(frame: OutFrame) -> (std::io::Result<()>, Vec<u8>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let connecting = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(connecting, listener.accept());
        let mut client = client.unwrap();
        let receiving = tokio::spawn(async move {
            let mut received = Vec::new();
            client.read_to_end(&mut received).await.unwrap();
            received
        });
        let (read_half, mut write_half) = accepted.unwrap().0.into_split();
        let outcome = write_frame(&mut write_half, frame, None).await;
        drop((read_half, write_half));
        (outcome, receiving.await.unwrap())
    }

    #[tokio::test]
    async fn late_parts_go_out_in_place_however_far_their_reader_gets_ahead() {
        // Twelve chunks of two pieces each, a megabyte and more, so that the reader has to
        // wait for the socket: more chunks than it may read ahead.
        let big: Vec<Vec<Bytes>> = (0..12u8)
            .map(|i| {
                vec![
                    Bytes::from(vec![i; 16]),
                    Bytes::from(vec![i; 100_000 + i as usize]),
                ]
            })
            .collect();
        let expected: Vec<u8> = [b"head".as_slice()]
            .into_iter()
            .chain(big.iter().flatten().map(|b| &b[..]))
            .chain([b"middle".as_slice(), b"small", b"tail"])
            .flatten()
            .copied()
            .collect();
        let frame = OutFrame::from(vec![
            Part::Ready(Bytes::from_static(b"head")),
            late(big),
            Part::Ready(Bytes::from_static(b"middle")),
            late(vec![vec![Bytes::from_static(b"small")]]),
            Part::Ready(Bytes::from_static(b"tail")),
        ]);
        let (outcome, received) = send(frame).await;
        outcome.unwrap();
        assert_eq!(received.len(), expected.len());
        assert!(received == expected, "the bytes arrive in frame order");
    }

    #[tokio::test]
    async fn a_late_part_that_falls_short_ends_the_frame_with_an_error() {
        let frame = OutFrame::from(vec![
            Part::Ready(Bytes::from_static(b"head")),
            late_promising(10, vec![vec![Bytes::from_static(b"four")]]),
            Part::Ready(Bytes::from_static(b"tail")),
        ]);
        let (outcome, received) = send(frame).await;
        assert!(
            outcome.is_err(),
            "a frame that cannot be finished is an error"
        );
        assert_eq!(
            received, b"headfour",
            "nothing after the broken part is sent"
        );
    }

    #[tokio::test]
    async fn a_late_part_that_overruns_sends_none_of_the_overrun() {
        let frame = OutFrame::from(vec![
            Part::Ready(Bytes::from_static(b"head")),
            late_promising(
                4,
                vec![
                    vec![Bytes::from_static(b"four")],
                    vec![Bytes::from_static(b"more")],
                ],
            ),
            Part::Ready(Bytes::from_static(b"tail")),
        ]);
        let (outcome, received) = send(frame).await;
        assert!(outcome.is_err());
        assert_eq!(received, b"headfour");
    }
}
