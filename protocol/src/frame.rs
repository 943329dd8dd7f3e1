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
