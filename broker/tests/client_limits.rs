//! Node-wide bounds on what clients hold: idle connections and requests that do not arrive
//! in time are closed, connections beyond max.connections.per.ip are closed at once, and a
//! frame waits for request memory (queued.max.request.bytes) before it is buffered. Each
//! test also checks that a bystander keeps its service.

mod common;

use std::time::{Duration, Instant};

use common::{metadata, produce_to, record_batch, Client, Node};
use kafka_protocol::messages::*;
use kafka_protocol::records::Compression;

fn assert_served(bystander: &mut Client, after: &str) {
    let started = Instant::now();
    let r = metadata(bystander, "bystander");
    assert!(
        !r.brokers.is_empty(),
        "after {after}: Metadata has no brokers"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "after {after}: Metadata took {:?}",
        started.elapsed()
    );
}

/// A new connection that the node serves (answers an empty Metadata within 2 s), waited
/// for up to `limit`.
fn served_connection(node: &Node, what: &str, limit: Duration) -> Client {
    common::wait_for(what, limit, || {
        let mut c = node.try_connect().ok()?;
        c.stream()
            .set_read_timeout(Some(Duration::from_secs(2)))
            .ok()?;
        c.try_call(
            ApiKey::Metadata,
            12,
            &RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![]))),
        )
        .ok()?;
        c.stream()
            .set_read_timeout(Some(Duration::from_secs(30)))
            .ok()?;
        Some(c)
    })
}

#[test]
fn idle_connections_are_closed_but_not_those_being_answered() {
    let node = Node::start_with(&["--connections-max-idle-ms", "1500"]);
    let mut idle = node.try_connect().unwrap();
    let mut busy = node.try_connect().unwrap();
    let mut waiting = node.try_connect().unwrap();
    metadata(&mut idle, "t");
    // A fetch that waits 2.5 s for records that never come: longer than the idle limit.
    let long_poll = FetchRequest::default()
        .with_max_wait_ms(2_500)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(common::name("t"))
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    waiting.send(ApiKey::Fetch, 4, &RequestKind::Fetch(long_poll));
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        metadata(&mut busy, "t");
        std::thread::sleep(Duration::from_millis(300));
    }
    let ResponseKind::Fetch(answer) = waiting.receive(ApiKey::Fetch, 4) else {
        unreachable!()
    };
    assert_eq!(answer.responses[0].partitions[0].error_code, 0);
    assert!(
        idle.is_closed_by_peer(Duration::from_secs(1)),
        "an idle connection stayed open"
    );
    assert_served(&mut busy, "idle connections");
    assert_served(&mut waiting, "a long fetch");
    assert!(node.metric("strand_connections_closed_total{reason=\"idle\"}") >= 1);
}

#[test]
fn a_request_that_does_not_arrive_in_time_closes_its_connection() {
    let node = Node::start_with(&["--frame-read-timeout-ms", "1000"]);
    let mut bystander = node.try_connect().unwrap();
    let mut slow = node.try_connect().unwrap();
    // A 100-byte frame, and then only 10 of its bytes, one every 200 ms.
    slow.send_raw(&100i32.to_be_bytes());
    let started = Instant::now();
    let mut closed = false;
    for _ in 0..10 {
        slow.send_raw(&[0]);
        if slow.is_closed_by_peer(Duration::from_millis(200)) {
            closed = true;
            break;
        }
    }
    closed = closed || slow.is_closed_by_peer(Duration::from_secs(3));
    assert!(closed, "a connection trickling its request stayed open");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "closed too early"
    );
    assert_served(&mut bystander, "a slow request");
    assert_eq!(
        node.metric("strand_connections_closed_total{reason=\"read_timeout\"}"),
        1
    );
}

#[test]
fn connections_beyond_the_per_address_limit_are_closed_at_once() {
    let node = Node::start_with(&["--max-connections-per-ip", "3"]);
    // The start-up probe's connection counts until the node sees it closed.
    common::wait_for("no connection open", Duration::from_secs(5), || {
        (node.metric("strand_connections_open") == 0).then_some(())
    });
    let mut open: Vec<Client> = (0..3).map(|_| node.try_connect().unwrap()).collect();
    for c in &mut open {
        metadata(c, "t");
    }
    let mut fourth = node.try_connect().unwrap();
    assert!(
        fourth.is_closed_by_peer(Duration::from_secs(3)),
        "a fourth connection stayed open"
    );
    drop(open.pop());
    let mut again = served_connection(
        &node,
        "a connection after one closed",
        Duration::from_secs(5),
    );
    assert_served(&mut again, "a refused connection");
    assert_served(&mut open[0], "a refused connection");
    assert!(node.metric("strand_connections_closed_total{reason=\"limit\"}") >= 1);
}

#[test]
fn a_full_node_serves_a_new_connection_only_once_another_closes() {
    let node = Node::start_with(&["--max-connections", "2"]);
    let mut first = node.try_connect().unwrap();
    let mut second = node.try_connect().unwrap();
    metadata(&mut first, "t");
    metadata(&mut second, "t");
    // The kernel completes the handshake; the node does not take the connection yet.
    let mut third = node.try_connect().unwrap();
    third
        .stream()
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let early = third.try_call(
        ApiKey::Metadata,
        12,
        &RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![]))),
    );
    assert!(early.is_err(), "a third connection was served: {early:?}");
    drop(third);
    drop(first);
    let mut fourth = served_connection(&node, "room after one closed", Duration::from_secs(10));
    assert_served(&mut second, "a full node");
    assert_served(&mut fourth, "a full node");
}

#[test]
fn a_frame_waits_for_request_memory_held_by_another() {
    let node = Node::start_with(&[
        "--queued-max-request-bytes",
        "2000000",
        "--max-request-bytes",
        "1500000",
        "--max-message-bytes",
        "1500000",
    ]);
    let mut bystander = node.try_connect().unwrap();
    metadata(&mut bystander, "t");
    // Holds 1.5 MB of the 2 MB: a frame that never gets its last bytes.
    let mut holder = node.try_connect().unwrap();
    holder.send_raw(&1_500_000i32.to_be_bytes());
    holder.send_raw(&[0; 100]);
    common::wait_for(
        "the held frame to take memory",
        Duration::from_secs(5),
        || (node.metric("strand_request_memory_bytes") >= 1_500_000).then_some(()),
    );
    // A produce of about 1 MB cannot be read until the holder goes.
    let mut producer = node.try_connect().unwrap();
    let big = record_batch(&[("k", &"x".repeat(1_000_000))], Compression::None, None);
    producer.send(ApiKey::Produce, 3, &produce_to("t", 0, big, -1));
    producer
        .stream()
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut size = [0u8; 4];
    let early = std::io::Read::read(producer.stream(), &mut size);
    assert!(
        early.is_err(),
        "answered while the memory was held: {early:?}"
    );
    assert_served(&mut bystander, "a held frame");
    drop(holder);
    producer
        .stream()
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let ResponseKind::Produce(r) = producer.receive(ApiKey::Produce, 3) else {
        unreachable!()
    };
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
}
