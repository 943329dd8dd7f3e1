//! Reading individual records out of a stored v2 batch, for the few places the broker must
//! look inside one (finding the first record at or after a timestamp).
//!
//! Each record is `length: varint, attributes: i8, timestamp_delta: varlong,
//! offset_delta: varint, key, value, headers`, where varints are zig-zag LEB128. Only the
//! framing, timestamp and offset are read here. Decompression is capped so a small batch
//! that inflates to gigabytes cannot exhaust memory.

use std::io::Read;

use crate::batch::{BatchHeader, Codec, HEADER_LEN};

/// The position and time of one record inside a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordStamp {
    pub offset: i64,
    pub timestamp: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    #[error("record framing is invalid: {0}")]
    Framing(&'static str),
    #[error("cannot decompress {codec:?} batch: {source}")]
    Decompress {
        codec: Codec,
        source: std::io::Error,
    },
    #[error("batch inflates beyond the {0}-byte limit")]
    TooLarge(usize),
    #[error("unknown compression codec")]
    UnknownCodec,
}

/// Reads a zig-zag varint of at most `max_bytes` bytes.
pub(crate) fn read_varint(buf: &mut &[u8], max_bytes: usize) -> Result<i64, RecordsError> {
    let mut value: u64 = 0;
    for i in 0..max_bytes {
        let (&byte, rest) = buf
            .split_first()
            .ok_or(RecordsError::Framing("varint runs past the end"))?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
        }
    }
    Err(RecordsError::Framing("varint is too long"))
}

/// Walks `count` records in an uncompressed record section, calling `visit` with each
/// record's offset delta and timestamp delta.
fn walk(mut data: &[u8], count: i32, mut visit: impl FnMut(i32, i64)) -> Result<(), RecordsError> {
    for _ in 0..count {
        let len = read_varint(&mut data, 5)?;
        if len < 0 || len as usize > data.len() {
            return Err(RecordsError::Framing("record length exceeds the batch"));
        }
        let (mut record, rest) = data.split_at(len as usize);
        data = rest;
        record = record
            .get(1..)
            .ok_or(RecordsError::Framing("record has no attributes"))?;
        let timestamp_delta = read_varint(&mut record, 10)?;
        let offset_delta = read_varint(&mut record, 5)?;
        visit(offset_delta as i32, timestamp_delta);
    }
    if !data.is_empty() {
        return Err(RecordsError::Framing("bytes left after the last record"));
    }
    Ok(())
}

/// Checks that an uncompressed record section holds exactly `count` well-framed records.
pub fn check_framing(records: &[u8], count: i32) -> Result<(), RecordsError> {
    walk(records, count, |_, _| {})
}

/// Decompresses the record section of `batch`, refusing to produce more than `limit` bytes.
pub fn decompress(batch: &[u8], limit: usize) -> Result<Vec<u8>, RecordsError> {
    let header =
        BatchHeader::parse(batch).map_err(|_| RecordsError::Framing("bad batch header"))?;
    let end = header.total_len().min(batch.len());
    let payload = &batch[HEADER_LEN..end];
    let codec = header.codec().ok_or(RecordsError::UnknownCodec)?;
    let mut out = Vec::new();
    let read = |r: &mut dyn Read, out: &mut Vec<u8>| {
        r.take(limit as u64 + 1)
            .read_to_end(out)
            .map(|_| ())
            .map_err(|source| RecordsError::Decompress { codec, source })
    };
    match codec {
        Codec::None => out.extend_from_slice(payload),
        Codec::Gzip => read(&mut flate2::read::GzDecoder::new(payload), &mut out)?,
        Codec::Snappy => snappy_decompress(payload, limit, &mut out)?,
        Codec::Lz4 => {
            let mut decoder = lz4::Decoder::new(payload)
                .map_err(|source| RecordsError::Decompress { codec, source })?;
            read(&mut decoder, &mut out)?
        }
        Codec::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::new(payload)
                .map_err(|source| RecordsError::Decompress { codec, source })?;
            read(&mut decoder, &mut out)?
        }
    };
    if out.len() > limit {
        return Err(RecordsError::TooLarge(limit));
    }
    Ok(out)
}

/// The Java client's snappy framing ("xerial"): a 16-byte magic header, then blocks of
/// `u32 length` + raw snappy. Anything without the magic is one raw snappy block.
fn snappy_decompress(payload: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<(), RecordsError> {
    const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
    let bad = |e: snap::Error| RecordsError::Decompress {
        codec: Codec::Snappy,
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    };
    let block = |raw: &[u8], out: &mut Vec<u8>| -> Result<(), RecordsError> {
        let len = snap::raw::decompress_len(raw).map_err(bad)?;
        if out.len() + len > limit {
            return Err(RecordsError::TooLarge(limit));
        }
        let start = out.len();
        out.resize(start + len, 0);
        snap::raw::Decoder::new()
            .decompress(raw, &mut out[start..])
            .map_err(bad)?;
        Ok(())
    };
    if !payload.starts_with(XERIAL_MAGIC) || payload.len() < 16 {
        return block(payload, out);
    }
    let mut rest = &payload[16..];
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(RecordsError::Framing("truncated snappy block length"));
        }
        let len = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        rest = &rest[4..];
        if len > rest.len() {
            return Err(RecordsError::Framing("truncated snappy block"));
        }
        block(&rest[..len], out)?;
        rest = &rest[len..];
    }
    Ok(())
}

/// The offset and timestamp of every record in a stored batch, in order.
pub fn record_stamps(batch: &[u8], limit: usize) -> Result<Vec<RecordStamp>, RecordsError> {
    let header =
        BatchHeader::parse(batch).map_err(|_| RecordsError::Framing("bad batch header"))?;
    let data = decompress(batch, limit)?;
    let mut stamps = Vec::with_capacity(header.record_count.clamp(0, 1 << 16) as usize);
    walk(
        &data,
        header.record_count,
        |offset_delta, timestamp_delta| {
            stamps.push(RecordStamp {
                offset: header.base_offset + offset_delta as i64,
                timestamp: header.base_timestamp.saturating_add(timestamp_delta),
            })
        },
    )?;
    Ok(stamps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::tests::producer_batch;
    use kafka_protocol::records::Compression;

    #[test]
    fn reads_offsets_and_timestamps_through_every_codec() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let mut batch = producer_batch(c, &["a", "b", "c"], 1_000);
            crate::batch::patch_header(&mut batch, 100, 0);
            let stamps = record_stamps(&batch, 1 << 20).unwrap();
            assert_eq!(
                stamps,
                [
                    RecordStamp {
                        offset: 100,
                        timestamp: 1_000
                    },
                    RecordStamp {
                        offset: 101,
                        timestamp: 1_010
                    },
                    RecordStamp {
                        offset: 102,
                        timestamp: 1_020
                    },
                ],
                "{c:?}"
            );
        }
    }

    #[test]
    fn refuses_to_inflate_past_the_limit() {
        let big = "x".repeat(10_000);
        let batch = producer_batch(Compression::Gzip, &[&big], 0);
        assert!(matches!(
            record_stamps(&batch, 1_000),
            Err(RecordsError::TooLarge(1_000))
        ));
    }

    #[test]
    fn a_miscounted_uncompressed_batch_is_malformed() {
        let batch = producer_batch(Compression::None, &["a", "b"], 0);
        assert!(check_framing(&batch[HEADER_LEN..], 2).is_ok());
        assert!(check_framing(&batch[HEADER_LEN..], 3).is_err());
        assert!(check_framing(&batch[HEADER_LEN..], 1).is_err());
    }
}
