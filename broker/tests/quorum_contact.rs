//! A partition leader that has lost contact with a majority of its replicas stops acting
//! as leader for clients: produce and fetch are refused with NOT_LEADER_OR_FOLLOWER (the
//! Jepsen harness found producers stuck on a leader partitioned from its followers until
//! their requests timed out), and its metadata names no leader. It serves again once the
//! majority is back.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{batch, metadata, name, produce_request, wait_for, Node};
use kafka_protocol::messages::*;

fn signal(node: &Node, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &node.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal}");
}

fn produce_error(c: &mut common::Client) -> i16 {
    let ResponseKind::Produce(r) = c.call(ApiKey::Produce, 9, produce_request("cut", batch("x")))
    else {
        unreachable!()
    };
    r.responses[0].partition_responses[0].error_code
}

#[test]
fn a_leader_cut_off_from_its_majority_stops_serving_until_it_is_back() {
    let nodes = Node::start_cluster(3);
    let mut any = nodes[0].try_connect().unwrap();
    let leader = wait_for("a leader", Duration::from_secs(30), || {
        let r = metadata(&mut any, "cut");
        let p = r.topics[0].partitions.first()?;
        (r.topics[0].error_code == 0 && p.error_code == 0 && p.leader_id.0 > 0)
            .then_some(p.leader_id.0)
    });
    let leader_node = nodes.iter().find(|n| n.node_id() == leader).unwrap();
    let followers: Vec<&Node> = nodes.iter().filter(|n| n.node_id() != leader).collect();
    let mut l = leader_node.try_connect().unwrap();
    assert_eq!(produce_error(&mut l), 0);

    // Both followers stop answering: the produce already on its way is refused rather
    // than left waiting for its 30 s timeout (REQUEST_TIMED_OUT, 7), and so are later ones.
    for f in &followers {
        signal(f, "-STOP");
    }
    assert_eq!(produce_error(&mut l), 6, "NOT_LEADER_OR_FOLLOWER");
    assert_eq!(produce_error(&mut l), 6, "NOT_LEADER_OR_FOLLOWER");
    let fetch = RequestKind::Fetch(
        FetchRequest::default()
            .with_max_wait_ms(0)
            .with_session_epoch(-1)
            .with_topics(vec![fetch_request::FetchTopic::default()
                .with_topic(name("cut"))
                .with_partitions(vec![fetch_request::FetchPartition::default()
                    .with_partition(0)
                    .with_partition_max_bytes(1 << 20)])]),
    );
    let ResponseKind::Fetch(r) = l.call(ApiKey::Fetch, 12, fetch) else {
        unreachable!()
    };
    assert_eq!(r.responses[0].partitions[0].error_code, 6);
    let p = &metadata(&mut l, "cut").topics[0].partitions[0];
    assert_eq!(p.leader_id.0, -1, "no leader while cut off: {p:?}");

    for f in &followers {
        signal(f, "-CONT");
    }
    wait_for("produce to succeed again", Duration::from_secs(30), || {
        let r = metadata(&mut l, "cut");
        let leader = r.topics[0].partitions[0].leader_id.0;
        let node = nodes.iter().find(|n| n.node_id() == leader)?;
        (produce_error(&mut node.try_connect().ok()?) == 0).then_some(())
    });
}
