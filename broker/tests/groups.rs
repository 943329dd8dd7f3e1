//! Group requests that break the rules get Kafka's errors, so clients recover by
//! themselves: unknown members, wrong generations, session timeouts out of bounds, and
//! commit metadata over the limit. A member whose client went away does not lead.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{name, wait_for, Client, Node};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

const MEMBER_ID_REQUIRED: i16 = 79;
const INVALID_SESSION_TIMEOUT: i16 = 26;
const UNKNOWN_MEMBER_ID: i16 = 25;
const ILLEGAL_GENERATION: i16 = 22;
const OFFSET_METADATA_TOO_LARGE: i16 = 12;
const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
const REBALANCE_IN_PROGRESS: i16 = 27;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn join_request(member: &str, session_ms: i32, protocol: &str) -> RequestKind {
    RequestKind::JoinGroup(
        JoinGroupRequest::default()
            .with_group_id(s("g").into())
            .with_session_timeout_ms(session_ms)
            .with_rebalance_timeout_ms(10_000)
            .with_member_id(s(member))
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
            )
            .with_name(s(protocol))
            .with_metadata(Bytes::from_static(b"\0\0\0\0\0\0"))]),
    )
}

fn join(c: &mut Client, member: &str, session_ms: i32, protocol: &str) -> JoinGroupResponse {
    let request = join_request(member, session_ms, protocol);
    let ResponseKind::JoinGroup(r) = c.call(ApiKey::JoinGroup, 9, request) else {
        unreachable!()
    };
    r
}

fn sync(c: &mut Client, member: &str, generation: i32) -> SyncGroupResponse {
    let sync = SyncGroupRequest::default()
        .with_group_id(s("g").into())
        .with_member_id(s(member))
        .with_generation_id(generation);
    let ResponseKind::SyncGroup(r) = c.call(ApiKey::SyncGroup, 5, RequestKind::SyncGroup(sync))
    else {
        unreachable!()
    };
    r
}

fn heartbeat(c: &mut Client, member: &str, generation: i32) -> i16 {
    let req = HeartbeatRequest::default()
        .with_group_id(s("g").into())
        .with_member_id(s(member))
        .with_generation_id(generation);
    let ResponseKind::Heartbeat(r) = c.call(ApiKey::Heartbeat, 4, RequestKind::Heartbeat(req))
    else {
        unreachable!()
    };
    r.error_code
}

fn commit(c: &mut Client, member: &str, generation: i32, metadata: &str) -> i16 {
    let req = OffsetCommitRequest::default()
        .with_group_id(s("g").into())
        .with_member_id(s(member))
        .with_generation_id_or_member_epoch(generation)
        .with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(name("t"))
                .with_partitions(vec![
                    offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_committed_offset(1)
                        .with_committed_metadata(Some(s(metadata))),
                ]),
        ]);
    let ResponseKind::OffsetCommit(r) =
        c.call(ApiKey::OffsetCommit, 9, RequestKind::OffsetCommit(req))
    else {
        unreachable!()
    };
    r.topics[0].partitions[0].error_code
}

#[test]
fn group_rule_breakers_get_kafkas_errors() {
    let node = Node::start_with(&["--group-initial-rebalance-delay-ms", "0"]);
    let mut c = node.try_connect().unwrap();
    // The topic must exist for commits to it.
    let metadata = MetadataRequest::default()
        .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
        )
        .with_name(Some(name("t")))]))
        .with_allow_auto_topic_creation(true);
    c.call(ApiKey::Metadata, 12, RequestKind::Metadata(metadata));

    assert_eq!(
        join(&mut c, "", 1000, "range").error_code,
        INVALID_SESSION_TIMEOUT
    );
    let first = join(&mut c, "", 10_000, "range");
    assert_eq!(first.error_code, MEMBER_ID_REQUIRED);
    let member = first.member_id.to_string();
    assert!(!member.is_empty());
    let joined = join(&mut c, &member, 10_000, "range");
    assert_eq!((joined.error_code, joined.generation_id), (0, 1));
    assert_eq!(joined.leader.as_str(), member, "the only member leads");

    assert_eq!(heartbeat(&mut c, "stranger", 1), UNKNOWN_MEMBER_ID);
    assert_eq!(heartbeat(&mut c, &member, 7), ILLEGAL_GENERATION);
    let other = join(&mut c, "", 10_000, "some-other-assignor");
    assert_eq!(other.error_code, INCONSISTENT_GROUP_PROTOCOL);

    assert_eq!(sync(&mut c, &member, 2).error_code, ILLEGAL_GENERATION);
    let sync = SyncGroupRequest::default()
        .with_group_id(s("g").into())
        .with_member_id(s(&member))
        .with_generation_id(1)
        .with_assignments(vec![
            sync_group_request::SyncGroupRequestAssignment::default()
                .with_member_id(s(&member))
                .with_assignment(Bytes::from_static(b"mine")),
        ]);
    let ResponseKind::SyncGroup(r) = c.call(ApiKey::SyncGroup, 5, RequestKind::SyncGroup(sync))
    else {
        unreachable!()
    };
    assert_eq!(
        (r.error_code, r.assignment),
        (0, Bytes::from_static(b"mine"))
    );

    assert_eq!(commit(&mut c, "stranger", 1, ""), UNKNOWN_MEMBER_ID);
    assert_eq!(
        commit(&mut c, "", -1, ""),
        UNKNOWN_MEMBER_ID,
        "the group has members"
    );
    assert_eq!(
        commit(&mut c, &member, 1, &"m".repeat(5000)),
        OFFSET_METADATA_TOO_LARGE
    );
    assert_eq!(commit(&mut c, &member, 1, "fine"), 0);
    // The node still serves after all of that.
    assert_eq!(heartbeat(&mut c, &member, 1), 0);
}

/// A member whose client hangs up while it waits to rejoin does not lead the generation: a
/// leader that never hears of it sends no assignment, and the others would wait for one
/// until its session ends.
#[test]
fn a_member_that_hangs_up_while_rejoining_does_not_lead() {
    let node = Node::start_with(&["--group-initial-rebalance-delay-ms", "0"]);
    let session = 6_000;
    let connect_and_join = || {
        let mut c = node.try_connect().unwrap();
        let id = join(&mut c, "", session, "range").member_id.to_string();
        c.send(ApiKey::JoinGroup, 9, &join_request(&id, session, "range"));
        (c, id)
    };
    let rejoin_when_told = |c: &mut Client, id: &str, generation: i32| {
        wait_for(
            "the rebalance to be announced",
            Duration::from_secs(10),
            || (heartbeat(c, id, generation) == REBALANCE_IN_PROGRESS).then_some(()),
        );
        c.send(ApiKey::JoinGroup, 9, &join_request(id, session, "range"));
    };
    let joined = |c: &mut Client| {
        let ResponseKind::JoinGroup(r) = c.receive(ApiKey::JoinGroup, 9) else {
            unreachable!()
        };
        assert_eq!(r.error_code, 0);
        r
    };
    // Generation 2: a leads, b follows.
    let (mut a, a_id) = connect_and_join();
    assert_eq!(joined(&mut a).generation_id, 1);
    assert_eq!(sync(&mut a, &a_id, 1).error_code, 0);
    let (mut b, b_id) = connect_and_join();
    rejoin_when_told(&mut a, &a_id, 1);
    assert_eq!(joined(&mut a).leader.as_str(), a_id);
    assert_eq!(joined(&mut b).generation_id, 2);
    assert_eq!(sync(&mut a, &a_id, 2).error_code, 0);
    assert_eq!(sync(&mut b, &b_id, 2).error_code, 0);

    // c joins; a rejoins, then its client goes away before b rejoins (the pauses let the
    // node read each step first).
    let (mut c, _) = connect_and_join();
    rejoin_when_told(&mut a, &a_id, 2);
    std::thread::sleep(Duration::from_millis(200));
    drop(a);
    std::thread::sleep(Duration::from_millis(500));
    rejoin_when_told(&mut b, &b_id, 2);

    let for_b = joined(&mut b);
    assert_eq!(for_b.generation_id, 3);
    assert_eq!(
        for_b.leader.as_str(),
        b_id,
        "a member that is still there leads"
    );
    assert_eq!(
        for_b.members.len(),
        3,
        "a is still a member until its session ends"
    );
    assert_eq!(joined(&mut c).generation_id, 3);
}
