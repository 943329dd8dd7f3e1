//! Seeing and removing groups: DescribeGroups, ListGroups and DeleteGroups, as
//! `kafka-consumer-groups` and AdminClient use them.
//!
//! A group that only has committed offsets (its members gone, or a coordinator that took
//! over since) is listed and described as Empty, as Kafka does.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    ListGroupsRequest, ListGroupsResponse,
};
use kafka_protocol::ResponseError;
use strand_raft::ControllerCommand;

use super::details::str_bytes;
use crate::groups::{self, GroupState};
use crate::Broker;

/// Kafka's "authorized operations not requested" marker.
const OPERATIONS_OMITTED: i32 = i32::MIN;

pub fn describe(
    broker: &Broker,
    request: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    let mut locked = broker.groups.lock(broker);
    let groups = request
        .groups
        .into_iter()
        .map(|id| {
            let described = DescribedGroup::default()
                .with_group_id(id.clone())
                .with_authorized_operations(OPERATIONS_OMITTED);
            let groups = match &mut locked {
                Ok(groups) => groups,
                Err(code) => return described.with_error_code(*code),
            };
            match groups.existing(&id) {
                Some(group) => described
                    .with_group_state(str_bytes(group.state().name()))
                    .with_protocol_type(str_bytes(group.protocol_type().unwrap_or_default()))
                    .with_protocol_data(str_bytes(group.protocol().unwrap_or_default()))
                    .with_members(
                        group
                            .members()
                            .into_iter()
                            .map(|m| {
                                DescribedGroupMember::default()
                                    .with_member_id(str_bytes(m.member_id))
                                    .with_group_instance_id(m.instance_id.map(str_bytes))
                                    .with_client_id(str_bytes(m.client_id))
                                    .with_client_host(str_bytes(m.client_host))
                                    .with_member_metadata(m.metadata)
                                    .with_member_assignment(m.assignment)
                            })
                            .collect(),
                    ),
                None if broker.node.controller().offsets().contains_key(id.as_str()) => described
                    .with_group_state(str_bytes(GroupState::Empty.name()))
                    .with_protocol_type(str_bytes("consumer")),
                // v6 says so with an error; earlier versions describe a Dead group.
                None if version >= 6 => described
                    .with_group_state(str_bytes("Dead"))
                    .with_error_code(ResponseError::GroupIdNotFound.code()),
                None => described.with_group_state(str_bytes("Dead")),
            }
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

pub fn list(broker: &Broker, request: ListGroupsRequest) -> ListGroupsResponse {
    // AdminClient asks every broker and merges; only the coordinator has groups to list.
    let locked = match broker.groups.lock(broker) {
        Ok(locked) => locked,
        Err(code) if code == ResponseError::NotCoordinator.code() => {
            return ListGroupsResponse::default()
        }
        Err(code) => return ListGroupsResponse::default().with_error_code(code),
    };
    let mut listed: Vec<(String, String, GroupState)> = locked
        .groups()
        .map(|(id, g)| {
            (
                id.clone(),
                g.protocol_type().unwrap_or_default().to_string(),
                g.state(),
            )
        })
        .collect();
    for id in broker.node.controller().offsets().keys() {
        if !listed.iter().any(|(known, _, _)| known == id) {
            listed.push((id.clone(), String::new(), GroupState::Empty));
        }
    }
    drop(locked);
    let wanted = |filter: &[kafka_protocol::protocol::StrBytes], value: &str| {
        filter.is_empty() || filter.iter().any(|f| f.eq_ignore_ascii_case(value))
    };
    let groups = listed
        .into_iter()
        .filter(|(_, _, state)| wanted(&request.states_filter, state.name()))
        .filter(|_| wanted(&request.types_filter, "classic"))
        .map(|(id, protocol_type, state)| {
            ListedGroup::default()
                .with_group_id(str_bytes(id).into())
                .with_protocol_type(str_bytes(protocol_type))
                .with_group_state(str_bytes(state.name()))
                .with_group_type(str_bytes("classic"))
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}

pub async fn delete(broker: &Broker, request: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut results = Vec::new();
    for id in request.groups_names {
        let checked = match broker.groups.lock(broker) {
            Err(code) => Err(code),
            Ok(mut groups) => {
                let has_offsets = broker.node.controller().offsets().contains_key(id.as_str());
                match groups.existing(&id) {
                    Some(_) => Err(ResponseError::NonEmptyGroup.code()),
                    None if has_offsets => Ok(()),
                    None => Err(ResponseError::GroupIdNotFound.code()),
                }
            }
        };
        let error = match checked {
            Err(code) => code,
            Ok(()) => {
                let command = ControllerCommand::DeleteOffsets {
                    group: id.to_string(),
                    partitions: None,
                };
                groups::propose_offsets(broker, command)
                    .await
                    .err()
                    .unwrap_or(0)
            }
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(error),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}
