//! Log compaction on the bytes of one stored batch: the keys of its records, and the batch
//! rebuilt with only the records the cleaner keeps.
//!
//! A rebuilt batch keeps everything that gives its records their offsets and times (base
//! offset, last offset delta, base and max timestamp, producer fields) and each kept record
//! byte for byte, so offsets never change and consumers see gaps. The record count, length
//! and CRC are recomputed. Gzip and zstd batches are compressed again with their codec;
//! snappy and lz4 ones are stored uncompressed, since their framings differ between
//! clients and every client reads an uncompressed batch.

use std::io::Write;

use crate::batch::{BatchHeader, Codec, CRC_START, HEADER_LEN, LOG_OVERHEAD};
use crate::records::{decompress, split_records, Record, RecordsError};

/// One record as the cleaner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyedRecord<'a> {
    pub offset: i64,
    /// `None`: the record has no key (the cleaner drops such records, as Kafka's does).
    pub key: Option<&'a [u8]>,
    /// A null value: a delete marker for its key.
    pub tombstone: bool,
}

/// What cleaning made of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cleaned {
    /// Every record stays: the batch as it was.
    Unchanged,
    /// The batch rebuilt with the records kept (possibly none: an empty batch still holds
    /// its offsets, so readers move past them).
    Rebuilt(Vec<u8>),
}

/// The cleaner's view of a record.
fn keyed<'a>(header: &BatchHeader, record: &Record<'a>) -> KeyedRecord<'a> {
    KeyedRecord {
        offset: header.base_offset + record.offset_delta,
        key: record.key,
        tombstone: record.null_value,
    }
}

fn header_of(batch: &[u8]) -> Result<BatchHeader, RecordsError> {
    BatchHeader::parse(batch).map_err(|_| RecordsError::Framing("bad batch header"))
}

/// Calls `each` with every record of a stored batch (control batches have none for the
/// cleaner), refusing to inflate it past `limit` bytes.
pub fn for_each_keyed_record(
    batch: &[u8],
    limit: usize,
    mut each: impl FnMut(KeyedRecord<'_>),
) -> Result<(), RecordsError> {
    let header = header_of(batch)?;
    if header.is_control() {
        return Ok(());
    }
    let data = decompress(batch, limit)?;
    for record in split_records(&data, header.record_count)? {
        each(keyed(&header, &record));
    }
    Ok(())
}

/// Rebuilds a stored batch with the records `keep` says stay. Control batches stay whole.
pub fn clean_batch(
    batch: &[u8],
    limit: usize,
    mut keep: impl FnMut(KeyedRecord<'_>) -> bool,
) -> Result<Cleaned, RecordsError> {
    let header = header_of(batch)?;
    if header.is_control() {
        return Ok(Cleaned::Unchanged);
    }
    let data = decompress(batch, limit)?;
    let records = split_records(&data, header.record_count)?;
    let total = records.len();
    let kept: Vec<&[u8]> = records
        .into_iter()
        .filter(|r| keep(keyed(&header, r)))
        .map(|r| r.bytes)
        .collect();
    if kept.len() == total {
        return Ok(Cleaned::Unchanged);
    }
    let codec = match header.codec() {
        Some(c @ (Codec::Gzip | Codec::Zstd)) => c,
        _ => Codec::None,
    };
    let payload = compress(codec, &kept.concat())?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&batch[..HEADER_LEN]);
    out.extend_from_slice(&payload);
    let batch_length = (out.len() - LOG_OVERHEAD) as i32;
    out[8..12].copy_from_slice(&batch_length.to_be_bytes());
    let attributes = (header.attributes & !0x7) | codec_bits(codec);
    out[21..23].copy_from_slice(&attributes.to_be_bytes());
    out[57..61].copy_from_slice(&(kept.len() as i32).to_be_bytes());
    let crc = crc32c::crc32c(&out[CRC_START..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(Cleaned::Rebuilt(out))
}

fn codec_bits(codec: Codec) -> i16 {
    match codec {
        Codec::None => 0,
        Codec::Gzip => 1,
        Codec::Snappy => 2,
        Codec::Lz4 => 3,
        Codec::Zstd => 4,
    }
}

fn compress(codec: Codec, records: &[u8]) -> Result<Vec<u8>, RecordsError> {
    let failed = |source| RecordsError::Decompress { codec, source };
    match codec {
        Codec::Gzip => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(records).map_err(failed)?;
            encoder.finish().map_err(failed)
        }
        Codec::Zstd => zstd::encode_all(records, 3).map_err(failed),
        _ => Ok(records.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::tests::producer_batch_with_keys;
    use crate::batch::validate_produce_records;
    use kafka_protocol::records::Compression;

    fn keys_of(batch: &[u8]) -> Vec<(i64, Option<Vec<u8>>, bool)> {
        let mut out = Vec::new();
        for_each_keyed_record(batch, 1 << 20, |r| {
            out.push((r.offset, r.key.map(<[u8]>::to_vec), r.tombstone))
        })
        .unwrap();
        out
    }

    #[test]
    fn a_cleaned_batch_keeps_offsets_and_is_valid_in_every_codec() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let records = [
                (Some("a"), Some("1")),
                (Some("b"), None),
                (None, Some("x")),
                (Some("a"), Some("2")),
            ];
            let mut batch = producer_batch_with_keys(c, &records, 1_000);
            crate::batch::patch_header(&mut batch, 40, 3);
            assert_eq!(
                keys_of(&batch),
                [
                    (40, Some(b"a".to_vec()), false),
                    (41, Some(b"b".to_vec()), true),
                    (42, None, false),
                    (43, Some(b"a".to_vec()), false),
                ],
                "{c:?}"
            );
            assert_eq!(
                clean_batch(&batch, 1 << 20, |_| true).unwrap(),
                Cleaned::Unchanged
            );
            let Cleaned::Rebuilt(cleaned) =
                clean_batch(&batch, 1 << 20, |r| r.offset == 41 || r.offset == 43).unwrap()
            else {
                panic!("{c:?}: records were dropped");
            };
            // A producer could send it again: length, CRC, codec and framing all check.
            let header = BatchHeader::parse(&cleaned).unwrap();
            assert_eq!(header.record_count, 2);
            assert_eq!(header.last_offset_delta, 3, "the batch still spans 40..=43");
            assert_eq!(header.base_offset, 40);
            assert_eq!(header.partition_leader_epoch, 3);
            assert_eq!(header.base_timestamp, 1_000);
            assert_eq!(header.total_len(), cleaned.len());
            assert_eq!(crc32c::crc32c(&cleaned[CRC_START..]), header.crc, "{c:?}");
            assert_eq!(
                keys_of(&cleaned),
                [
                    (41, Some(b"b".to_vec()), true),
                    (43, Some(b"a".to_vec()), false)
                ]
            );
            let stamps = crate::records::record_stamps(&cleaned, 1 << 20).unwrap();
            assert_eq!(stamps[1].timestamp, 1_030, "record times are kept");

            let Cleaned::Rebuilt(empty) = clean_batch(&batch, 1 << 20, |_| false).unwrap() else {
                panic!("{c:?}: records were dropped");
            };
            let header = BatchHeader::parse(&empty).unwrap();
            assert_eq!((header.record_count, header.last_offset_delta), (0, 3));
            assert!(keys_of(&empty).is_empty());
            // Only the record count differs from what a producer may send.
            assert!(validate_produce_records(
                &cleaned,
                1 << 20,
                &crate::records::TimestampBounds::ANY
            )
            .is_err_and(|e| matches!(e, crate::batch::BatchError::InconsistentOffsets { .. })));
        }
    }

    #[test]
    fn garbage_records_are_an_error_not_a_panic() {
        let mut batch = producer_batch_with_keys(Compression::None, &[(Some("k"), Some("v"))], 0);
        assert!(for_each_keyed_record(&batch, 1 << 20, |_| {}).is_ok());
        let last = batch.len() - 4;
        batch[HEADER_LEN] = 0x7f; // a record length past the end
        batch[last] = 0xff;
        assert!(clean_batch(&batch, 1 << 20, |_| true).is_err());
        assert!(for_each_keyed_record(&batch[..HEADER_LEN - 1], 1 << 20, |_| {}).is_err());
    }
}
