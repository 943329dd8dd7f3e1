//! Bad input gets Kafka's error or a closed connection; the node keeps serving everyone else
//! and no stored data changes. Each test starts a node holding topic "guarded" (one
//! partition, three records), whose high watermark no bad input may move, and ends by
//! checking that an old connection and a new one are still served.

mod common;

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use bytes::Bytes;
use common::{
    create_topic, encode_batch, fetch, fetch_at, kafka_string, metadata_at, produce, produce_to,
    raw_request, record_batch, topic_entry, Client, Node,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;

const OFFSET_OUT_OF_RANGE: i16 = 1;
const CORRUPT_MESSAGE: i16 = 2;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const MESSAGE_TOO_LARGE: i16 = 10;
const INVALID_TOPIC_EXCEPTION: i16 = 17;
const INVALID_REQUIRED_ACKS: i16 = 21;
const INVALID_RECORD: i16 = 87;
const UNKNOWN_MEMBER_ID: i16 = 25;
const UNSUPPORTED_VERSION: i16 = 35;
const UNKNOWN_PRODUCER_ID: i16 = 59;
const UNSUPPORTED_COMPRESSION_TYPE: i16 = 76;

const GUARDED: &str = "guarded";

/// How long a connection the broker should close may stay open.
const CLOSE_WITHIN: Duration = Duration::from_secs(5);

/// A node as the end-to-end suite runs it (auto-creation on, three partitions by default)
/// with "guarded" holding one batch of three records.
fn start() -> Node {
    let node = Node::start_with(&["--default-partitions", "3"]);
    let mut c = node.try_connect().unwrap();
    assert_eq!(
        create_topic(&mut c, GUARDED, 1, &[]),
        0,
        "creating {GUARDED}"
    );
    let three = record_batch(&[("k", "v"); 3], Compression::None, None);
    assert_eq!(produce(&mut c, GUARDED, 0, three, -1), (0, 0));
    node
}

/// One record "k" = "v", uncompressed.
fn one_record() -> Bytes {
    record_batch(&[("k", "v")], Compression::None, None)
}

/// The node still runs, answers `bystander` (an old connection) and a new one, and
/// "guarded" is unchanged.
fn assert_still_serving(node: &mut Node, bystander: &mut Client, after: &str) {
    assert!(node.is_running(), "after {after}: the node exited");
    let r = metadata_at(bystander, 1, GUARDED);
    let guarded = topic_entry(&r, GUARDED);
    assert_eq!(
        (
            guarded.error_code,
            guarded.partitions.len(),
            r.controller_id.0
        ),
        (0, 1, 1),
        "after {after}: Metadata of {GUARDED} (error, partitions, controller)"
    );
    let (error, high_watermark, _) = fetch(&mut node.try_connect().unwrap(), GUARDED, 0, 0);
    assert_eq!(error, 0, "after {after}: Fetch of {GUARDED}");
    assert_eq!(
        high_watermark, 3,
        "after {after}: {GUARDED}'s high watermark"
    );
}

/// `n` bytes, different on every run.
fn random_bytes(n: usize) -> Vec<u8> {
    let state = RandomState::new();
    (0..n).map(|i| state.hash_one(i) as u8).collect()
}

/// Input the broker cannot read, named: each must close its connection.
fn closing_inputs() -> Vec<(String, Vec<u8>)> {
    let frame = |key: ApiKey, version: i16, body: &[u8]| raw_request(key as i16, version, 1, body);
    let over_maximum = [&(200 * 1024 * 1024i32).to_be_bytes()[..], &[0; 64]].concat();
    let garbage = [&42i32.to_be_bytes()[..], &random_bytes(42)].concat();
    vec![
        ("frame over the maximum request size".into(), over_maximum),
        ("negative frame size".into(), (-7i32).to_be_bytes().to_vec()),
        (format!("garbage bytes {garbage:02x?}"), garbage),
        ("unknown api key".into(), raw_request(4242, 0, 1, &[])),
        (
            "consumer group heartbeat (not advertised)".into(),
            frame(ApiKey::ConsumerGroupHeartbeat, 0, &[]),
        ),
        ("metadata v99".into(), frame(ApiKey::Metadata, 99, &[])),
        (
            "produce v2 (advertised, not served)".into(),
            frame(ApiKey::Produce, 2, &[]),
        ),
        (
            "metadata with a two-billion-entry topic array".into(),
            frame(ApiKey::Metadata, 1, &0x7FFF_FFFFi32.to_be_bytes()),
        ),
        (
            "produce with a truncated body".into(),
            frame(ApiKey::Produce, 3, b"\xff\xff\x00"),
        ),
    ]
}

#[test]
fn unreadable_requests_close_only_their_connection() {
    let mut node = start();
    for (what, bytes) in closing_inputs() {
        let mut bystander = node.try_connect().unwrap();
        let mut bad = node.try_connect().unwrap();
        bad.send_raw(&bytes);
        assert!(
            bad.is_closed_by_peer(CLOSE_WITHIN),
            "{what}: connection left open"
        );
        assert_still_serving(&mut node, &mut bystander, &what);
    }
}

#[test]
fn too_new_api_versions_gets_our_ranges_then_works_on_the_same_connection() {
    let node = Node::start();
    let mut c = node.try_connect().unwrap();
    // ApiVersions v99 cannot be encoded; what the client knows of it is its header.
    c.send_raw(&raw_request(ApiKey::ApiVersions as i16, 99, 7, &[]));
    let (correlation, answer) = c.receive_with_correlation(ApiKey::ApiVersions, 0);
    assert_eq!(correlation, 7, "the answer's correlation id");
    let ResponseKind::ApiVersions(r) = answer else {
        unreachable!()
    };
    let range = |r: &ApiVersionsResponse, key: ApiKey| {
        r.api_keys
            .iter()
            .find(|k| k.api_key == key as i16)
            .map(|k| (k.min_version, k.max_version))
    };
    assert_eq!(r.error_code, UNSUPPORTED_VERSION);
    assert_eq!(range(&r, ApiKey::ApiVersions), Some((0, 4)));
    assert_eq!(
        range(&r, ApiKey::Produce),
        Some((0, 13)),
        "Produce is advertised from v0 for librdkafka"
    );
    assert_eq!(range(&r, ApiKey::Fetch), Some((4, 18)));
    let request = RequestKind::ApiVersions(ApiVersionsRequest::default());
    let ResponseKind::ApiVersions(r) = c.call(ApiKey::ApiVersions, 0, request) else {
        unreachable!()
    };
    assert_eq!(r.error_code, 0);
    assert!(range(&r, ApiKey::Metadata).is_some(), "Metadata advertised");
}

#[test]
fn a_bad_crc_is_a_corrupt_message() {
    let mut node = start();
    let mut bystander = node.try_connect().unwrap();
    let mut tampered = record_batch(&[("k", "tampered")], Compression::None, None).to_vec();
    let near_end = tampered.len() - 3;
    tampered[near_end] ^= 0x01;
    let (error, _) = produce(&mut bystander, GUARDED, 0, tampered.into(), -1);
    assert_eq!(error, CORRUPT_MESSAGE);
    assert_still_serving(&mut node, &mut bystander, "a bad CRC");
}

/// `batch` with its record section replaced by `section` under codec bits `codec`, and
/// its length and CRC made to match: a batch only its records can give away.
fn with_section(batch: &[u8], codec: i16, section: &[u8]) -> Bytes {
    const HEADER_LEN: usize = 61;
    let mut out = batch[..HEADER_LEN].to_vec();
    out[21..23].copy_from_slice(&codec.to_be_bytes());
    out.extend_from_slice(section);
    let batch_length = (out.len() - 12) as i32;
    out[8..12].copy_from_slice(&batch_length.to_be_bytes());
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out.into()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn poisoned_compressed_batches_are_refused_and_bombs_are_too_large() {
    let mut node = Node::start_with(&["--max-inflated-batch-bytes", "1048576"]);
    let mut bystander = node.try_connect().unwrap();
    assert_eq!(create_topic(&mut bystander, GUARDED, 1, &[]), 0);
    let three = record_batch(&[("k", "v"); 3], Compression::None, None);
    assert_eq!(produce(&mut bystander, GUARDED, 0, three, -1), (0, 0));

    let plain = record_batch(&[("key", "value")], Compression::None, None);
    let records = &plain[61..];
    // The key's length is the record's fifth byte (length, attributes, two deltas).
    let mut long_key = records.to_vec();
    long_key[4] = 0x90; // zig-zag 5,000 in two bytes
    long_key.insert(5, 0x4e);
    long_key[0] += 2; // the record's length, one byte below 64
    let poisoned = [
        (
            "zstd flagged, plain records inside",
            with_section(&plain, 4, records),
            CORRUPT_MESSAGE,
        ),
        (
            "gzip flagged, garbage inside",
            with_section(&plain, 1, b"\x1f\x8bgarbage"),
            CORRUPT_MESSAGE,
        ),
        (
            "lz4 flagged, nothing inside",
            with_section(&plain, 3, b""),
            CORRUPT_MESSAGE,
        ),
        (
            "gzip, a key longer than its record",
            with_section(&plain, 1, &gzip(&long_key)),
            INVALID_RECORD,
        ),
        (
            "plain, a key longer than its record",
            with_section(&plain, 0, &long_key),
            INVALID_RECORD,
        ),
    ];
    for (what, batch, code) in poisoned {
        let (error, _) = produce(&mut bystander, GUARDED, 0, batch, -1);
        assert_eq!(error, code, "{what}");
    }
    let bomb = record_batch(&[("k", &"x".repeat(2 << 20))], Compression::Gzip, None);
    assert!(bomb.len() < 64 << 10, "the bomb is {} bytes", bomb.len());
    assert_eq!(
        produce(&mut bystander, GUARDED, 0, bomb, -1).0,
        MESSAGE_TOO_LARGE
    );
    let refused = "strand_requests_refused_total{limit=\"max_inflated_batch_bytes\"}";
    assert!(node.metric(refused) >= 1);
    assert_still_serving(&mut node, &mut bystander, "poisoned batches");
    let fits = record_batch(&[("k", &"x".repeat(512 << 10))], Compression::Gzip, None);
    assert_eq!(produce(&mut bystander, GUARDED, 0, fits, -1), (0, 3));
}

#[test]
fn producer_ids_the_cluster_never_handed_out_are_refused() {
    let mut node = start();
    let mut c = node.try_connect().unwrap();
    let (error, allocated, _) = common::init_producer_id(&mut c);
    assert_eq!(error, 0);
    // Ids come in blocks of a thousand: one far beyond this node's first block.
    for invented in [allocated + 1_000_000, i64::MAX] {
        let batch = record_batch(&[("k", "v")], Compression::None, Some((invented, 0, 0)));
        let (error, _) = produce(&mut c, GUARDED, 0, batch, -1);
        assert_eq!(error, UNKNOWN_PRODUCER_ID, "producer id {invented}");
    }
    assert_still_serving(&mut node, &mut c, "invented producer ids");
    let refused = "strand_requests_refused_total{limit=\"producer_id\"}";
    assert_eq!(node.metric(refused), 2);
    let batch = record_batch(&[("k", "v")], Compression::None, Some((allocated, 0, 0)));
    assert_eq!(produce(&mut c, GUARDED, 0, batch, -1), (0, 3));
}

/// Produces `records` to partition 0 of `topic` at Produce `version`.
fn produce_at(
    c: &mut Client,
    version: i16,
    topic: &str,
    records: Bytes,
) -> produce_response::PartitionProduceResponse {
    let ResponseKind::Produce(r) =
        c.call(ApiKey::Produce, version, produce_to(topic, 0, records, -1))
    else {
        unreachable!()
    };
    r.responses[0].partition_responses[0].clone()
}

#[test]
fn zstd_needs_produce_v7_and_fetch_v10() {
    let mut node = start();
    let mut c = node.try_connect().unwrap();
    assert_eq!(create_topic(&mut c, "squeezed", 1, &[]), 0);
    let plain = one_record();
    let zstd = record_batch(&[("k", "squeezed")], Compression::Zstd, None);
    let refused = produce_at(&mut c, 6, "squeezed", zstd.clone());
    assert_eq!(refused.error_code, UNSUPPORTED_COMPRESSION_TYPE);
    assert_eq!(
        produce_at(&mut c, 6, "squeezed", plain.clone()).base_offset,
        0
    );
    assert_eq!(
        produce_at(&mut c, 7, "squeezed", zstd.clone()).base_offset,
        1
    );
    assert_eq!(
        produce_at(&mut c, 7, "squeezed", plain.clone()).base_offset,
        2
    );
    // An old consumer gets what it can read, up to the zstd batch, then an error at it.
    let (error, _, records) = fetch_at(&mut c, 9, "squeezed", 0, 0);
    assert_eq!((error, records.len()), (0, plain.len()));
    let (error, _, records) = fetch_at(&mut c, 9, "squeezed", 0, 1);
    assert_eq!((error, records.len()), (UNSUPPORTED_COMPRESSION_TYPE, 0));
    let (error, _, records) = fetch_at(&mut c, 9, "squeezed", 0, 2);
    assert_eq!((error, records.len()), (0, plain.len()));
    let (error, _, records) = fetch_at(&mut c, 10, "squeezed", 0, 1);
    assert_eq!((error, records.len()), (0, zstd.len() + plain.len()));
    assert_still_serving(&mut node, &mut c, "zstd at old versions");
}

#[test]
fn produce_v8_names_the_record_at_fault() {
    let mut node = start();
    let mut c = node.try_connect().unwrap();
    let compact = [("cleanup.policy", "compact")];
    assert_eq!(create_topic(&mut c, "latest", 1, &compact), 0);
    let value = |v: &str| Bytes::from(v.to_string());
    let records = [
        (Some(value("a")), value("1")),
        (None, value("2")),
        (Some(value("c")), value("3")),
    ];
    let batch = encode_batch(records, Compression::Lz4, None);
    let answer = produce_at(&mut c, 8, "latest", batch.clone());
    assert_eq!(answer.error_code, INVALID_RECORD);
    let [fault] = &answer.record_errors[..] else {
        panic!("record errors {:?}", answer.record_errors)
    };
    assert_eq!(fault.batch_index, 1);
    let message = fault.batch_index_error_message.as_deref().unwrap_or("");
    assert!(message.contains("without a key"), "{message}");
    // Before v8 the partition's message is all there is.
    let answer = produce_at(&mut c, 7, "latest", batch);
    assert_eq!(answer.error_code, INVALID_RECORD);
    assert!(answer.record_errors.is_empty());
    let (_, high_watermark, _) = fetch(&mut c, "latest", 0, 0);
    assert_eq!(high_watermark, 0);
    assert_still_serving(&mut node, &mut c, "a keyless record in a compacted topic");
}

#[test]
fn old_message_formats_and_truncated_batches_are_refused() {
    let mut node = start();
    let mut bystander = node.try_connect().unwrap();
    let batch = one_record();
    let mut v1 = batch.to_vec();
    v1[16] = 1; // the magic byte
    let (error, _) = produce(&mut bystander, GUARDED, 0, v1.into(), -1);
    assert_ne!(error, 0, "a v1 message set was accepted");
    let truncated = batch.slice(..batch.len() - 5);
    let (error, _) = produce(&mut bystander, GUARDED, 0, truncated, -1);
    assert_eq!(error, CORRUPT_MESSAGE, "a truncated batch");
    assert_still_serving(&mut node, &mut bystander, "old and truncated batches");
}

#[test]
fn a_batch_over_max_message_bytes_is_too_large() {
    let mut node = start();
    let mut bystander = node.try_connect().unwrap();
    let limit = [("max.message.bytes", "1000")];
    assert_eq!(create_topic(&mut bystander, "small", 1, &limit), 0);
    let big = record_batch(&[("k", &"x".repeat(2000))], Compression::None, None);
    assert_eq!(
        produce(&mut bystander, "small", 0, big, -1).0,
        MESSAGE_TOO_LARGE
    );
    let fits = record_batch(&[("k", &"x".repeat(100))], Compression::None, None);
    assert_eq!(produce(&mut bystander, "small", 0, fits, -1), (0, 0));
    assert_still_serving(&mut node, &mut bystander, "a batch too large");
}

#[test]
fn the_broker_wide_message_limit_applies_without_a_topic_config() {
    let node = Node::start_with(&["--max-message-bytes", "4096"]);
    let mut c = node.try_connect().unwrap();
    let big = record_batch(&[("k", &"y".repeat(8000))], Compression::None, None);
    assert_eq!(produce(&mut c, "limited", 0, big, -1).0, MESSAGE_TOO_LARGE);
    let fits = record_batch(&[("k", &"y".repeat(100))], Compression::None, None);
    assert_eq!(produce(&mut c, "limited", 0, fits, -1).0, 0);
}

#[test]
fn invalid_topic_names_are_refused() {
    let mut node = start();
    let mut bystander = node.try_connect().unwrap();
    let (error, _) = produce(&mut bystander, "no spaces allowed", 0, one_record(), -1);
    assert_eq!(
        error, INVALID_TOPIC_EXCEPTION,
        "Produce to 'no spaces allowed'"
    );
    assert_eq!(
        create_topic(&mut bystander, "bad/name", 1, &[]),
        INVALID_TOPIC_EXCEPTION,
        "CreateTopics of 'bad/name'"
    );
    let r = metadata_at(&mut bystander, 1, "bad*name");
    assert_eq!(
        topic_entry(&r, "bad*name").error_code,
        INVALID_TOPIC_EXCEPTION,
        "Metadata of 'bad*name'"
    );
    assert_still_serving(&mut node, &mut bystander, "invalid names");
}

#[test]
fn unknown_partitions_and_acks_are_refused() {
    let mut node = start();
    let mut bystander = node.try_connect().unwrap();
    let (error, _) = produce(&mut bystander, GUARDED, 7, one_record(), -1);
    assert_eq!(error, UNKNOWN_TOPIC_OR_PARTITION, "Produce to partition 7");
    let (error, _) = produce(&mut bystander, GUARDED, 0, one_record(), 5);
    assert_eq!(error, INVALID_REQUIRED_ACKS, "Produce with acks=5");
    let (error, _, _) = fetch(&mut bystander, GUARDED, 0, 1_000);
    assert_eq!(error, OFFSET_OUT_OF_RANGE, "Fetch from offset 1000");
    assert_still_serving(&mut node, &mut bystander, "unknown partitions and acks");
}

#[test]
fn group_requests_from_strangers_get_kafka_errors() {
    let mut node = start();
    let mut bystander = node.try_connect().unwrap();
    let find = FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("some-group"));
    let ResponseKind::FindCoordinator(r) = bystander.call(
        ApiKey::FindCoordinator,
        0,
        RequestKind::FindCoordinator(find),
    ) else {
        unreachable!()
    };
    assert_eq!(r.error_code, 0, "this node coordinates");
    let heartbeat = HeartbeatRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("g")))
        .with_generation_id(1)
        .with_member_id(StrBytes::from_static_str("m"));
    let ResponseKind::Heartbeat(r) =
        bystander.call(ApiKey::Heartbeat, 0, RequestKind::Heartbeat(heartbeat))
    else {
        unreachable!()
    };
    assert_eq!(r.error_code, UNKNOWN_MEMBER_ID);
    // A JoinGroup cut short is unreadable: the connection closes, nobody else notices.
    let mut truncated = node.try_connect().unwrap();
    let body = [kafka_string("g"), vec![0]].concat();
    truncated.send_raw(&raw_request(ApiKey::JoinGroup as i16, 0, 1, &body));
    assert!(
        truncated.is_closed_by_peer(CLOSE_WITHIN),
        "a truncated JoinGroup left its connection open"
    );
    assert_still_serving(&mut node, &mut bystander, "group requests");
}

#[test]
fn a_failed_acks_zero_produce_closes_the_connection() {
    let mut node = start();
    let mut conn = node.try_connect().unwrap();
    let mut broken = one_record().to_vec();
    let last = broken.len() - 1;
    broken[last] ^= 0x01;
    conn.send(
        ApiKey::Produce,
        3,
        &produce_to(GUARDED, 0, broken.into(), 0),
    );
    assert!(
        conn.is_closed_by_peer(CLOSE_WITHIN),
        "a refused acks=0 produce left its connection open"
    );
    let mut good = node.try_connect().unwrap();
    good.send(
        ApiKey::Produce,
        3,
        &produce_to("acks0-ok", 0, one_record(), 0),
    );
    assert!(
        !good.is_closed_by_peer(Duration::from_secs(1)),
        "an accepted acks=0 produce closed its connection"
    );
    let mut fresh = node.try_connect().unwrap();
    assert_still_serving(&mut node, &mut fresh, "an acks=0 produce");
}
