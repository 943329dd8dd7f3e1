//! Answers for APIs Strand does not implement yet but clients commonly send: each gets
//! UNSUPPORTED_VERSION in its own response shape, so the client reports a clear error
//! instead of seeing a dropped connection. Anything else closes the connection.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::{
    delete_groups_response::DeletableGroupResult, describe_groups_response::DescribedGroup,
    DeleteGroupsResponse, DescribeGroupsResponse, FindCoordinatorResponse, HeartbeatResponse,
    JoinGroupResponse, LeaveGroupResponse, ListGroupsResponse, OffsetCommitResponse,
    OffsetFetchResponse, RequestKind, ResponseKind, SyncGroupResponse,
};
use kafka_protocol::ResponseError;

use super::details::str_bytes;

const UNSUPPORTED: i16 = ResponseError::UnsupportedVersion.code();

pub fn respond(request: RequestKind, version: i16) -> Option<ResponseKind> {
    Some(match request {
        RequestKind::FindCoordinator(r) => {
            let message = Some(str_bytes("consumer groups are not supported yet"));
            // v4 batched the lookups (KIP-699): one answer per key instead of one in all.
            ResponseKind::FindCoordinator(if version >= 4 {
                FindCoordinatorResponse::default().with_coordinators(
                    r.coordinator_keys
                        .into_iter()
                        .map(|key| {
                            Coordinator::default()
                                .with_key(key)
                                .with_node_id((-1).into())
                                .with_port(-1)
                                .with_error_code(UNSUPPORTED)
                                .with_error_message(message.clone())
                        })
                        .collect(),
                )
            } else {
                FindCoordinatorResponse::default()
                    .with_error_code(UNSUPPORTED)
                    .with_error_message(message)
                    .with_node_id((-1).into())
                    .with_port(-1)
            })
        }
        RequestKind::JoinGroup(_) => ResponseKind::JoinGroup(
            JoinGroupResponse::default()
                .with_error_code(UNSUPPORTED)
                .with_generation_id(-1),
        ),
        RequestKind::SyncGroup(_) => {
            ResponseKind::SyncGroup(SyncGroupResponse::default().with_error_code(UNSUPPORTED))
        }
        RequestKind::Heartbeat(_) => {
            ResponseKind::Heartbeat(HeartbeatResponse::default().with_error_code(UNSUPPORTED))
        }
        RequestKind::LeaveGroup(_) => {
            ResponseKind::LeaveGroup(LeaveGroupResponse::default().with_error_code(UNSUPPORTED))
        }
        RequestKind::OffsetCommit(r) => ResponseKind::OffsetCommit(
            OffsetCommitResponse::default().with_topics(
                r.topics
                    .into_iter()
                    .map(|t| {
                        OffsetCommitResponseTopic::default()
                            .with_name(t.name)
                            .with_topic_id(t.topic_id)
                            .with_partitions(
                                t.partitions
                                    .iter()
                                    .map(|p| {
                                        OffsetCommitResponsePartition::default()
                                            .with_partition_index(p.partition_index)
                                            .with_error_code(UNSUPPORTED)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            ),
        ),
        // v8 asks for several groups at once; v2 added a top-level error; v1 can only
        // carry errors per partition.
        RequestKind::OffsetFetch(r) if version >= 8 => ResponseKind::OffsetFetch(
            OffsetFetchResponse::default().with_groups(
                r.groups
                    .into_iter()
                    .map(|g| {
                        OffsetFetchResponseGroup::default()
                            .with_group_id(g.group_id)
                            .with_error_code(UNSUPPORTED)
                    })
                    .collect(),
            ),
        ),
        RequestKind::OffsetFetch(r) => {
            let topics = r
                .topics
                .unwrap_or_default()
                .into_iter()
                .map(|t| {
                    OffsetFetchResponseTopic::default()
                        .with_name(t.name)
                        .with_partitions(
                            t.partition_indexes
                                .into_iter()
                                .map(|i| {
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(i)
                                        .with_committed_offset(-1)
                                        .with_error_code(UNSUPPORTED)
                                })
                                .collect(),
                        )
                })
                .collect();
            let response = OffsetFetchResponse::default().with_topics(topics);
            ResponseKind::OffsetFetch(if version >= 2 {
                response.with_error_code(UNSUPPORTED)
            } else {
                response
            })
        }
        RequestKind::DescribeGroups(r) => ResponseKind::DescribeGroups(
            DescribeGroupsResponse::default().with_groups(
                r.groups
                    .into_iter()
                    .map(|g| {
                        DescribedGroup::default()
                            .with_group_id(g)
                            .with_error_code(UNSUPPORTED)
                    })
                    .collect(),
            ),
        ),
        RequestKind::ListGroups(_) => {
            ResponseKind::ListGroups(ListGroupsResponse::default().with_error_code(UNSUPPORTED))
        }
        RequestKind::DeleteGroups(r) => ResponseKind::DeleteGroups(
            DeleteGroupsResponse::default().with_results(
                r.groups_names
                    .into_iter()
                    .map(|g| {
                        DeletableGroupResult::default()
                            .with_group_id(g)
                            .with_error_code(UNSUPPORTED)
                    })
                    .collect(),
            ),
        ),
        _ => return None,
    })
}
