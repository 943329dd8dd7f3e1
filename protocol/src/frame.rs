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

/// A frame to send: its bytes in order, in one or more parts. The records of a fetch
/// response are parts of their own, shared with the buffers they were read into rather
/// than copied into the frame (see [`crate::codec::encode_response`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OutFrame {
    parts: Vec<Bytes>,
}

impl OutFrame {
    pub fn parts(&self) -> &[Bytes] {
        &self.parts
    }

    /// The frame's size, its size prefix included.
    pub fn len(&self) -> usize {
        self.parts.iter().map(Bytes::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The frame in one buffer (a copy when it has several parts).
    pub fn to_bytes(&self) -> Bytes {
        match self.parts.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            parts => {
                let mut all = BytesMut::with_capacity(self.len());
                for part in parts {
                    all.extend_from_slice(part);
                }
                all.freeze()
            }
        }
    }
}

impl From<BytesMut> for OutFrame {
    fn from(frame: BytesMut) -> OutFrame {
        OutFrame {
            parts: vec![frame.freeze()],
        }
    }
}

impl From<Vec<Bytes>> for OutFrame {
    fn from(parts: Vec<Bytes>) -> OutFrame {
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
