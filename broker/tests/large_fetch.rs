//! Fetches of megabytes: their record sets are read as the response is written, a chunk
//! at a time; what arrives must be every batch, whole, in order, with its offset.

mod common;

use bytes::Bytes;
use common::{batch, metadata, name, produce_request, Client, Node};
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

/// Produces one batch of one record holding `value`, and checks it was accepted.
fn produce_one(c: &mut Client, topic: &str, value: &str) {
    let ResponseKind::Produce(r) = c.call(ApiKey::Produce, 9, produce_request(topic, batch(value)))
    else {
        unreachable!()
    };
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
}

/// A fetch of partition 0 of `topic` from `offset`, with room for 50 MiB (librdkafka's
/// default fetch.max.bytes) and `partition_max_bytes` of it for the partition.
fn fetch_up_to_50_mib(topic: &str, offset: i64, partition_max_bytes: i32) -> RequestKind {
    RequestKind::Fetch(
        FetchRequest::default()
            .with_max_wait_ms(0)
            .with_max_bytes(50 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![fetch_request::FetchTopic::default()
                .with_topic(name(topic))
                .with_partitions(vec![fetch_request::FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(partition_max_bytes)])]),
    )
}

#[test]
fn a_fetch_of_megabytes_returns_every_batch_whole_and_in_order() {
    let node = Node::start();
    let mut c = node.try_connect().unwrap();
    assert_eq!(metadata(&mut c, "large").topics[0].error_code, 0);
    // 40 batches of one 100 kB record each: 4 MB, two chunks of a late read.
    let filler = "x".repeat(100_000);
    let value = |i: i64| format!("{i}:{filler}");
    for i in 0..40 {
        produce_one(&mut c, "large", &value(i));
    }
    for (from, max_bytes, expected) in [
        (0, 10 << 20, 0..40),
        (17, 10 << 20, 17..40),
        // Limited to about 1 MB: whole batches up to it.
        (5, 1 << 20, 5..15),
    ] {
        for version in [4, 12] {
            let request = fetch_up_to_50_mib("large", from, max_bytes);
            let ResponseKind::Fetch(r) = c.call(ApiKey::Fetch, version, request) else {
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
            produce_one(&mut c, topic, &value(t, i));
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

/// A consumer catching up the way librdkafka does: every partition in each request, each
/// request starting one partition further down the list, and room in a response for only
/// some of them. The connection reads each next response ahead while the client "parses";
/// what it serves must still be exactly the log, including where the client does something
/// other than what was read ahead for.
#[test]
fn a_consumer_catching_up_gets_the_log_whether_or_not_it_was_read_ahead() {
    let node = Node::start();
    let mut c = node.try_connect().unwrap();
    let topics: Vec<String> = (0..4).map(|t| format!("ahead-{t}")).collect();
    let value = |t: usize, i: i64| format!("{t}:{i}:{}", "z".repeat(60_000));
    const BATCHES: i64 = 40;
    for (t, topic) in topics.iter().enumerate() {
        assert_eq!(metadata(&mut c, topic).topics[0].error_code, 0);
        for i in 0..BATCHES {
            produce_one(&mut c, topic, &value(t, i));
        }
    }
    // About 600 kB per partition and 1.2 MB per response: two partitions each time.
    let fetch = |order: &[usize], offsets: &[i64], partition_max_bytes: i32| {
        RequestKind::Fetch(
            FetchRequest::default()
                .with_max_wait_ms(0)
                .with_max_bytes(1_200_000)
                .with_session_epoch(-1)
                .with_topics(
                    order
                        .iter()
                        .map(|&t| {
                            fetch_request::FetchTopic::default()
                                .with_topic(name(&topics[t]))
                                .with_partitions(vec![fetch_request::FetchPartition::default()
                                    .with_partition(0)
                                    .with_fetch_offset(offsets[t])
                                    .with_partition_max_bytes(partition_max_bytes)])
                        })
                        .collect(),
                ),
        )
    };
    let mut offsets = vec![0i64; topics.len()];
    let mut order: Vec<usize> = (0..topics.len()).collect();
    let mut round = 0;
    while offsets.iter().any(|&o| o < BATCHES) {
        round += 1;
        assert!(round < 500, "no progress: offsets {offsets:?}");
        // Now and then the client does what was not read ahead for: a smaller limit, a
        // partition moved back.
        let limit = if round % 7 == 0 { 200_000 } else { 600_000 };
        if round == 11 {
            offsets[order[0]] = 3;
        }
        let ResponseKind::Fetch(r) = c.call(ApiKey::Fetch, 12, fetch(&order, &offsets, limit))
        else {
            unreachable!()
        };
        for topic in &r.responses {
            let t = topics
                .iter()
                .position(|n| n.as_str() == topic.topic.0.as_str())
                .unwrap();
            let p = &topic.partitions[0];
            assert_eq!(
                (p.error_code, p.high_watermark),
                (0, BATCHES),
                "{}",
                topic.topic.0
            );
            let read = decode(p.records.as_ref().unwrap());
            let wanted: Vec<(i64, String)> = (offsets[t]..offsets[t] + read.len() as i64)
                .map(|i| (i, value(t, i)))
                .collect();
            assert!(
                read == wanted,
                "records of {} from {}",
                topic.topic.0,
                offsets[t]
            );
            offsets[t] += read.len() as i64;
        }
        order.rotate_left(1);
        // The client parses; the node reads ahead meanwhile.
        std::thread::sleep(std::time::Duration::from_millis(30));
    }
    let read_ahead = node.metric("strand_fetch_read_ahead_bytes_total");
    let served = node.metric("strand_fetch_read_ahead_served_bytes_total");
    assert!(
        served > 2_000_000,
        "read ahead {read_ahead} bytes, served {served} of them"
    );
    assert!(served <= read_ahead);
}

#[test]
fn no_read_ahead_when_its_budget_is_zero() {
    let node = Node::start_with(&["--fetch-read-ahead-bytes", "0"]);
    let mut c = node.try_connect().unwrap();
    assert_eq!(metadata(&mut c, "none-ahead").topics[0].error_code, 0);
    let filler = "w".repeat(100_000);
    for i in 0..10 {
        produce_one(&mut c, "none-ahead", &format!("{i}:{filler}"));
    }
    let mut offset = 0;
    while offset < 10 {
        let request = FetchRequest::default()
            .with_max_bytes(300_000)
            .with_session_epoch(-1)
            .with_topics(vec![fetch_request::FetchTopic::default()
                .with_topic(name("none-ahead"))
                .with_partitions(vec![fetch_request::FetchPartition::default()
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(300_000)])]);
        let ResponseKind::Fetch(r) = c.call(ApiKey::Fetch, 12, RequestKind::Fetch(request)) else {
            unreachable!()
        };
        let read = decode(r.responses[0].partitions[0].records.as_ref().unwrap());
        assert_eq!(read[0].0, offset);
        offset += read.len() as i64;
        std::thread::sleep(std::time::Duration::from_millis(30));
    }
    assert_eq!(node.metric("strand_fetch_read_ahead_bytes_total"), 0);
}

/// The node's --fetch-max-bytes bounds a response below what the consumer asked for, in
/// whole batches; a first batch larger than it still goes out whole, or the consumer
/// could never get past it.
#[test]
fn the_node_limits_a_response_below_what_the_consumer_asks_for() {
    let filler = "v".repeat(100_000);
    let value = |i: i64| format!("{i}:{filler}");
    for (node_limit, expected) in [("250000", [0, 1].as_slice()), ("50000", &[0])] {
        let node = Node::start_with(&["--fetch-max-bytes", node_limit]);
        let mut c = node.try_connect().unwrap();
        assert_eq!(metadata(&mut c, "capped").topics[0].error_code, 0);
        for i in 0..5 {
            produce_one(&mut c, "capped", &value(i));
        }
        let request = fetch_up_to_50_mib("capped", 0, 10 << 20);
        let ResponseKind::Fetch(r) = c.call(ApiKey::Fetch, 12, request) else {
            unreachable!()
        };
        let p = &r.responses[0].partitions[0];
        assert_eq!((p.error_code, p.high_watermark), (0, 5));
        let read = decode(p.records.as_ref().unwrap());
        let wanted: Vec<(i64, String)> = expected.iter().map(|&i| (i, value(i))).collect();
        assert!(
            read == wanted,
            "node limit {node_limit}: offsets {:?}",
            read.iter().map(|r| r.0).collect::<Vec<_>>()
        );
    }
}
