//! Fetches of megabytes: their record sets are read as the response is written, a chunk
//! at a time; what arrives must be every batch, whole, in order, with its offset.

mod common;

use bytes::Bytes;
use common::{batch, metadata, name, produce_request, Node};
use kafka_protocol::messages::*;
use kafka_protocol::records::RecordBatchDecoder;

/// Every record in `records` as (offset, value).
fn decode(records: &Bytes) -> Vec<(i64, String)> {
    let mut buf = records.clone();
    let mut out = Vec::new();
    for set in RecordBatchDecoder::decode_all(&mut buf).expect("whole record batches") {
        for r in set.records {
            let value = r.value.map(|v| String::from_utf8_lossy(&v).into_owned());
            out.push((r.offset, value.unwrap_or_default()));
        }
    }
    out
}

#[test]
fn a_fetch_of_megabytes_returns_every_batch_whole_and_in_order() {
    let node = Node::start();
    let mut c = node.try_connect().unwrap();
    assert_eq!(metadata(&mut c, "large").topics[0].error_code, 0);
    // 40 batches of one 100 kB record each: 4 MB, four chunks of a late read and more.
    let filler = "x".repeat(100_000);
    let value = |i: i64| format!("{i}:{filler}");
    for i in 0..40 {
        let ResponseKind::Produce(r) = c.call(
            ApiKey::Produce,
            9,
            produce_request("large", batch(&value(i))),
        ) else {
            unreachable!()
        };
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    }
    let fetch = |offset: i64, partition_max_bytes: i32| {
        RequestKind::Fetch(
            FetchRequest::default()
                .with_max_wait_ms(0)
                .with_max_bytes(50 << 20)
                .with_session_epoch(-1)
                .with_topics(vec![fetch_request::FetchTopic::default()
                    .with_topic(name("large"))
                    .with_partitions(vec![fetch_request::FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(partition_max_bytes)])]),
        )
    };
    for (from, max_bytes, expected) in [
        (0, 10 << 20, 0..40),
        (17, 10 << 20, 17..40),
        // Limited to about 1 MB: whole batches up to it.
        (5, 1 << 20, 5..15),
    ] {
        for version in [4, 12] {
            let ResponseKind::Fetch(r) = c.call(ApiKey::Fetch, version, fetch(from, max_bytes))
            else {
                unreachable!()
            };
            let p = &r.responses[0].partitions[0];
            assert_eq!((p.error_code, p.high_watermark), (0, 40));
            let read = decode(p.records.as_ref().unwrap());
            let wanted: Vec<(i64, String)> = expected.clone().map(|i| (i, value(i))).collect();
            assert_eq!(
                read.iter().map(|r| r.0).collect::<Vec<_>>(),
                wanted.iter().map(|r| r.0).collect::<Vec<_>>(),
                "offsets from {from} (v{version})"
            );
            assert!(read == wanted, "values from {from} (v{version})");
        }
    }
    // The connection is still in step: a small request after the big answers works.
    assert_eq!(metadata(&mut c, "large").topics[0].error_code, 0);
}

#[test]
fn a_fetch_of_many_small_record_sets_returns_each_whole() {
    // Eight partitions (topics of one) of 90 kB each: each record set is small, the
    // response is not, so its later record sets are read as it is written.
    let node = Node::start();
    let mut c = node.try_connect().unwrap();
    let topics: Vec<String> = (0..8).map(|t| format!("small-{t}")).collect();
    let value =
        |t: usize, i: i64| format!("{t}:{i}:{}", "y".repeat(if i == 2 { 500 } else { 45_000 }));
    for (t, topic) in topics.iter().enumerate() {
        assert_eq!(metadata(&mut c, topic).topics[0].error_code, 0);
        // Two batches a piece is shared with the storage read, one small enough to copy.
        for i in 0..3 {
            let ResponseKind::Produce(r) = c.call(
                ApiKey::Produce,
                9,
                produce_request(topic, batch(&value(t, i))),
            ) else {
                unreachable!()
            };
            assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
        }
    }
    let request = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(50 << 20)
        .with_session_epoch(-1)
        .with_topics(
            topics
                .iter()
                .map(|topic| {
                    fetch_request::FetchTopic::default()
                        .with_topic(name(topic))
                        .with_partitions(vec![fetch_request::FetchPartition::default()
                            .with_partition(0)
                            .with_fetch_offset(0)
                            .with_partition_max_bytes(1 << 20)])
                })
                .collect(),
        );
    let ResponseKind::Fetch(r) = c.call(ApiKey::Fetch, 12, RequestKind::Fetch(request)) else {
        unreachable!()
    };
    assert_eq!(r.responses.len(), topics.len());
    for (t, topic) in r.responses.iter().enumerate() {
        let p = &topic.partitions[0];
        assert_eq!(
            (p.error_code, p.high_watermark),
            (0, 3),
            "{}",
            topic.topic.0
        );
        let read = decode(p.records.as_ref().unwrap());
        let wanted: Vec<(i64, String)> = (0..3).map(|i| (i, value(t, i))).collect();
        assert!(read == wanted, "records of {}", topic.topic.0);
    }
    assert_eq!(metadata(&mut c, "small-0").topics[0].error_code, 0);
}
