//! LeaveGroup: members leave a classic group, one at a time before v3 and in batches since.

use std::time::Instant;

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};
use kafka_protocol::ResponseError;
use strand_protocol::api_versions::ApiRange;

use super::details::optional;
use super::details::str_bytes;
use crate::Broker;

/// v3 leaves in batches, by member id or instance id (KIP-345).
pub const VERSIONS: ApiRange = ApiRange::new(ApiKey::LeaveGroup, 0, 5);

pub fn handle(broker: &Broker, request: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    // v3 (KIP-345) leaves in batches, by member id or instance id.
    let leaving: Vec<(String, Option<String>)> = if version >= 3 {
        request
            .members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    optional(&m.group_instance_id).map(String::from),
                )
            })
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    let mut groups = match broker.groups.lock(broker) {
        Ok(groups) => groups,
        Err(code) => return LeaveGroupResponse::default().with_error_code(code),
    };
    let now = Instant::now();
    let results: Vec<(String, Option<String>, i16)> = leaving
        .into_iter()
        .map(|(member, instance)| {
            let error = match groups.existing(&request.group_id) {
                Some(group) => group.leave(&member, instance.as_deref(), now),
                None => ResponseError::UnknownMemberId.code(),
            };
            (member, instance, error)
        })
        .collect();
    if version >= 3 {
        LeaveGroupResponse::default().with_members(
            results
                .into_iter()
                .map(|(member, instance, error)| {
                    MemberResponse::default()
                        .with_member_id(str_bytes(member))
                        .with_group_instance_id(instance.map(str_bytes))
                        .with_error_code(error)
                })
                .collect(),
        )
    } else {
        LeaveGroupResponse::default().with_error_code(results[0].2)
    }
}
