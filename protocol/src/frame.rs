//! Kafka framing: every request and response is a big-endian `i32` size followed by that
//! many bytes. This module only cuts frames; it knows nothing of their meaning.

use bytes::{Buf, Bytes, BytesMut};

/// Why a stream cannot be framed. Either way the connection must be closed: the peer is not
/// speaking Kafka, or is sending more than the broker accepts (`socket.request.max.bytes`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame size {0} is negative")]
    NegativeSize(i32),
    #[error("frame of {size} bytes exceeds the maximum request size of {max} bytes")]
    TooLarge { size: usize, max: usize },
}

/// The size of the frame at the front of `buf`, once its prefix has arrived (negative
/// sizes included: [`take_frame`] refuses them).
pub fn frame_size(buf: &[u8]) -> Option<i64> {
    let prefix: [u8; 4] = buf.get(..4)?.try_into().ok()?;
    Some(i64::from(i32::from_be_bytes(prefix)))
}

/// Takes one complete frame (without its size prefix) off the front of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed. The size is checked as soon as the prefix
/// has arrived, so an oversize frame is refused before its body is buffered.
pub fn take_frame(buf: &mut BytesMut, max_size: usize) -> Result<Option<Bytes>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if size < 0 {
        return Err(FrameError::NegativeSize(size));
    }
    let size = size as usize;
    if size > max_size {
        return Err(FrameError::TooLarge {
            size,
            max: max_size,
        });
    }
    if buf.len() < 4 + size {
        buf.reserve(4 + size - buf.len());
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(size).freeze()))
}

/// Bytes of a frame produced only as the frame goes out: the records of a fetch response,
/// read from storage a chunk at a time while the chunks before them are being sent, so the
/// client receives the first records before the last are read (what Kafka gets from
/// sendfile). Their total length is known up front, since the frame's size prefix counts it.
///
/// A chunk comes in pieces, written out as they are (vectored): records stay in the buffers
/// storage read them into, and only the few bytes stamped per batch are new.
pub trait LateBytes: Send {
    /// The bytes all chunks make together.
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next chunk, in pieces; `None` once `len` bytes have been produced.
    fn next_chunk(&mut self) -> std::io::Result<Option<Vec<Bytes>>>;
}

/// One part of a frame: bytes at hand, or bytes produced as the part is written.
pub enum Part {
    Ready(Bytes),
    Late(Box<dyn LateBytes>),
}

impl Part {
    pub fn len(&self) -> usize {
        match self {
            Part::Ready(bytes) => bytes.len(),
            Part::Late(late) => late.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Debug for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Part::Ready(bytes) => write!(f, "Ready({} bytes)", bytes.len()),
            Part::Late(late) => write!(f, "Late({} bytes)", late.len()),
        }
    }
}

/// A frame to send: its bytes in order, in one or more parts. The records of a fetch
/// response are parts of their own, shared with the buffers they were read into rather
/// than copied into the frame, or read only as they are sent (see
/// [`crate::codec::encode_fetch_response`]).
#[derive(Debug, Default)]
pub struct OutFrame {
    parts: Vec<Part>,
}

impl OutFrame {
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    pub fn into_parts(self) -> Vec<Part> {
        self.parts
    }

    /// The frame's size, its size prefix included.
    pub fn len(&self) -> usize {
        self.parts.iter().map(Part::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The whole frame in one buffer (a copy when it has several parts; late parts are
    /// produced here).
    pub fn into_bytes(self) -> std::io::Result<Bytes> {
        if let [Part::Ready(one)] = self.parts.as_slice() {
            return Ok(one.clone());
        }
        let mut all = BytesMut::with_capacity(self.len());
        for part in self.parts {
            match part {
                Part::Ready(bytes) => all.extend_from_slice(&bytes),
                Part::Late(late) => {
                    for chunk in LateChunks::new(late) {
                        for piece in chunk? {
                            all.extend_from_slice(&piece);
                        }
                    }
                }
            }
        }
        Ok(all.freeze())
    }
}

/// The chunks of a late part, held to its promised length: a late part that produced
/// other than the bytes it promised would corrupt the stream (the frame's size prefix is
/// already out), so a chunk that would overrun it is an error instead, and so is the end
/// when it falls short. Nothing follows an error.
pub struct LateChunks {
    late: Box<dyn LateBytes>,
    /// Its length before the first chunk: what the frame's size prefix counted.
    promised: usize,
    produced: usize,
    done: bool,
}

impl LateChunks {
    pub fn new(late: Box<dyn LateBytes>) -> LateChunks {
        LateChunks {
            promised: late.len(),
            late,
            produced: 0,
            done: false,
        }
    }

    fn broken_promise(&mut self) -> std::io::Error {
        self.done = true;
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "a late frame part promised {} bytes and produced {}",
                self.promised, self.produced
            ),
        )
    }
}

impl Iterator for LateChunks {
    type Item = std::io::Result<Vec<Bytes>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.late.next_chunk() {
            Ok(Some(chunk)) => {
                self.produced += chunk.iter().map(Bytes::len).sum::<usize>();
                if self.produced > self.promised {
                    return Some(Err(self.broken_promise()));
                }
                Some(Ok(chunk))
            }
            Ok(None) => {
                self.done = true;
                (self.produced != self.promised).then(|| Err(self.broken_promise()))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl From<BytesMut> for OutFrame {
    fn from(frame: BytesMut) -> OutFrame {
        OutFrame {
            parts: vec![Part::Ready(frame.freeze())],
        }
    }
}

impl From<Vec<Part>> for OutFrame {
    fn from(parts: Vec<Part>) -> OutFrame {
        OutFrame { parts }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_a_whole_frame() {
        let mut buf = BytesMut::from(&[0, 0, 0, 3, b'a', b'b'][..]);
        assert_eq!(take_frame(&mut buf, 100), Ok(None));
        buf.extend_from_slice(b"c\x00\x00");
        assert_eq!(
            take_frame(&mut buf, 100),
            Ok(Some(Bytes::from_static(b"abc")))
        );
        assert_eq!(take_frame(&mut buf, 100), Ok(None));
        assert_eq!(
            buf.len(),
            2,
            "the next frame's partial prefix stays buffered"
        );
    }

    #[test]
    fn refuses_oversize_and_negative_sizes_from_the_prefix_alone() {
        let mut buf = BytesMut::from(&1_000_000i32.to_be_bytes()[..]);
        assert_eq!(
            take_frame(&mut buf, 1000),
            Err(FrameError::TooLarge {
                size: 1_000_000,
                max: 1000
            })
        );
        let mut buf = BytesMut::from(&(-5i32).to_be_bytes()[..]);
        assert_eq!(
            take_frame(&mut buf, 1000),
            Err(FrameError::NegativeSize(-5))
        );
    }
}
