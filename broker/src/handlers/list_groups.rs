//! ListGroups: every group this coordinator knows, with groups that only have committed
//! offsets listed as Empty, as Kafka does.

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::{ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::ResponseError;
use strand_protocol::api_versions::ApiRange;

use super::details::str_bytes;
use crate::groups::GroupState;
use crate::Broker;

/// v4 filters by state (KIP-518).
pub const VERSIONS: ApiRange = ApiRange::new(ApiKey::ListGroups, 0, 5);

pub fn handle(broker: &Broker, request: ListGroupsRequest) -> ListGroupsResponse {
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
