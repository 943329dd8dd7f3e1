//! DescribeGroups, as `kafka-consumer-groups --describe` and AdminClient use it. A group
//! that only has committed offsets (its members gone, or a coordinator that took over since)
//! is described as Empty, as Kafka does.

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use kafka_protocol::ResponseError;
use strand_protocol::api_versions::ApiRange;

use super::details::{str_bytes, OPERATIONS_OMITTED};
use crate::groups::GroupState;
use crate::Broker;

/// v6 answers an unknown group with GROUP_ID_NOT_FOUND (KIP-1043).
pub const VERSIONS: ApiRange = ApiRange::new(ApiKey::DescribeGroups, 0, 6);

pub fn handle(
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
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(str_bytes(format!("group {id:?} not found")))),
                None => described.with_group_state(str_bytes("Dead")),
            }
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}
