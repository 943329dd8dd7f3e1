//! JoinGroup: a member joins a classic group and waits for the rest of it. The rules live in
//! [`crate::groups::group`]; this module decodes, checks that this node coordinates, and
//! waits where the protocol waits.

use std::time::Instant;

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use kafka_protocol::ResponseError;
use strand_protocol::api_versions::ApiRange;

use super::details::str_bytes;
use super::details::{millis, optional, settle, WAIT_SLACK};
use crate::groups::{JoinOutcome, JoinRequest};
use crate::metrics::Refused;
use crate::Broker;

/// v4 requires a known member id (KIP-394); v5 adds static membership (KIP-345).
pub const VERSIONS: ApiRange = ApiRange::new(ApiKey::JoinGroup, 0, 9);

fn join_response(outcome: JoinOutcome) -> JoinGroupResponse {
    JoinGroupResponse::default()
        .with_error_code(outcome.error)
        .with_generation_id(outcome.generation)
        .with_protocol_type(outcome.protocol_type.map(str_bytes))
        .with_protocol_name(outcome.protocol_name.map(str_bytes))
        .with_leader(str_bytes(outcome.leader))
        .with_member_id(str_bytes(outcome.member_id))
        .with_members(
            outcome
                .members
                .into_iter()
                .map(|(id, instance, metadata)| {
                    JoinGroupResponseMember::default()
                        .with_member_id(str_bytes(id))
                        .with_group_instance_id(instance.map(str_bytes))
                        .with_metadata(metadata)
                })
                .collect(),
        )
}

pub async fn handle(
    broker: &Broker,
    request: JoinGroupRequest,
    version: i16,
    client_id: String,
    client_host: String,
) -> JoinGroupResponse {
    let member_id = request.member_id.to_string();
    let fail = |code: i16| {
        join_response(JoinOutcome {
            error: code,
            generation: -1,
            member_id: member_id.clone(),
            ..JoinOutcome::default()
        })
    };
    if request.group_id.is_empty() {
        return fail(ResponseError::InvalidGroupId.code());
    }
    // v0 had no rebalance timeout: it was the session timeout.
    let rebalance_timeout = if version >= 1 {
        request.rebalance_timeout_ms
    } else {
        request.session_timeout_ms
    };
    let join = JoinRequest {
        member_id: member_id.clone(),
        instance_id: optional(&request.group_instance_id).map(String::from),
        client_id,
        client_host,
        session_timeout: millis(request.session_timeout_ms),
        rebalance_timeout: millis(rebalance_timeout),
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
        require_known_member_id: version >= 4,
    };
    let limit = join.rebalance_timeout + WAIT_SLACK;
    let reply = match broker.groups.lock(broker) {
        Ok(mut groups) => {
            if !groups.admits(&request.group_id, &broker.node.controller().offsets()) {
                broker.metrics.refused(Refused::MaxGroups);
                return fail(ResponseError::PolicyViolation.code());
            }
            groups.group(&request.group_id).join(join, Instant::now())
        }
        Err(code) => return fail(code),
    };
    let outcome = settle(reply, limit, || JoinOutcome {
        error: ResponseError::NotCoordinator.code(),
        generation: -1,
        member_id: member_id.clone(),
        ..JoinOutcome::default()
    })
    .await;
    if outcome.error == ResponseError::GroupMaxSizeReached.code() {
        broker.metrics.refused(Refused::GroupMaxSize);
    }
    join_response(outcome)
}
