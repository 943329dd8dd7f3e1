//! An idempotent producer's sequence rules over the wire: a retry gets its original offset,
//! a gap is refused, a new epoch starts again at sequence 0 and fences the old one, and
//! nothing refused or repeated is stored.

mod common;

use common::{create_topic, fetch, init_producer_id, produce, record_batch, Node};
use kafka_protocol::records::Compression;

const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
const INVALID_PRODUCER_EPOCH: i16 = 47;

#[test]
fn sequence_rules_over_the_wire() {
    let node = Node::start();
    let mut c = node.try_connect().unwrap();
    assert_eq!(create_topic(&mut c, "sequences", 1, &[]), 0);
    let (error, pid, epoch) = init_producer_id(&mut c);
    assert_eq!((error, epoch), (0, 0));
    let (_, other_pid, _) = init_producer_id(&mut c);
    assert_ne!(other_pid, pid, "producer ids are never handed out twice");

    // Two records from `pid` at `epoch`, the first with sequence `sequence`.
    let mut send = |sequence: i32, epoch: i16| {
        let values = [format!("s{sequence}"), format!("s{}", sequence + 1)];
        let records = [("k", values[0].as_str()), ("k", values[1].as_str())];
        let batch = record_batch(&records, Compression::None, Some((pid, epoch, sequence)));
        produce(&mut c, "sequences", 0, batch, -1)
    };
    assert_eq!(send(0, 0), (0, 0));
    assert_eq!(send(0, 0), (0, 0), "a retry gets the original offset");
    assert_eq!(send(2, 0), (0, 2));
    assert_eq!(send(2, 0), (0, 2));
    assert_eq!(
        send(7, 0).0,
        OUT_OF_ORDER_SEQUENCE_NUMBER,
        "a gap is refused"
    );
    assert_eq!(send(0, 1), (0, 4), "a new epoch starts again at 0");
    assert_eq!(
        send(4, 0).0,
        INVALID_PRODUCER_EPOCH,
        "the old epoch is fenced"
    );
    let (error, high_watermark, _) = fetch(&mut c, "sequences", 0, 0);
    assert_eq!(
        (error, high_watermark),
        (0, 6),
        "nothing refused or repeated was stored"
    );
}

/// The `strand.version` a node reports as finalized, checking that it supports 1.
fn finalized_level(c: &mut common::Client) -> i16 {
    use kafka_protocol::messages::*;
    let request = RequestKind::ApiVersions(ApiVersionsRequest::default());
    let ResponseKind::ApiVersions(r) = c.call(ApiKey::ApiVersions, 3, request) else {
        unreachable!()
    };
    let supported = r
        .supported_features
        .iter()
        .any(|f| f.name.as_str() == "strand.version" && (f.min_version, f.max_version) == (1, 1));
    assert!(supported, "{:?}", r.supported_features);
    let level = r
        .finalized_features
        .iter()
        .find(|f| f.name.as_str() == "strand.version")
        .map_or(0, |f| f.max_version_level);
    let epoch = if level == 0 { -1 } else { level as i64 };
    assert_eq!(r.finalized_features_epoch, epoch);
    level
}

/// Waits until the node `c` talks to reports `strand.version` 1 finalized.
fn wait_for_level_one(c: &mut common::Client) {
    common::wait_for(
        "strand.version 1 to be finalized",
        std::time::Duration::from_secs(30),
        || (finalized_level(c) == 1).then_some(()),
    );
}

/// Three nodes finalize `strand.version` 1 once the controller's leader has asked the
/// other two over ApiVersions, and every node reports it.
#[test]
fn a_cluster_finalizes_the_feature_level_every_node_supports() {
    let nodes = Node::start_cluster(3);
    for node in &nodes {
        wait_for_level_one(&mut node.try_connect().unwrap());
    }
}

/// Once the cluster finalizes `strand.version` 1, a producer's state keeps the node's
/// clock, whatever create time its batches claim.
#[test]
fn producer_state_keeps_the_nodes_clock_once_the_feature_is_finalized() {
    use kafka_protocol::messages::*;
    let node = Node::start();
    let mut c = node.try_connect().unwrap();
    assert_eq!(create_topic(&mut c, "clock", 1, &[]), 0);
    wait_for_level_one(&mut c);
    let (_, pid, _) = init_producer_id(&mut c);
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // record_batch's create times are in November 2023.
    let batch = record_batch(&[("k", "v")], Compression::None, Some((pid, 0, 0)));
    assert_eq!(produce(&mut c, "clock", 0, batch, -1), (0, 0));
    let request =
        RequestKind::DescribeProducers(DescribeProducersRequest::default().with_topics(vec![
            describe_producers_request::TopicRequest::default()
                .with_name(common::name("clock"))
                .with_partition_indexes(vec![0]),
        ]));
    let ResponseKind::DescribeProducers(r) = c.call(ApiKey::DescribeProducers, 0, request) else {
        unreachable!()
    };
    let producers = &r.topics[0].partitions[0].active_producers;
    assert_eq!(producers.len(), 1);
    assert!(
        (before..before + 60_000).contains(&producers[0].last_timestamp),
        "last timestamp {} is not the node's clock ({before})",
        producers[0].last_timestamp
    );
}
