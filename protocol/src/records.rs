//! Reading the records out of a v2 batch: Produce reads every record of a batch before it
//! is stored, and the broker looks inside stored ones in a few places (finding the first
//! record at or after a timestamp, log compaction).
//!
//! Each record is `length: varint, attributes: i8, timestamp_delta: varlong,
//! offset_delta: varint, key_length: varint, key, value_length: varint, value,
//! header_count: varint, headers`, each header `key_length, key, value_length, value`, where
//! varints are zig-zag LEB128 and a length of -1 is null. Decompression is capped so a
//! small batch that inflates to gigabytes cannot exhaust memory.

use std::borrow::Cow;
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
    #[error("record {index} is invalid: {problem}")]
    Record { index: i32, problem: &'static str },
    #[error("cannot decompress {codec:?} batch: {source}")]
    Decompress {
        codec: Codec,
        source: std::io::Error,
    },
    #[error("batch inflates beyond the {0}-byte limit")]
    TooLarge(usize),
    #[error("unknown compression codec")]
    UnknownCodec,
    #[error(
        "record {index} has timestamp {timestamp}, outside [{}, {}] \
         (message.timestamp.before.max.ms and after.max.ms around the broker's clock)",
        bounds.earliest, bounds.latest
    )]
    Timestamp {
        index: i32,
        timestamp: i64,
        bounds: TimestampBounds,
    },
    #[error(
        "the batch's max timestamp {timestamp} is outside [{}, {}]",
        bounds.earliest, bounds.latest
    )]
    MaxTimestamp {
        timestamp: i64,
        bounds: TimestampBounds,
    },
    #[error("a producer may not mark its batch LogAppendTime")]
    LogAppendTime,
}

/// The record timestamps Produce accepts: Kafka's message.timestamp.before.max.ms and
/// after.max.ms around the broker's clock. A record without one (-1) always passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampBounds {
    pub earliest: i64,
    pub latest: i64,
}

impl TimestampBounds {
    pub const ANY: TimestampBounds = TimestampBounds {
        earliest: i64::MIN,
        latest: i64::MAX,
    };

    pub fn around(now_ms: i64, before_max_ms: i64, after_max_ms: i64) -> Self {
        TimestampBounds {
            earliest: now_ms.saturating_sub(before_max_ms),
            latest: now_ms.saturating_add(after_max_ms),
        }
    }

    fn admit(&self, timestamp: i64) -> bool {
        timestamp == -1 || (self.earliest..=self.latest).contains(&timestamp)
    }
}

/// One record of an uncompressed record section.
pub(crate) struct Record<'a> {
    pub timestamp_delta: i64,
    pub offset_delta: i64,
    /// `None`: the record has no key.
    pub key: Option<&'a [u8]>,
    /// A null value (a tombstone on a compacted topic).
    pub null_value: bool,
    /// The whole record, its length prefix included.
    pub bytes: &'a [u8],
}

/// Reads the next record of `data`. A produced record is read whole, as a consumer will:
/// every length inside it must fit, and nothing may follow its last header. A stored one
/// only as far as its value's length, as earlier versions did.
fn read_record<'a>(
    data: &mut &'a [u8],
    strictness: Strictness,
) -> Result<Record<'a>, &'static str> {
    let whole = *data;
    let len = read_varint(data, 5).map_err(|_| "its length is unreadable")?;
    if len < 0 || len as usize > data.len() {
        return Err("its length runs past the batch");
    }
    let (mut record, rest) = data.split_at(len as usize);
    *data = rest;
    let bytes = &whole[..whole.len() - rest.len()];
    record = record.get(1..).ok_or("it has no attributes")?;
    let field =
        |buf: &mut &'a [u8], max| read_varint(buf, max).map_err(|_| "a field is unreadable");
    let timestamp_delta = field(&mut record, 10)?;
    let offset_delta = field(&mut record, 5)?;
    if strictness == Strictness::Stored {
        let key = match field(&mut record, 5)? {
            len if len < 0 => None,
            len if len as usize > record.len() => return Err("its key runs past its end"),
            len => Some(&record[..len as usize]),
        };
        if let Some(key) = key {
            record = &record[key.len()..];
        }
        let null_value = field(&mut record, 5)? < 0;
        return Ok(Record {
            timestamp_delta,
            offset_delta,
            key,
            null_value,
            bytes,
        });
    }
    let key = read_bytes(&mut record, "its key runs past its end")?;
    let value = read_bytes(&mut record, "its value runs past its end")?;
    let headers = field(&mut record, 5)?;
    if headers < 0 {
        return Err("its header count is negative");
    }
    for _ in 0..headers {
        if read_bytes(&mut record, "a header key runs past its end")?.is_none() {
            return Err("a header key is null");
        }
        read_bytes(&mut record, "a header value runs past its end")?;
    }
    if !record.is_empty() {
        return Err("bytes follow its last header");
    }
    Ok(Record {
        timestamp_delta,
        offset_delta,
        key,
        null_value: value.is_none(),
        bytes,
    })
}

/// A varint-length-prefixed byte string; `None` for length -1.
fn read_bytes<'a>(
    buf: &mut &'a [u8],
    overrun: &'static str,
) -> Result<Option<&'a [u8]>, &'static str> {
    let len = read_varint(buf, 5).map_err(|_| "a length is unreadable")?;
    if len < -1 {
        return Err("a length is below -1");
    }
    if len == -1 {
        return Ok(None);
    }
    let len = len as usize;
    if len > buf.len() {
        return Err(overrun);
    }
    let (bytes, rest) = buf.split_at(len);
    *buf = rest;
    Ok(Some(bytes))
}

/// The records of a stored batch's uncompressed record section, exactly `count` of them.
pub(crate) fn split_records(mut data: &[u8], count: i32) -> Result<Vec<Record<'_>>, RecordsError> {
    let mut out = Vec::with_capacity(count.clamp(0, 1 << 16) as usize);
    for index in 0..count {
        let record = read_record(&mut data, Strictness::Stored)
            .map_err(|problem| RecordsError::Record { index, problem })?;
        out.push(record);
    }
    if !data.is_empty() {
        return Err(RecordsError::Framing("bytes left after the last record"));
    }
    Ok(out)
}

/// What reading every record of a produced batch found out, besides that it is valid.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordsSummary {
    /// The first record without a key (a compacted topic refuses the batch).
    pub keyless: Option<i32>,
}

/// Reads every record of a produced batch, as Kafka's broker does before it stores one,
/// so that nothing a consumer cannot read is ever stored: the record section inflates to
/// at most `limit` bytes and holds exactly the header's record count, each record framed
/// whole, with offset deltas 0, 1, 2, ... as the header's last offset delta says, and a
/// timestamp within `times`.
pub fn check_produced(
    batch: &[u8],
    header: &BatchHeader,
    limit: usize,
    times: &TimestampBounds,
) -> Result<RecordsSummary, RecordsError> {
    if header.has_log_append_time() {
        return Err(RecordsError::LogAppendTime);
    }
    // Stored as sent (the CRC covers it), and what the time index and retention go by.
    if !times.admit(header.max_timestamp) {
        return Err(RecordsError::MaxTimestamp {
            timestamp: header.max_timestamp,
            bounds: *times,
        });
    }
    let data = inflate(batch, limit, Strictness::Produced)?;
    let mut rest = &data[..];
    let mut summary = RecordsSummary::default();
    for index in 0..header.record_count {
        let record = read_record(&mut rest, Strictness::Produced)
            .map_err(|problem| RecordsError::Record { index, problem })?;
        if record.offset_delta != i64::from(index) {
            return Err(RecordsError::Record {
                index,
                problem: "its offset delta is not its position in the batch",
            });
        }
        let timestamp = header.base_timestamp.saturating_add(record.timestamp_delta);
        if !times.admit(timestamp) {
            return Err(RecordsError::Timestamp {
                index,
                timestamp,
                bounds: *times,
            });
        }
        if record.key.is_none() && summary.keyless.is_none() {
            summary.keyless = Some(index);
        }
    }
    if !rest.is_empty() {
        return Err(RecordsError::Framing(
            "bytes follow the last record the header counts",
        ));
    }
    Ok(summary)
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

/// The most any batch may inflate to, on every node alike: Produce refuses more (its
/// setting may only lower it), and the log cleaner, which must read every stored batch the
/// same way on every replica, reads up to it.
pub const MAX_INFLATED_BATCH_BYTES: usize = 64 << 20;

/// How much of the format a reader insists on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strictness {
    /// A produced batch: whatever a Java consumer would choke on is refused.
    Produced,
    /// A stored batch, read as the versions that stored it did, so that replicas running
    /// different versions clean it alike.
    Stored,
}

/// The record section of a stored `batch`, decompressed (refusing to produce more than
/// `limit` bytes) or, uncompressed, as it is.
pub fn decompress(batch: &[u8], limit: usize) -> Result<Cow<'_, [u8]>, RecordsError> {
    inflate(batch, limit, Strictness::Stored)
}

fn inflate(
    batch: &[u8],
    limit: usize,
    strictness: Strictness,
) -> Result<Cow<'_, [u8]>, RecordsError> {
    let header =
        BatchHeader::parse(batch).map_err(|_| RecordsError::Framing("bad batch header"))?;
    let end = header.total_len().min(batch.len());
    let payload = &batch[HEADER_LEN..end];
    let codec = header.codec().ok_or(RecordsError::UnknownCodec)?;
    let strict = strictness == Strictness::Produced;
    let failed = |source| RecordsError::Decompress { codec, source };
    let invalid = |what: &str| failed(std::io::Error::new(std::io::ErrorKind::InvalidData, what));
    let mut out = Vec::new();
    let read = |r: &mut dyn Read, out: &mut Vec<u8>| {
        r.take((limit as u64).saturating_add(1))
            .read_to_end(out)
            .map(|_| ())
            .map_err(failed)
    };
    let too_large = |out: &Vec<u8>| out.len() > limit;
    match codec {
        Codec::None => return Ok(Cow::Borrowed(payload)),
        Codec::Gzip if strict => {
            // One member, and nothing after it: Java's reader would go on into the rest.
            let mut decoder = flate2::bufread::GzDecoder::new(payload);
            read(&mut decoder, &mut out)?;
            if !too_large(&out) && !decoder.into_inner().is_empty() {
                return Err(invalid("bytes follow the gzip stream"));
            }
        }
        Codec::Gzip => read(&mut flate2::read::GzDecoder::new(payload), &mut out)?,
        Codec::Snappy => snappy_decompress(payload, limit, &mut out)?,
        Codec::Lz4 => {
            if strict && !java_reads_lz4_frame(payload) {
                return Err(invalid(
                    "not an LZ4 frame of independent blocks (what Kafka's clients read)",
                ));
            }
            let mut decoder = lz4::Decoder::new(payload).map_err(failed)?;
            read(&mut decoder, &mut out)?;
            if strict && !too_large(&out) {
                let (rest, finished) = decoder.finish();
                finished.map_err(|_| invalid("the LZ4 frame has no end mark"))?;
                if !rest.is_empty() {
                    return Err(invalid("bytes follow the LZ4 frame"));
                }
            }
        }
        Codec::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::new(payload).map_err(failed)?;
            if strict {
                // What zstd itself and the Java client's reader allow (level 22 writes 2^27).
                decoder.window_log_max(27).map_err(failed)?;
            }
            read(&mut decoder, &mut out)?
        }
    };
    if too_large(&out) {
        return Err(RecordsError::TooLarge(limit));
    }
    Ok(Cow::Owned(out))
}

/// Whether `payload` starts as an LZ4 frame Kafka's Java reader takes: the frame magic,
/// version 1, independent blocks, no dictionary.
fn java_reads_lz4_frame(payload: &[u8]) -> bool {
    const MAGIC: [u8; 4] = [0x04, 0x22, 0x4d, 0x18];
    match payload {
        [m0, m1, m2, m3, flags, ..] => {
            [*m0, *m1, *m2, *m3] == MAGIC
                && flags >> 6 == 1
                && flags & 0x20 != 0
                && flags & 0x03 == 0
        }
        _ => false,
    }
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
    Ok(split_records(&data, header.record_count)?
        .iter()
        .map(|r| RecordStamp {
            offset: header.base_offset + r.offset_delta,
            timestamp: header.base_timestamp.saturating_add(r.timestamp_delta),
        })
        .collect())
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
    fn a_miscounted_batch_is_malformed() {
        let batch = producer_batch(Compression::Gzip, &["a", "b"], 0);
        let header = BatchHeader::parse(&batch).unwrap();
        assert!(check_produced(&batch, &header, 1 << 20, &TimestampBounds::ANY).is_ok());
        for count in [1, 3] {
            let claimed = BatchHeader {
                record_count: count,
                ..header
            };
            let checked = check_produced(&batch, &claimed, 1 << 20, &TimestampBounds::ANY);
            assert!(checked.is_err(), "{count}");
        }
    }
}
