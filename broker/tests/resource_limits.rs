//! Node-wide bounds on what clients create: partition replicas per node
//! (max-broker-partitions), consumer groups (max-groups) and members per group
//! (group.max.size). Each bound refuses with Kafka's error and leaves what exists working.

mod common;

use bytes::Bytes;
use common::{create_topic, name, Client, Node};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

const MEMBER_ID_REQUIRED: i16 = 79;
const GROUP_MAX_SIZE_REACHED: i16 = 81;
const POLICY_VIOLATION: i16 = 44;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// A JoinGroup v9 for a new member of `group`: its error code.
fn join_new(c: &mut Client, group: &str) -> i16 {
    let req = JoinGroupRequest::default()
        .with_group_id(s(group).into())
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(""))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
        )
        .with_name(s("range"))
        .with_metadata(Bytes::from_static(b"\0\0\0\0\0\0"))]);
    let ResponseKind::JoinGroup(r) = c.call(ApiKey::JoinGroup, 9, RequestKind::JoinGroup(req))
    else {
        unreachable!()
    };
    r.error_code
}

/// Commits offset 1 of topic `t`'s partition 0 for `group`, without membership.
fn commit(c: &mut Client, group: &str) -> i16 {
    let req = OffsetCommitRequest::default()
        .with_group_id(s(group).into())
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(name("t"))
                .with_partitions(vec![
                    offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_committed_offset(1),
                ]),
        ]);
    let ResponseKind::OffsetCommit(r) =
        c.call(ApiKey::OffsetCommit, 9, RequestKind::OffsetCommit(req))
    else {
        unreachable!()
    };
    r.topics[0].partitions[0].error_code
}

/// Grows topic `topic` to `count` partitions: the error code and message.
fn grow(c: &mut Client, topic: &str, count: i32) -> (i16, Option<String>) {
    let req = CreatePartitionsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![
            create_partitions_request::CreatePartitionsTopic::default()
                .with_name(name(topic))
                .with_count(count)
                .with_assignments(None),
        ]);
    let ResponseKind::CreatePartitions(r) = c.call(
        ApiKey::CreatePartitions,
        3,
        RequestKind::CreatePartitions(req),
    ) else {
        unreachable!()
    };
    let result = &r.results[0];
    (
        result.error_code,
        result.error_message.as_ref().map(|m| m.to_string()),
    )
}

#[test]
fn a_node_holds_at_most_max_broker_partitions() {
    let node = Node::start_with(&["--max-broker-partitions", "5"]);
    let mut c = node.try_connect().unwrap();
    assert_eq!(create_topic(&mut c, "t", 3, &[]), 0);
    assert_eq!(create_topic(&mut c, "u", 3, &[]), POLICY_VIOLATION);
    let (error, message) = grow(&mut c, "t", 6);
    assert_eq!(error, POLICY_VIOLATION);
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("max-broker-partitions")),
        "{message:?}"
    );
    assert_eq!(grow(&mut c, "t", 5).0, 0, "up to the bound is allowed");
    assert_eq!(create_topic(&mut c, "v", 1, &[]), POLICY_VIOLATION);
    // Auto-creation is refused too, with the same error.
    let r = common::metadata(&mut c, "auto");
    assert_eq!(common::topic_entry(&r, "auto").error_code, POLICY_VIOLATION);
    assert_eq!(refused(&node, "max_broker_partitions"), 4);
}

/// How many requests the node says bound `limit` refused.
fn refused(node: &Node, limit: &str) -> u64 {
    node.metric(&format!(
        "strand_requests_refused_total{{limit=\"{limit}\"}}"
    ))
}

#[test]
fn groups_and_their_members_are_bounded() {
    let node = Node::start_with(&[
        "--max-groups",
        "2",
        "--group-max-size",
        "1",
        "--group-initial-rebalance-delay-ms",
        "0",
    ]);
    let mut c = node.try_connect().unwrap();
    assert_eq!(create_topic(&mut c, "t", 1, &[]), 0);
    assert_eq!(commit(&mut c, "a"), 0);
    assert_eq!(join_new(&mut c, "b"), MEMBER_ID_REQUIRED, "a second group");
    assert_eq!(commit(&mut c, "c"), POLICY_VIOLATION, "a third, by commit");
    assert_eq!(join_new(&mut c, "d"), POLICY_VIOLATION, "a third, by join");
    // Groups that exist keep working.
    assert_eq!(commit(&mut c, "a"), 0);
    assert_eq!(
        join_new(&mut c, "b"),
        GROUP_MAX_SIZE_REACHED,
        "b holds its one member-to-be"
    );
    assert_eq!(join_new(&mut c, "a"), MEMBER_ID_REQUIRED);
    assert_eq!(refused(&node, "max_groups"), 2);
    assert_eq!(refused(&node, "group_max_size"), 1);
}
