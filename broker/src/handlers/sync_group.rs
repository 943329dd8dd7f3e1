//! SyncGroup: the group's leader hands out assignments and every member waits for its own.

use std::time::Instant;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::ResponseError;
use strand_protocol::api_versions::ApiRange;

use super::details::str_bytes;
use super::details::{optional, settle, WAIT_SLACK};
use crate::groups::SyncOutcome;
use crate::Broker;

pub const VERSIONS: ApiRange = ApiRange::new(ApiKey::SyncGroup, 0, 5);

fn sync_response(outcome: SyncOutcome) -> SyncGroupResponse {
    SyncGroupResponse::default()
        .with_error_code(outcome.error)
        .with_protocol_type(outcome.protocol_type.map(str_bytes))
        .with_protocol_name(outcome.protocol_name.map(str_bytes))
        .with_assignment(outcome.assignment)
}

pub async fn handle(broker: &Broker, request: SyncGroupRequest) -> SyncGroupResponse {
    let fail = |error| {
        sync_response(SyncOutcome {
            error,
            ..SyncOutcome::default()
        })
    };
    let assignments: Vec<(String, Bytes)> = request
        .assignments
        .into_iter()
        .map(|a| (a.member_id.to_string(), a.assignment))
        .collect();
    let (reply, limit) = match broker.groups.lock(broker) {
        Ok(mut groups) => {
            let Some(group) = groups.existing(&request.group_id) else {
                return fail(ResponseError::UnknownMemberId.code());
            };
            let reply = group.sync(
                &request.member_id,
                optional(&request.group_instance_id),
                request.generation_id,
                (
                    optional(&request.protocol_type),
                    optional(&request.protocol_name),
                ),
                assignments,
                Instant::now(),
            );
            (reply, broker.config.group_max_session_timeout + WAIT_SLACK)
        }
        Err(code) => return fail(code),
    };
    sync_response(
        settle(reply, limit, || SyncOutcome {
            error: ResponseError::NotCoordinator.code(),
            ..SyncOutcome::default()
        })
        .await,
    )
}
