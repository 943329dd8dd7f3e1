//! In a three-node cluster, requests that reach a follower are refused with
//! NOT_LEADER_OR_FOLLOWER and name the leader (and, in Produce, how to reach it), so clients
//! move on without a metadata round trip (KIP-951); leader epochs fence stale clients.

mod common;

use std::time::Duration;

use common::{batch, metadata, name, produce_request, wait_for, Node};
use kafka_protocol::messages::*;

#[test]
fn followers_name_the_leader_and_epochs_fence_stale_clients() {
    let nodes = Node::start_cluster(3);
    // Any node creates topics on demand, whichever node leads the controller group.
    for node in &nodes {
        let topic = format!("auto-{}", node.node_id());
        let r = metadata(&mut node.try_connect().unwrap(), &topic);
        assert_eq!(r.topics[0].error_code, 0, "auto-creating {topic}");
    }
    let mut any = nodes[0].try_connect().unwrap();
    // Auto-creation makes a topic with three replicas; wait until it has a leader.
    let (leader, epoch) = wait_for("a leader", Duration::from_secs(30), || {
        let r = metadata(&mut any, "hints");
        let p = r.topics[0].partitions.first()?;
        (r.topics[0].error_code == 0 && p.error_code == 0 && p.leader_id.0 > 0)
            .then_some((p.leader_id.0, p.leader_epoch))
    });
    let follower = nodes.iter().find(|n| n.node_id() != leader).unwrap();
    let leader_node = nodes.iter().find(|n| n.node_id() == leader).unwrap();
    let mut c = follower.try_connect().unwrap();

    let ResponseKind::Produce(r) =
        c.call(ApiKey::Produce, 12, produce_request("hints", batch("x")))
    else {
        unreachable!()
    };
    let p = &r.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 6, "NOT_LEADER_OR_FOLLOWER");
    assert_eq!(
        (p.current_leader.leader_id.0, p.current_leader.leader_epoch),
        (leader, epoch)
    );
    assert_eq!(r.node_endpoints.len(), 1);
    assert_eq!(r.node_endpoints[0].port, leader_node.port as i32);

    let fetch = |offset_epoch: i32| {
        RequestKind::Fetch(
            FetchRequest::default()
                .with_max_wait_ms(0)
                .with_session_epoch(-1)
                .with_topics(vec![fetch_request::FetchTopic::default()
                    .with_topic(name("hints"))
                    .with_partitions(vec![fetch_request::FetchPartition::default()
                        .with_partition(0)
                        .with_current_leader_epoch(offset_epoch)
                        .with_partition_max_bytes(1 << 20)])]),
        )
    };
    let ResponseKind::Fetch(r) = c.call(ApiKey::Fetch, 12, fetch(-1)) else {
        unreachable!()
    };
    let p = &r.responses[0].partitions[0];
    assert_eq!((p.error_code, p.current_leader.leader_id.0), (6, leader));

    // At the leader: the right epoch works, an older one is fenced, a newer one unknown.
    let mut l = leader_node.try_connect().unwrap();
    let ResponseKind::Produce(r) =
        l.call(ApiKey::Produce, 12, produce_request("hints", batch("x")))
    else {
        unreachable!()
    };
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    for (asked, expected) in [(epoch, 0), (epoch - 1, 74), (epoch + 1, 75)] {
        let ResponseKind::Fetch(r) = l.call(ApiKey::Fetch, 12, fetch(asked)) else {
            unreachable!()
        };
        assert_eq!(
            r.responses[0].partitions[0].error_code, expected,
            "fetch with epoch {asked}"
        );
    }
    let p = epoch_end(&mut l, "hints", epoch, epoch);
    assert_eq!((p.error_code, p.leader_epoch, p.end_offset), (0, epoch, 1));
}

/// Where partition 0 of `topic` says `leader_epoch` ended, asked with `current` as the
/// client's idea of the leader's epoch.
fn epoch_end(
    c: &mut common::Client,
    topic: &str,
    current: i32,
    leader_epoch: i32,
) -> offset_for_leader_epoch_response::EpochEndOffset {
    let req = OffsetForLeaderEpochRequest::default().with_topics(vec![
        offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![
                offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                    .with_current_leader_epoch(current)
                    .with_leader_epoch(leader_epoch),
            ]),
    ]);
    let ResponseKind::OffsetForLeaderEpoch(mut r) = c.call(
        ApiKey::OffsetForLeaderEpoch,
        4,
        RequestKind::OffsetForLeaderEpoch(req),
    ) else {
        unreachable!()
    };
    r.topics.remove(0).partitions.remove(0)
}

/// The leader epoch a consumer validates after a leader change is older than the current
/// one; Strand answers it with the log end, never with the start of the next epoch: a
/// librdkafka consumer whose position moved past that start while its request was in
/// flight would take it for a truncation and drop records it had fetched but not yet
/// delivered (found by the Jepsen harness; see `handlers::offset_for_leader_epoch`).
#[test]
fn an_old_epoch_ends_at_the_log_end_after_a_leader_change() {
    let mut nodes = Node::start_cluster(3);
    let mut any = nodes[0].try_connect().unwrap();
    let leader_of = |c: &mut common::Client, newer_than: i32| {
        wait_for("a leader", Duration::from_secs(30), || {
            let r = metadata(c, "epochs");
            let p = r.topics[0].partitions.first()?;
            (r.topics[0].error_code == 0
                && p.error_code == 0
                && p.leader_id.0 > 0
                && p.leader_epoch > newer_than)
                .then_some((p.leader_id.0, p.leader_epoch))
        })
    };
    let produce = |node: &Node| {
        wait_for("a produce", Duration::from_secs(30), || {
            let mut c = node.try_connect().ok()?;
            let ResponseKind::Produce(r) =
                c.call(ApiKey::Produce, 12, produce_request("epochs", batch("x")))
            else {
                unreachable!()
            };
            (r.responses[0].partition_responses[0].error_code == 0).then_some(())
        })
    };
    let (first_leader, first_epoch) = leader_of(&mut any, 0);
    let at = |nodes: &[Node], id: i32| nodes.iter().position(|n| n.node_id() == id).unwrap();
    produce(&nodes[at(&nodes, first_leader)]);
    produce(&nodes[at(&nodes, first_leader)]);
    // Kill the leader (dropping a node kills it); a survivor takes over in a newer epoch.
    drop(nodes.remove(at(&nodes, first_leader)));
    let mut survivor = nodes[0].try_connect().unwrap();
    let (leader, epoch) = leader_of(&mut survivor, first_epoch);
    produce(&nodes[at(&nodes, leader)]);
    let mut l = nodes[at(&nodes, leader)].try_connect().unwrap();
    let p = epoch_end(&mut l, "epochs", epoch, first_epoch);
    // Two records in the first epoch, one in the new: Kafka would answer offset 2.
    assert_eq!(
        (p.error_code, p.leader_epoch, p.end_offset),
        (0, first_epoch, 3)
    );
}
