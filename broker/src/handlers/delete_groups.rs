//! DeleteGroups: removes empty groups and their committed offsets through the controller
//! group.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};
use kafka_protocol::ResponseError;
use strand_protocol::api_versions::ApiRange;
use strand_raft::ControllerCommand;

use crate::groups;
use crate::Broker;

pub const VERSIONS: ApiRange = ApiRange::new(ApiKey::DeleteGroups, 0, 2);

pub async fn handle(broker: &Broker, request: DeleteGroupsRequest) -> DeleteGroupsResponse {
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
