//! An idle cluster's Raft groups go quiet: their leaders stop sending openraft heartbeats
//! and are heard through one message per peer instead (see `raft/src/heartbeat.rs`).
//! Quiet groups keep their leaders and epochs, take writes at once, and still fail over
//! when their leader's node dies.

mod common;

use std::time::Duration;

use common::{batch, metadata, produce_request, wait_for, Node};
use kafka_protocol::messages::*;

const TOPICS: [&str; 4] = ["quiet-a", "quiet-b", "quiet-c", "quiet-d"];
const APPENDS: &str = "strand_raft_heartbeats_total{kind=\"append\"}";
const QUIET: &str = "strand_raft_heartbeats_total{kind=\"quiet\"}";

/// Partition 0 of each topic: `(leader, leader epoch)` as `node` reports it, once every
/// topic has a leader.
fn leaders(node: &Node) -> Vec<(i32, i32)> {
    let mut c = node.try_connect().unwrap();
    TOPICS
        .iter()
        .map(|topic| {
            wait_for("a leader", Duration::from_secs(30), || {
                let r = metadata(&mut c, topic);
                let p = r.topics[0].partitions.first()?;
                (r.topics[0].error_code == 0 && p.error_code == 0 && p.leader_id.0 > 0)
                    .then_some((p.leader_id.0, p.leader_epoch))
            })
        })
        .collect()
}

/// The error code of a one-record produce to partition 0 of `topic` on node `leader`.
fn produce(nodes: &[Node], leader: i32, topic: &str) -> i16 {
    let node = nodes.iter().find(|n| n.node_id() == leader).unwrap();
    let mut c = node.try_connect().unwrap();
    let ResponseKind::Produce(r) = c.call(ApiKey::Produce, 9, produce_request(topic, batch("x")))
    else {
        unreachable!()
    };
    r.responses[0].partition_responses[0].error_code
}

fn total(nodes: &[Node], series: &str) -> u64 {
    nodes.iter().map(|n| n.metric(series)).sum()
}

#[test]
fn idle_groups_go_quiet_keep_their_leaders_and_still_fail_over() {
    let mut nodes = Node::start_cluster(3);
    let before = leaders(&nodes[0]);
    for (topic, (leader, _)) in TOPICS.iter().zip(&before) {
        assert_eq!(produce(&nodes, *leader, topic), 0, "produce to {topic}");
    }

    // Two heartbeat rounds after the last write, a group is quiet. Then, over several
    // election timeouts, every group is heard from without an openraft heartbeat, and no
    // follower stands for election.
    std::thread::sleep(Duration::from_secs(2));
    let (appends, quiet) = (total(&nodes, APPENDS), total(&nodes, QUIET));
    std::thread::sleep(Duration::from_secs(4));
    let appends = total(&nodes, APPENDS) - appends;
    let quiet = total(&nodes, QUIET) - quiet;
    assert!(quiet > 0, "no quiet heartbeats in an idle cluster");
    assert!(
        appends * 10 <= quiet,
        "idle groups still send openraft heartbeats: {appends} appends, {quiet} quiet"
    );
    for node in &nodes {
        assert_eq!(
            leaders(node),
            before,
            "leaders changed on node {}",
            node.node_id()
        );
    }
    for (topic, (leader, _)) in TOPICS.iter().zip(&before) {
        assert_eq!(
            produce(&nodes, *leader, topic),
            0,
            "produce to quiet {topic}"
        );
    }

    // The leader of the first topic dies while its groups are quiet: the survivors elect
    // another leader, in a later epoch, which takes writes.
    std::thread::sleep(Duration::from_secs(2));
    let (dead, epoch) = before[0];
    nodes.retain(|n| n.node_id() != dead);
    let survivor = &nodes[0];
    let mut c = survivor.try_connect().unwrap();
    wait_for("a new leader", Duration::from_secs(30), || {
        let r = metadata(&mut c, TOPICS[0]);
        let p = &r.topics[0].partitions[0];
        (p.leader_id.0 > 0 && p.leader_id.0 != dead && p.leader_epoch > epoch).then_some(())?;
        (produce(&nodes, p.leader_id.0, TOPICS[0]) == 0).then_some(())
    });
}
