//! The log start offset, moved by DeleteRecords: what Fetch and ListOffsets answer around
//! it, that idempotent producers' state outlives the batches it came from, and that every
//! replica keeps the same start through a change of leader.

mod common;

use std::time::Duration;

use common::{create_topic, metadata, name, produce, record_batch, wait_for, Client, Node};
use kafka_protocol::messages::*;
use kafka_protocol::records::Compression;

/// DeleteRecords (v2) of partition 0 up to `offset`: the error code and low watermark.
fn delete_records(c: &mut Client, topic: &str, offset: i64) -> (i16, i64) {
    let req = common::delete_records_request(topic, offset);
    let ResponseKind::DeleteRecords(r) = c.call(ApiKey::DeleteRecords, 2, req) else {
        unreachable!()
    };
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.low_watermark)
}

/// ListOffsets (v8) of partition 0 at `timestamp` (-2 earliest, -1 latest): error, offset.
fn list_offset(c: &mut Client, topic: &str, timestamp: i64) -> (i16, i64) {
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![
                list_offsets_request::ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(timestamp),
            ])]);
    let ResponseKind::ListOffsets(r) =
        c.call(ApiKey::ListOffsets, 8, RequestKind::ListOffsets(req))
    else {
        unreachable!()
    };
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.offset)
}

/// Fetch (v12) of partition 0 from `offset`: error, log start offset, and the base offset
/// of the first batch returned.
fn fetch_start(c: &mut Client, topic: &str, offset: i64) -> (i16, i64, Option<i64>) {
    let req = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_session_epoch(-1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])]);
    let ResponseKind::Fetch(r) = c.call(ApiKey::Fetch, 12, RequestKind::Fetch(req)) else {
        unreachable!()
    };
    let p = &r.responses[0].partitions[0];
    let first_base = p
        .records
        .as_ref()
        .filter(|r| r.len() >= 8)
        .map(|r| i64::from_be_bytes(r[..8].try_into().unwrap()));
    (p.error_code, p.log_start_offset, first_base)
}

/// Three batches of four records: offsets 0-3, 4-7 and 8-11. The records of each batch
/// are a millisecond apart, from the same time.
fn three_batches(c: &mut Client, topic: &str) {
    for b in 0..3 {
        let records: Vec<(String, String)> = (0..4)
            .map(|i| (format!("k{i}"), format!("b{b}-{i}")))
            .collect();
        let refs: Vec<(&str, &str)> = records
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let (error, base) = produce(
            c,
            topic,
            0,
            record_batch(&refs, Compression::None, None),
            -1,
        );
        assert_eq!((error, base), (0, b * 4), "setup produce");
    }
}

#[test]
fn a_start_inside_a_batch_serves_that_batch_and_refuses_reads_below_it() {
    let node = Node::start_with(&["--log-retention-ms", "-1"]);
    let mut c = node.try_connect().unwrap();
    assert_eq!(create_topic(&mut c, "inside", 1, &[]), 0);
    three_batches(&mut c, "inside");

    assert_eq!(delete_records(&mut c, "inside", 5), (0, 5));
    assert_eq!(list_offset(&mut c, "inside", -2), (0, 5), "earliest");
    assert_eq!(list_offset(&mut c, "inside", -1), (0, 12), "latest");
    assert_eq!(
        fetch_start(&mut c, "inside", 4),
        (1, -1, None),
        "OFFSET_OUT_OF_RANGE below the start (Kafka sends no offsets with it)"
    );
    assert_eq!(
        fetch_start(&mut c, "inside", 5),
        (0, 5, Some(4)),
        "the batch holding the start comes whole"
    );
    // Record i of every batch has the same timestamp: the first at or after it from the
    // start on is offset 5 (record 1 of the second batch), not 1, which is gone.
    let second_record_time = 1_700_000_000_001;
    assert_eq!(list_offset(&mut c, "inside", second_record_time), (0, 5));

    assert_eq!(
        delete_records(&mut c, "inside", -1),
        (0, 12),
        "-1: up to the high watermark"
    );
    assert_eq!(fetch_start(&mut c, "inside", 12), (0, 12, None));
    assert_eq!(
        list_offset(&mut c, "inside", second_record_time),
        (0, -1),
        "nothing left"
    );
    let (error, base) = produce(&mut c, "inside", 0, common::batch("after"), -1);
    assert_eq!((error, base), (0, 12));
    assert_eq!(list_offset(&mut c, "inside", -2), (0, 12));
    assert_eq!(fetch_start(&mut c, "inside", 12), (0, 12, Some(12)));
}

#[test]
fn an_idempotent_producer_keeps_its_sequence_after_its_batches_are_deleted() {
    let node = Node::start();
    let mut c = node.try_connect().unwrap();
    assert_eq!(create_topic(&mut c, "sequenced", 1, &[]), 0);
    let (_, pid, _) = common::init_producer_id(&mut c);
    let send = |c: &mut Client, sequence: i32| {
        let batch = record_batch(&[("k", "v")], Compression::None, Some((pid, 0, sequence)));
        produce(c, "sequenced", 0, batch, -1)
    };
    assert_eq!(send(&mut c, 0), (0, 0));
    assert_eq!(send(&mut c, 1), (0, 1));
    assert_eq!(delete_records(&mut c, "sequenced", -1), (0, 2));
    assert_eq!(
        send(&mut c, 1),
        (0, 1),
        "a retry of a deleted batch is still a duplicate"
    );
    assert_eq!(
        list_offset(&mut c, "sequenced", -1),
        (0, 2),
        "and is not stored again"
    );
    assert_eq!(
        send(&mut c, 3).0,
        45,
        "a gap is still OUT_OF_ORDER_SEQUENCE_NUMBER"
    );
    assert_eq!(send(&mut c, 2), (0, 2), "the sequence goes on");
}

#[test]
fn every_replica_keeps_the_start_through_a_change_of_leader() {
    let mut nodes = Node::start_cluster(3);
    let mut any = nodes[0].try_connect().unwrap();
    let leader_of = |c: &mut Client| {
        wait_for("a leader", Duration::from_secs(30), || {
            let r = metadata(c, "replicated");
            let p = r.topics[0].partitions.first()?;
            (r.topics[0].error_code == 0 && p.error_code == 0 && p.leader_id.0 > 0)
                .then_some(p.leader_id.0)
        })
    };
    let leader = leader_of(&mut any);
    let at = nodes.iter().position(|n| n.node_id() == leader).unwrap();
    let mut c = nodes[at].try_connect().unwrap();
    three_batches(&mut c, "replicated");
    assert_eq!(delete_records(&mut c, "replicated", 6), (0, 6));
    drop(c);

    // The old leader goes; a follower takes over with the same start.
    nodes.remove(at);
    let mut survivor = nodes[0].try_connect().unwrap();
    let new_leader = wait_for("a new leader", Duration::from_secs(30), || {
        let l = leader_of(&mut survivor);
        (l != leader).then_some(l)
    });
    let mut c = nodes
        .iter()
        .find(|n| n.node_id() == new_leader)
        .unwrap()
        .try_connect()
        .unwrap();
    let earliest = wait_for("the new leader to serve", Duration::from_secs(30), || {
        let (error, offset) = list_offset(&mut c, "replicated", -2);
        (error == 0).then_some(offset)
    });
    assert_eq!(earliest, 6);
    assert_eq!(fetch_start(&mut c, "replicated", 5), (1, -1, None));
    assert_eq!(fetch_start(&mut c, "replicated", 6), (0, 6, Some(4)));
}
