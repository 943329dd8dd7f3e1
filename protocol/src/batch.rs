//! Record batches (message format v2) as the broker sees them: a fixed 61-byte header it
//! validates and partly owns, and a payload it never opens on the write path.
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
    #[error("the records inside the batch are malformed: {0}")]
    MalformedRecords(String),
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
            | BatchError::MalformedRecords(_)
            | BatchError::Empty => ResponseError::InvalidRecord.code(),
            BatchError::UnsupportedMagic(_) => ResponseError::UnsupportedForMessageFormat.code(),
            BatchError::Truncated { .. }
            | BatchError::InvalidLength(_)
            | BatchError::CrcMismatch { .. } => ResponseError::CorruptMessage.code(),
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

/// Validates the records of one partition in a produce request: one or more complete v2
/// batches back to back, each with a matching CRC, a known codec, consistent offsets and
/// no control flag. Uncompressed batches also have their records' framing checked.
pub fn validate_produce_records(records: &[u8]) -> Result<Vec<BatchHeader>, BatchError> {
    let mut headers = Vec::new();
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
        let codec = header
            .codec()
            .ok_or(BatchError::UnknownCodec(header.attributes & 0x7))?;
        if header.is_control() {
            return Err(BatchError::ControlBatch);
        }
        if header.record_count <= 0 || header.last_offset_delta != header.record_count - 1 {
            return Err(BatchError::InconsistentOffsets {
                record_count: header.record_count,
                last_offset_delta: header.last_offset_delta,
            });
        }
        if codec == Codec::None {
            crate::records::check_framing(&batch[HEADER_LEN..], header.record_count)
                .map_err(|e| BatchError::MalformedRecords(e.to_string()))?;
        }
        headers.push(header);
        rest = &rest[len..];
    }
    if headers.is_empty() {
        return Err(BatchError::Empty);
    }
    Ok(headers)
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
            let headers = validate_produce_records(&batch).unwrap();
            assert_eq!(headers.len(), 1);
            assert_eq!(headers[0].record_count, 3);
            assert_eq!(headers[0].max_timestamp, 1020);
        }
    }

    #[test]
    fn accepts_several_batches_back_to_back() {
        let mut data = producer_batch(Compression::None, &["a"], 1);
        data.extend(producer_batch(Compression::Gzip, &["b", "c"], 2));
        let headers = validate_produce_records(&data).unwrap();
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
        let err = validate_produce_records(&batch).unwrap_err();
        assert!(matches!(err, BatchError::CrcMismatch { .. }));
        assert_eq!(err.error_code(), ResponseError::CorruptMessage.code());
    }

    #[test]
    fn truncated_old_magic_and_empty_inputs_are_refused() {
        let batch = producer_batch(Compression::None, &["hello"], 1);
        assert!(matches!(
            validate_produce_records(&batch[..batch.len() - 1]),
            Err(BatchError::Truncated { .. })
        ));
        assert!(matches!(
            validate_produce_records(&batch[..30]),
            Err(BatchError::Truncated { .. })
        ));
        let mut v1 = batch.clone();
        v1[16] = 1;
        assert_eq!(
            validate_produce_records(&v1),
            Err(BatchError::UnsupportedMagic(1))
        );
        assert_eq!(validate_produce_records(&[]), Err(BatchError::Empty));
    }

    #[test]
    fn patching_keeps_the_crc_valid() {
        let mut batch = producer_batch(Compression::Lz4, &["x", "y"], 5);
        patch_header(&mut batch, 1234, 7);
        let header = validate_produce_records(&batch).unwrap()[0];
        assert_eq!(header.base_offset, 1234);
        assert_eq!(header.partition_leader_epoch, 7);
        assert_eq!(header.last_offset(), 1235);
    }
}
