//! Property-based fuzzing of what a client controls: request frames and record batches.
//! Valid seeds are mutated (bytes flipped, cut short, spliced), and random frames are tried
//! under every API key and version the codec knows. The properties: nothing panics, nothing
//! allocates without bound, and what is accepted is consistent.
//!
//! `make test` runs the default number of cases; `make fuzz` runs many more
//! (`PROPTEST_CASES`).

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use proptest::prelude::*;

use crate::api_versions::ApiRange;
use crate::batch::{self, validate_produce_records};
use crate::codec::{decode_request, encode_request};
use crate::records;

/// Most bytes a decompression here may produce: far above what the seeds hold.
const LIMIT: usize = 1 << 20;

/// A producer's batch of `n` records of varied sizes.
fn producer_batch(compression: Compression, n: usize) -> Vec<u8> {
    let values: Vec<String> = (0..n)
        .map(|i| format!("value {i} ").repeat(i % 7 + 1))
        .collect();
    let values: Vec<&str> = values.iter().map(String::as_str).collect();
    crate::batch::tests::producer_batch(compression, &values, 1_700_000_000_000)
}

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

/// A request frame without its size prefix, as `decode_request` receives it.
fn frame(key: ApiKey, version: i16, body: RequestKind) -> Vec<u8> {
    encode_request(7, "fuzz", key, version, &body).expect("encode a seed")[4..].to_vec()
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn request_seeds() -> Vec<Vec<u8>> {
    let produce = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(1000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(name("t"))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_records(Some(Bytes::from(producer_batch(Compression::None, 3)))),
            ])]);
    let fetch = FetchRequest::default()
        .with_max_wait_ms(100)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(name("t"))
            .with_partitions(vec![
                fetch_request::FetchPartition::default().with_partition_max_bytes(1 << 20)
            ])]);
    let metadata = MetadataRequest::default().with_topics(Some(vec![
        metadata_request::MetadataRequestTopic::default().with_name(Some(name("t"))),
    ]));
    let create = CreateTopicsRequest::default().with_topics(vec![
        create_topics_request::CreatableTopic::default()
            .with_name(name("t"))
            .with_num_partitions(3)
            .with_replication_factor(1),
    ]);
    let join = JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("g")))
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
        )
        .with_name(StrBytes::from_static_str("range"))
        .with_metadata(Bytes::from_static(b"\0\0\0\0\0\x01\0\x01t"))]);
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("g")))
        .with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(name("t"))
                .with_partitions(vec![
                    offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_committed_offset(5),
                ]),
        ]);
    vec![
        frame(ApiKey::Produce, 9, RequestKind::Produce(produce.clone())),
        // Topics named by id from here on (KIP-516).
        frame(ApiKey::Produce, 13, RequestKind::Produce(produce)),
        frame(ApiKey::Fetch, 12, RequestKind::Fetch(fetch.clone())),
        frame(ApiKey::Fetch, 18, RequestKind::Fetch(fetch)),
        frame(ApiKey::Metadata, 12, RequestKind::Metadata(metadata)),
        frame(ApiKey::CreateTopics, 7, RequestKind::CreateTopics(create)),
        frame(ApiKey::JoinGroup, 9, RequestKind::JoinGroup(join)),
        frame(ApiKey::OffsetCommit, 8, RequestKind::OffsetCommit(commit)),
        frame(
            ApiKey::ApiVersions,
            3,
            RequestKind::ApiVersions(ApiVersionsRequest::default()),
        ),
    ]
}

/// A mutation of a seed: flip some bytes, then keep a prefix, then append some bytes.
fn mutate(seed: &[u8], flips: &[(usize, u8)], keep: usize, tail: &[u8]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for &(at, xor) in flips {
        if !out.is_empty() {
            let at = at % out.len();
            out[at] ^= xor;
        }
    }
    out.truncate(keep % (out.len() + 1));
    out.extend_from_slice(tail);
    out
}

/// Refreshes a batch's CRC after a mutation, so validation looks past the checksum.
fn fix_crc(batch: &mut [u8]) {
    if batch.len() >= 21 {
        let crc = crc32c::crc32c(&batch[21..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
    }
}

/// A server's table that implements every API the codec knows, minus its oldest and newest
/// version, so frames meet the version check as well as the decoders.
fn narrowed_table() -> Vec<ApiRange> {
    (0..100)
        .filter_map(|k| ApiKey::try_from(k).ok())
        .map(|key| {
            let v = key.valid_versions();
            ApiRange::new(key, v.min + 1, (v.max - 1).max(v.min + 1))
        })
        .collect()
}

/// Whatever `decode_request` makes of a frame, with or without a server's version table, it
/// answers without panicking, and never decodes a version outside the table.
fn decodes_without_panic(frame: Vec<u8>) {
    let frame = Bytes::from(frame);
    let table = narrowed_table();
    for apis in [&[][..], &table[..]] {
        let outcome = std::panic::catch_unwind(|| decode_request(frame.clone(), apis));
        let Ok(decoded) = outcome else {
            panic!("decode_request panicked");
        };
        if let Ok(request) = decoded {
            let range = crate::api_versions::find(apis, request.api_key);
            assert!(range.is_none_or(|r| r.contains(request.version)));
        }
    }
}

/// A batch list either is refused or is what a consumer can read back: every record, at
/// the offsets its header claims.
fn validates_consistently(records: &[u8]) {
    let Ok(validated) = validate_produce_records(records, LIMIT, &records::TimestampBounds::ANY)
    else {
        return;
    };
    let batches: Vec<_> = batch::split_batches(records).collect();
    assert_eq!(batches.len(), validated.headers.len());
    for ((header, bytes), checked) in batches.into_iter().zip(&validated.headers) {
        assert_eq!(&header, checked);
        assert_eq!(bytes.len(), header.total_len());
        let stamps = records::record_stamps(bytes, LIMIT).expect("an accepted batch is readable");
        let offsets: Vec<i64> = stamps.iter().map(|s| s.offset).collect();
        let claimed: Vec<i64> = (header.base_offset..=header.last_offset()).collect();
        assert_eq!(offsets, claimed);
    }
}

proptest! {
    #[test]
    fn mutated_requests_never_panic_the_decoder(
        seed in 0usize..7,
        flips in prop::collection::vec((any::<usize>(), 1u8..), 0..8),
        keep in any::<usize>(),
        tail in prop::collection::vec(any::<u8>(), 0..32),
    ) {
        let seeds = request_seeds();
        decodes_without_panic(mutate(&seeds[seed % seeds.len()], &flips, keep, &tail));
    }

    #[test]
    fn random_bodies_under_every_key_and_version_never_panic(
        key in 0i16..80,
        version in -1i16..20,
        body in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut frame = Vec::with_capacity(body.len() + 10);
        frame.extend_from_slice(&key.to_be_bytes());
        frame.extend_from_slice(&version.to_be_bytes());
        frame.extend_from_slice(&1i32.to_be_bytes());
        frame.extend_from_slice(&body);
        decodes_without_panic(frame);
    }

    #[test]
    fn mutated_batches_are_refused_or_readable(
        codec in 0usize..5,
        count in 1usize..12,
        flips in prop::collection::vec((any::<usize>(), 1u8..), 0..6),
        keep in any::<usize>(),
        tail in prop::collection::vec(any::<u8>(), 0..16),
        refresh_crc in any::<bool>(),
    ) {
        let seed = producer_batch(CODECS[codec], count);
        let mut mutated = mutate(&seed, &flips, keep, &tail);
        if refresh_crc {
            fix_crc(&mut mutated);
        }
        validates_consistently(&mutated);
    }

    /// Mutations of the records themselves, behind a compression that still decompresses:
    /// the CRC and the codec alone cannot refuse these.
    #[test]
    fn mutated_records_behind_compression_are_refused_or_readable(
        count in 1usize..8,
        flips in prop::collection::vec((any::<usize>(), 1u8..), 0..4),
        keep in any::<usize>(),
        tail in prop::collection::vec(any::<u8>(), 0..8),
        zstd in any::<bool>(),
    ) {
        let seed = producer_batch(Compression::None, count);
        let section = mutate(&seed[batch::HEADER_LEN..], &flips, keep, &tail);
        let (codec, payload) = if zstd {
            (4i16, zstd::encode_all(&section[..], 1).unwrap())
        } else {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut encoder, &section).unwrap();
            (1, encoder.finish().unwrap())
        };
        let mut wrapped = seed[..batch::HEADER_LEN].to_vec();
        wrapped[21..23].copy_from_slice(&codec.to_be_bytes());
        wrapped.extend_from_slice(&payload);
        let batch_length = (wrapped.len() - batch::LOG_OVERHEAD) as i32;
        wrapped[8..12].copy_from_slice(&batch_length.to_be_bytes());
        fix_crc(&mut wrapped);
        validates_consistently(&wrapped);
    }
}

#[test]
fn every_seed_batch_is_valid() {
    for codec in CODECS {
        let seed = producer_batch(codec, 5);
        let validated = validate_produce_records(&seed, LIMIT, &records::TimestampBounds::ANY)
            .expect("a producer's batch is valid");
        let records: i32 = validated.headers.iter().map(|h| h.record_count).sum();
        assert_eq!(records, 5, "{codec:?}");
        let stamps: usize = batch::split_batches(&seed)
            .map(|(_, b)| records::record_stamps(b, LIMIT).expect("readable").len())
            .sum();
        assert_eq!(stamps, 5, "{codec:?}");
    }
}

#[test]
fn every_seed_request_decodes() {
    for seed in request_seeds() {
        decode_request(Bytes::from(seed), &[]).expect("a client's request decodes");
    }
}
