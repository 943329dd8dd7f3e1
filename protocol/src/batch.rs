//! Record batches (message format v2) as the broker sees them: a fixed 61-byte header it
//! validates and partly owns, and a payload it reads once, to validate it, and stores as
//! it came.
//!
//! ```text
//! offset  size  field                  owner
//!      0     8  base_offset            broker (patched when the batch is appended)
//!      8     4  batch_length           producer (bytes after this field)
//!     12     4  partition_leader_epoch broker (patched: the Raft term that appended it)
//!     16     1  magic (2)
//!     17     4  crc (CRC-32C of bytes 21..end)
//!     21     2  attributes             bits 0-2 codec, 3 log-append-time, 4 txn, 5 control
//!     23     4  last_offset_delta
//!     27     8  base_timestamp
//!     35     8  max_timestamp
//!     43     8  producer_id
//!     51     2  producer_epoch
//!     53     4  base_sequence
//!     57     4  record_count
//!     61     …  records (compressed as a whole when the codec is not none)
//! ```
//!
//! The CRC starts at byte 21, so patching the base offset and leader epoch keeps it valid:
//! batches are stored and served byte for byte as the producer compressed them.

use kafka_protocol::ResponseError;

use crate::records::{RecordsError, TimestampBounds};

pub const MAGIC_V2: i8 = 2;
pub const HEADER_LEN: usize = 61;
/// The bytes of the header that `batch_length` does not count (base offset and itself).
pub const LOG_OVERHEAD: usize = 12;
pub(crate) const CRC_START: usize = 21;

/// Compression codec of a batch (attribute bits 0-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    fn from_attributes(attributes: i16) -> Option<Codec> {
        Some(match attributes & 0x7 {
            0 => Codec::None,
            1 => Codec::Gzip,
            2 => Codec::Snappy,
            3 => Codec::Lz4,
            4 => Codec::Zstd,
            _ => return None,
        })
    }
}

/// The parsed fixed header of one v2 record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

/// Why a batch was refused. Each maps to the Kafka error the producer receives.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("record data is truncated: {needed} bytes needed, {available} present")]
    Truncated { needed: usize, available: usize },
    #[error("batch length {0} is invalid")]
    InvalidLength(i32),
    #[error("message format v{0} is not supported; only v2 record batches are accepted")]
    UnsupportedMagic(i8),
    #[error("CRC mismatch: batch says {stored:#010x}, content has {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("unknown compression codec {0}")]
    UnknownCodec(i16),
    #[error("batch has {record_count} records but last offset delta {last_offset_delta}")]
    InconsistentOffsets {
        record_count: i32,
        last_offset_delta: i32,
    },
    #[error("producers may not write control batches")]
    ControlBatch,
    /// `record` counts the partition's records from 0, across its batches, when one record
    /// is at fault (Produce v8+ reports it in `record_errors`).
    #[error("the records inside the batch are malformed: {message}")]
    MalformedRecords {
        record: Option<i32>,
        message: String,
    },
    #[error("the records inside the batch are unreadable: {0}")]
    Undecodable(String),
    #[error("the batch inflates to more than {0} bytes (max-inflated-batch-bytes)")]
    InflatesTooLarge(usize),
    #[error("{message}")]
    InvalidTimestamp {
        record: Option<i32>,
        message: String,
    },
    #[error("no record batch in the request")]
    Empty,
}

impl BatchError {
    /// The Kafka error code a producer gets for this batch.
    pub fn error_code(&self) -> i16 {
        match self {
            BatchError::UnknownCodec(_) => ResponseError::UnsupportedCompressionType.code(),
            BatchError::InconsistentOffsets { .. }
            | BatchError::ControlBatch
            | BatchError::MalformedRecords { .. }
            | BatchError::Empty => ResponseError::InvalidRecord.code(),
            BatchError::UnsupportedMagic(_) => ResponseError::UnsupportedForMessageFormat.code(),
            BatchError::InflatesTooLarge(_) => ResponseError::MessageTooLarge.code(),
            BatchError::InvalidTimestamp { .. } => ResponseError::InvalidTimestamp.code(),
            BatchError::Truncated { .. }
            | BatchError::InvalidLength(_)
            | BatchError::CrcMismatch { .. }
            | BatchError::Undecodable(_) => ResponseError::CorruptMessage.code(),
        }
    }

    /// The one record at fault, counted from 0 across the partition's records, if there is
    /// one.
    pub fn record(&self) -> Option<i32> {
        match self {
            BatchError::MalformedRecords { record, .. }
            | BatchError::InvalidTimestamp { record, .. } => *record,
            _ => None,
        }
    }
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn i64_at(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl BatchHeader {
    /// Parses the header at the start of `buf`, checking only that it is complete, that the
    /// magic byte is 2 and that the stated length is plausible.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        if buf.len() < 17 {
            return Err(BatchError::Truncated {
                needed: 17,
                available: buf.len(),
            });
        }
        let magic = buf[16] as i8;
        if magic != MAGIC_V2 {
            return Err(BatchError::UnsupportedMagic(magic));
        }
        if buf.len() < HEADER_LEN {
            return Err(BatchError::Truncated {
                needed: HEADER_LEN,
                available: buf.len(),
            });
        }
        let batch_length = i32_at(buf, 8);
        if batch_length < (HEADER_LEN - LOG_OVERHEAD) as i32 {
            return Err(BatchError::InvalidLength(batch_length));
        }
        Ok(BatchHeader {
            base_offset: i64_at(buf, 0),
            batch_length,
            partition_leader_epoch: i32_at(buf, 12),
            magic,
            crc: u32::from_be_bytes(buf[17..21].try_into().expect("4 bytes")),
            attributes: i16_at(buf, 21),
            last_offset_delta: i32_at(buf, 23),
            base_timestamp: i64_at(buf, 27),
            max_timestamp: i64_at(buf, 35),
            producer_id: i64_at(buf, 43),
            producer_epoch: i16_at(buf, 51),
            base_sequence: i32_at(buf, 53),
            record_count: i32_at(buf, 57),
        })
    }

    /// Size of the whole batch in bytes, header included.
    pub fn total_len(&self) -> usize {
        LOG_OVERHEAD + self.batch_length as usize
    }

    pub fn codec(&self) -> Option<Codec> {
        Codec::from_attributes(self.attributes)
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }

    pub fn has_log_append_time(&self) -> bool {
        self.attributes & 0x08 != 0
    }

    /// Number of offsets the batch occupies.
    pub fn offset_count(&self) -> i64 {
        self.last_offset_delta as i64 + 1
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }

    /// Whether the batch carries an idempotent or transactional producer id.
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }
}

/// The batches of one partition in a produce request, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducedBatches {
    pub headers: Vec<BatchHeader>,
    /// The first record without a key, counted from 0 across the partition's records (a
    /// compacted topic refuses them).
    pub keyless: Option<i32>,
}

/// Validates the records of one partition in a produce request: one or more complete v2
/// batches back to back, each with a matching CRC, a known codec, consistent offsets, no
/// control flag, and records a consumer can read, with timestamps within `times` (see
/// [`crate::records::check_produced`]; compressed ones inflate to at most `inflate_limit`
/// bytes).
pub fn validate_produce_records(
    records: &[u8],
    inflate_limit: usize,
    times: &TimestampBounds,
) -> Result<ProducedBatches, BatchError> {
    let mut headers = Vec::new();
    let mut keyless = None;
    // Records in the batches before this one.
    let mut before = 0i32;
    let mut rest = records;
    while !rest.is_empty() {
        let header = BatchHeader::parse(rest)?;
        let len = header.total_len();
        if rest.len() < len {
            return Err(BatchError::Truncated {
                needed: len,
                available: rest.len(),
            });
        }
        let batch = &rest[..len];
        let computed = crc32c::crc32c(&batch[CRC_START..]);
        if computed != header.crc {
            return Err(BatchError::CrcMismatch {
                stored: header.crc,
                computed,
            });
        }
        let codec_bits = header.attributes & 0x7;
        header.codec().ok_or(BatchError::UnknownCodec(codec_bits))?;
        if header.is_control() {
            return Err(BatchError::ControlBatch);
        }
        if header.record_count <= 0 || header.last_offset_delta != header.record_count - 1 {
            return Err(BatchError::InconsistentOffsets {
                record_count: header.record_count,
                last_offset_delta: header.last_offset_delta,
            });
        }
        let summary = crate::records::check_produced(batch, &header, inflate_limit, times)
            .map_err(|e| {
                let record = match e {
                    RecordsError::Record { index, .. } | RecordsError::Timestamp { index, .. } => {
                        Some(before.saturating_add(index))
                    }
                    _ => None,
                };
                let message = e.to_string();
                match e {
                    RecordsError::TooLarge(limit) => BatchError::InflatesTooLarge(limit),
                    RecordsError::Timestamp { .. }
                    | RecordsError::MaxTimestamp { .. }
                    | RecordsError::LogAppendTime => {
                        BatchError::InvalidTimestamp { record, message }
                    }
                    RecordsError::Decompress { .. } => BatchError::Undecodable(message),
                    RecordsError::UnknownCodec => BatchError::UnknownCodec(codec_bits),
                    RecordsError::Framing(_) | RecordsError::Record { .. } => {
                        BatchError::MalformedRecords { record, message }
                    }
                }
            })?;
        keyless = keyless.or(summary.keyless.map(|i| before.saturating_add(i)));
        before = before.saturating_add(header.record_count);
        headers.push(header);
        rest = &rest[len..];
    }
    if headers.is_empty() {
        return Err(BatchError::Empty);
    }
    Ok(ProducedBatches { headers, keyless })
}

/// The header bytes [`patch_header`] writes to (base offset, length, partition leader
/// epoch): everything before them is the batch's own.
pub const PATCHED_HEADER_BYTES: usize = 16;

/// Sets the broker-owned header fields of a batch in place. The CRC stays valid because it
/// does not cover them.
pub fn patch_header(batch: &mut [u8], base_offset: i64, partition_leader_epoch: i32) {
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
    batch[12..16].copy_from_slice(&partition_leader_epoch.to_be_bytes());
}

/// Splits stored, already validated record data into its batches.
pub fn split_batches(mut data: &[u8]) -> impl Iterator<Item = (BatchHeader, &[u8])> {
    std::iter::from_fn(move || {
        let header = BatchHeader::parse(data).ok()?;
        let len = header.total_len().min(data.len());
        let (batch, rest) = data.split_at(len);
        data = rest;
        Some((header, batch))
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::indexmap::IndexMap;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    const LIMIT: usize = 1 << 20;
    const ANY: TimestampBounds = TimestampBounds::ANY;

    /// Encodes a batch the way a producer would, with the Kafka crate's client-side encoder.
    pub(crate) fn producer_batch(
        compression: Compression,
        values: &[&str],
        first_ts: i64,
    ) -> Vec<u8> {
        let keys: Vec<String> = (0..values.len()).map(|i| format!("k{i}")).collect();
        let records: Vec<(Option<&str>, Option<&str>)> = keys
            .iter()
            .zip(values)
            .map(|(k, v)| (Some(k.as_str()), Some(*v)))
            .collect();
        producer_batch_with_keys(compression, &records, first_ts)
    }

    /// Like [`producer_batch`], with each record's key and value given (`None`: null).
    pub(crate) fn producer_batch_with_keys(
        compression: Compression,
        records: &[(Option<&str>, Option<&str>)],
        first_ts: i64,
    ) -> Vec<u8> {
        let text = |s: Option<&str>| s.map(|s| bytes::Bytes::from(s.to_string()));
        let records: Vec<Record> = records
            .iter()
            .enumerate()
            .map(|(i, (k, v))| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                sequence: i as i32 - 1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                timestamp: first_ts + i as i64 * 10,
                key: text(*k),
                value: text(*v),
                headers: IndexMap::new(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .unwrap();
        buf.to_vec()
    }

    #[test]
    fn accepts_producer_batches_of_every_codec() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let batch = producer_batch(c, &["a", "bb", "ccc"], 1000);
            let headers = validate_produce_records(&batch, LIMIT, &ANY)
                .unwrap()
                .headers;
            assert_eq!(headers.len(), 1);
            assert_eq!(headers[0].record_count, 3);
            assert_eq!(headers[0].max_timestamp, 1020);
        }
    }

    #[test]
    fn accepts_several_batches_back_to_back() {
        let mut data = producer_batch(Compression::None, &["a"], 1);
        data.extend(producer_batch(Compression::Gzip, &["b", "c"], 2));
        let headers = validate_produce_records(&data, LIMIT, &ANY)
            .unwrap()
            .headers;
        assert_eq!(
            headers.iter().map(|h| h.record_count).collect::<Vec<_>>(),
            [1, 2]
        );
        assert_eq!(split_batches(&data).count(), 2);
    }

    #[test]
    fn a_flipped_payload_byte_is_a_corrupt_message() {
        let mut batch = producer_batch(Compression::None, &["hello"], 1);
        let last = batch.len() - 1;
        batch[last] ^= 0x40;
        let err = validate_produce_records(&batch, LIMIT, &ANY).unwrap_err();
        assert!(matches!(err, BatchError::CrcMismatch { .. }));
        assert_eq!(err.error_code(), ResponseError::CorruptMessage.code());
    }

    #[test]
    fn truncated_old_magic_and_empty_inputs_are_refused() {
        let batch = producer_batch(Compression::None, &["hello"], 1);
        assert!(matches!(
            validate_produce_records(&batch[..batch.len() - 1], LIMIT, &ANY),
            Err(BatchError::Truncated { .. })
        ));
        assert!(matches!(
            validate_produce_records(&batch[..30], LIMIT, &ANY),
            Err(BatchError::Truncated { .. })
        ));
        let mut v1 = batch.clone();
        v1[16] = 1;
        assert_eq!(
            validate_produce_records(&v1, LIMIT, &ANY),
            Err(BatchError::UnsupportedMagic(1))
        );
        assert_eq!(
            validate_produce_records(&[], LIMIT, &ANY),
            Err(BatchError::Empty)
        );
    }

    #[test]
    fn patching_keeps_the_crc_valid() {
        let mut batch = producer_batch(Compression::Lz4, &["x", "y"], 5);
        patch_header(&mut batch, 1234, 7);
        let header = validate_produce_records(&batch, LIMIT, &ANY)
            .unwrap()
            .headers[0];
        assert_eq!(header.base_offset, 1234);
        assert_eq!(header.partition_leader_epoch, 7);
        assert_eq!(header.last_offset(), 1235);
    }

    /// A batch whose record section is `payload` as sent (compressed already when `codec`
    /// says so), claiming `count` records, with a valid CRC: what a producer could send.
    fn raw_batch(codec: i16, count: i32, payload: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_LEN];
        b[16] = MAGIC_V2 as u8;
        b[21..23].copy_from_slice(&codec.to_be_bytes());
        b[23..27].copy_from_slice(&(count - 1).to_be_bytes());
        b[43..51].copy_from_slice(&(-1i64).to_be_bytes());
        b[51..53].copy_from_slice(&(-1i16).to_be_bytes());
        b[53..57].copy_from_slice(&(-1i32).to_be_bytes());
        b[57..61].copy_from_slice(&count.to_be_bytes());
        b.extend_from_slice(payload);
        let len = (b.len() - LOG_OVERHEAD) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        let crc = crc32c::crc32c(&b[CRC_START..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    fn varint(value: i64, out: &mut Vec<u8>) {
        let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
        while zigzag >= 0x80 {
            out.push(zigzag as u8 | 0x80);
            zigzag >>= 7;
        }
        out.push(zigzag as u8);
    }

    /// A length-prefixed byte string, `None` as length -1.
    fn string(bytes: Option<&[u8]>, out: &mut Vec<u8>) {
        match bytes {
            Some(b) => {
                varint(b.len() as i64, out);
                out.extend_from_slice(b);
            }
            None => varint(-1, out),
        }
    }

    /// One record at `offset_delta`: its key, value and headers are `body`, as encoded.
    fn record(offset_delta: i64, body: &[u8]) -> Vec<u8> {
        let mut inner = vec![0u8];
        varint(0, &mut inner);
        varint(offset_delta, &mut inner);
        inner.extend_from_slice(body);
        let mut out = Vec::new();
        varint(inner.len() as i64, &mut out);
        out.extend(inner);
        out
    }

    /// Key, value and no headers.
    fn body(key: Option<&[u8]>, value: Option<&[u8]>) -> Vec<u8> {
        let mut out = Vec::new();
        string(key, &mut out);
        string(value, &mut out);
        varint(0, &mut out);
        out
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn refusal(batch: &[u8]) -> ResponseError {
        let error = validate_produce_records(batch, LIMIT, &ANY).unwrap_err();
        ResponseError::try_from_code(error.error_code()).unwrap()
    }

    #[test]
    fn compressed_payloads_that_do_not_decompress_are_corrupt() {
        let kv = record(0, &body(Some(b"k"), Some(b"v")));
        let zstd = zstd::encode_all(&kv[..], 3).unwrap();
        let mut garbage = zstd[..4].to_vec();
        garbage.extend_from_slice(b"not what the magic promised");
        assert_eq!(
            refusal(&raw_batch(4, 1, &garbage)),
            ResponseError::CorruptMessage
        );
        // Flagged gzip, holding zstd.
        assert_eq!(
            refusal(&raw_batch(1, 1, &zstd)),
            ResponseError::CorruptMessage
        );
        let snappy = snap::raw::Encoder::new().compress_vec(&kv).unwrap();
        let truncated = refusal(&raw_batch(2, 1, &snappy[..snappy.len() - 2]));
        assert!(
            matches!(
                truncated,
                ResponseError::CorruptMessage | ResponseError::InvalidRecord
            ),
            "{truncated:?}"
        );
        let empty_lz4 = refusal(&raw_batch(3, 1, &[]));
        assert!(
            matches!(
                empty_lz4,
                ResponseError::CorruptMessage | ResponseError::InvalidRecord
            ),
            "{empty_lz4:?}"
        );
    }

    #[test]
    fn records_a_consumer_cannot_read_are_invalid_whatever_the_codec() {
        let kv = || body(Some(b"k"), Some(b"v"));
        let mut long_key = Vec::new();
        varint(5_000, &mut long_key);
        long_key.extend_from_slice(&[b'x'; 20]);
        let mut null_header_key = body(Some(b"k"), Some(b"v"));
        null_header_key.pop();
        varint(1, &mut null_header_key);
        string(None, &mut null_header_key);
        string(Some(b"x"), &mut null_header_key);
        let mut trailing = kv();
        trailing.push(0);
        let cases: Vec<(&str, i32, Vec<u8>)> = vec![
            ("a key longer than its record", 1, record(0, &long_key)),
            ("a header with a null key", 1, record(0, &null_header_key)),
            ("bytes after the last header", 1, record(0, &trailing)),
            (
                "three records at one offset delta",
                3,
                [record(0, &kv()), record(0, &kv()), record(0, &kv())].concat(),
            ),
            (
                "offset deltas running backwards",
                2,
                [record(1, &kv()), record(0, &kv())].concat(),
            ),
            (
                "a count of 2^31-1 for one record",
                i32::MAX,
                record(0, &kv()),
            ),
            (
                "fewer records than counted",
                3,
                [record(0, &kv()), record(1, &kv())].concat(),
            ),
            (
                "more records than counted",
                1,
                [record(0, &kv()), record(1, &kv())].concat(),
            ),
        ];
        for (what, count, records) in cases {
            for (codec, payload) in [(0, records.clone()), (1, gzip(&records))] {
                assert_eq!(
                    refusal(&raw_batch(codec, count, &payload)),
                    ResponseError::InvalidRecord,
                    "{what}, codec {codec}"
                );
            }
        }
    }

    #[test]
    fn the_record_at_fault_is_counted_across_the_partitions_batches() {
        let kv = || body(Some(b"k"), Some(b"v"));
        let good = raw_batch(0, 2, &[record(0, &kv()), record(1, &kv())].concat());
        let mut long_key = Vec::new();
        varint(5_000, &mut long_key);
        let bad = raw_batch(
            1,
            2,
            &gzip(&[record(0, &kv()), record(1, &long_key)].concat()),
        );
        let error = validate_produce_records(&[good, bad].concat(), LIMIT, &ANY).unwrap_err();
        assert_eq!(error.error_code(), ResponseError::InvalidRecord.code());
        assert_eq!(error.record(), Some(3), "{error}");
        // A fault of the batch as a whole names no record.
        let framing = raw_batch(0, 1, &[record(0, &kv()), vec![0]].concat());
        let error = validate_produce_records(&framing, LIMIT, &ANY).unwrap_err();
        assert_eq!(error.record(), None, "{error}");
    }

    #[test]
    fn a_batch_that_inflates_past_the_limit_is_too_large() {
        let big = record(0, &body(Some(b"k"), Some(&vec![b'x'; 2 * LIMIT])));
        let batch = raw_batch(1, 1, &gzip(&big));
        assert!(batch.len() < LIMIT / 64, "a bomb: {} bytes", batch.len());
        assert_eq!(refusal(&batch), ResponseError::MessageTooLarge);
        assert!(validate_produce_records(&batch, 4 * LIMIT, &ANY).is_ok());
    }

    #[test]
    fn null_keys_null_values_and_headers_are_valid_and_keyless_is_reported() {
        let mut with_headers = body(None, None);
        with_headers.pop();
        varint(2, &mut with_headers);
        for (key, value) in [(&b"h1"[..], Some(&b"x"[..])), (b"h2", None)] {
            string(Some(key), &mut with_headers);
            string(value, &mut with_headers);
        }
        let records = [record(0, &body(Some(b"k"), None)), record(1, &with_headers)].concat();
        for codec in [0, 1] {
            let payload = if codec == 0 {
                records.clone()
            } else {
                gzip(&records)
            };
            let validated =
                validate_produce_records(&raw_batch(codec, 2, &payload), LIMIT, &ANY).unwrap();
            assert_eq!(validated.keyless, Some(1), "codec {codec}");
        }
        let keyed = raw_batch(0, 1, &record(0, &body(Some(b"k"), Some(b"v"))));
        assert_eq!(
            validate_produce_records(&keyed, LIMIT, &ANY)
                .unwrap()
                .keyless,
            None
        );
        // Counted across the partition's batches.
        let keyless = raw_batch(0, 1, &record(0, &body(None, Some(b"v"))));
        let both = [keyed, keyless].concat();
        let validated = validate_produce_records(&both, LIMIT, &ANY).unwrap();
        assert_eq!(validated.keyless, Some(1));
    }

    #[test]
    fn record_times_outside_the_bounds_are_invalid_timestamps() {
        let batch = producer_batch(Compression::Zstd, &["a", "b"], 1_000);
        let around = |now, before, after| TimestampBounds::around(now, before, after);
        assert!(validate_produce_records(&batch, LIMIT, &around(1_005, 10, 5)).is_ok());
        for (bounds, record, what) in [
            // Caught by the header's max timestamp, before inflating: no record is named.
            (
                around(1_005, 10, 4),
                None,
                "the second record is too far ahead",
            ),
            (
                around(1_011, 10, 0),
                Some(0),
                "the first record is too far behind",
            ),
        ] {
            let error = validate_produce_records(&batch, LIMIT, &bounds).unwrap_err();
            assert_eq!(
                error.error_code(),
                ResponseError::InvalidTimestamp.code(),
                "{what}"
            );
            assert_eq!(error.record(), record, "{what}");
        }
        let untimed = producer_batch(Compression::None, &["a"], -1);
        assert!(validate_produce_records(&untimed, LIMIT, &around(0, 0, 0)).is_ok());
    }

    fn lz4(data: &[u8], mode: lz4::BlockMode) -> Vec<u8> {
        use std::io::Write;
        let mut encoder = lz4::EncoderBuilder::new()
            .block_mode(mode)
            .build(Vec::new())
            .unwrap();
        encoder.write_all(data).unwrap();
        let (frame, finished) = encoder.finish();
        finished.unwrap();
        frame
    }

    #[test]
    fn frames_a_java_consumer_cannot_read_are_corrupt() {
        let kv = record(0, &body(Some(b"k"), Some(b"v")));
        let independent = lz4(&kv, lz4::BlockMode::Independent);
        assert!(validate_produce_records(&raw_batch(3, 1, &independent), LIMIT, &ANY).is_ok());
        // The Java client's snappy framing, in two blocks.
        let mut xerial = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
        let (first, second) = kv.split_at(3);
        for part in [first, second] {
            let block = snap::raw::Encoder::new().compress_vec(part).unwrap();
            xerial.extend_from_slice(&(block.len() as u32).to_be_bytes());
            xerial.extend_from_slice(&block);
        }
        assert!(validate_produce_records(&raw_batch(2, 1, &xerial), LIMIT, &ANY).is_ok());
        let no_end_mark = &independent[..independent.len() - 4];
        let mut trailing = independent.clone();
        trailing.push(0);
        let mut two_members = gzip(&kv);
        two_members.extend(gzip(&record(1, &body(Some(b"k"), Some(b"v")))));
        for (what, codec, payload) in [
            ("an LZ4 frame without its end mark", 3, no_end_mark.to_vec()),
            ("bytes after the LZ4 frame", 3, trailing),
            (
                "LZ4 blocks that depend on each other",
                3,
                lz4(&kv, lz4::BlockMode::Linked),
            ),
            ("a second gzip member", 1, two_members),
        ] {
            assert_eq!(
                refusal(&raw_batch(codec, 1, &payload)),
                ResponseError::CorruptMessage,
                "{what}"
            );
        }
        // Stored batches are read as before: the log cleaner reads them alike everywhere.
        let stored = raw_batch(3, 1, no_end_mark);
        assert_eq!(
            crate::records::record_stamps(&stored, LIMIT).unwrap().len(),
            1
        );
    }

    #[test]
    fn a_producer_may_not_claim_the_batch_time() {
        let mut batch = producer_batch(Compression::None, &["a"], 1_000);
        let bounds = TimestampBounds::around(1_000, 100, 100);
        assert!(validate_produce_records(&batch, LIMIT, &bounds).is_ok());
        let crc = |b: &mut Vec<u8>| {
            let crc = crc32c::crc32c(&b[CRC_START..]);
            b[17..21].copy_from_slice(&crc.to_be_bytes());
        };
        let mut far_max = batch.clone();
        far_max[35..43].copy_from_slice(&i64::MAX.to_be_bytes());
        crc(&mut far_max);
        batch[21..23].copy_from_slice(&0x08i16.to_be_bytes());
        crc(&mut batch);
        for (what, b) in [
            ("max timestamp far ahead", far_max),
            ("LogAppendTime", batch),
        ] {
            let error = validate_produce_records(&b, LIMIT, &bounds).unwrap_err();
            assert_eq!(
                error.error_code(),
                ResponseError::InvalidTimestamp.code(),
                "{what}"
            );
        }
    }

    #[test]
    fn stored_records_are_read_as_earlier_versions_read_them() {
        // Bytes after the headers, which Produce now refuses, in a batch stored before.
        let mut trailing = body(Some(b"k"), None);
        trailing.push(0);
        let stored = raw_batch(0, 1, &record(0, &trailing));
        assert_eq!(refusal(&stored), ResponseError::InvalidRecord);
        let mut keys = Vec::new();
        crate::compaction::for_each_keyed_record(&stored, LIMIT, |r| {
            keys.push((r.key.map(<[u8]>::to_vec), r.tombstone))
        })
        .unwrap();
        assert_eq!(keys, [(Some(b"k".to_vec()), true)]);
    }
}
