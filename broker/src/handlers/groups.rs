//! FindCoordinator and the classic group membership APIs: JoinGroup, SyncGroup, Heartbeat
//! and LeaveGroup. The rules live in [`crate::groups::group`]; this module decodes,
//! checks that this node coordinates, and waits where the protocol waits.

use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{
    FindCoordinatorRequest, FindCoordinatorResponse, HeartbeatRequest, HeartbeatResponse,
    JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, SyncGroupRequest,
    SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::details::{broker_id, str_bytes};
use crate::groups::{JoinOutcome, JoinRequest, Reply, SyncOutcome};
use crate::Broker;

/// Longest a JoinGroup or SyncGroup may wait for the rest of its group, past the member's
/// rebalance timeout; only a coordinator that stops coordinating leaves one waiting.
const WAIT_SLACK: Duration = Duration::from_secs(5);

/// Where a group's (key type 0) coordinator is: the controller group's leader.
fn coordinator_of(
    broker: &Broker,
    key_type: i8,
) -> Result<(i32, String, i32), (i16, &'static str)> {
    if key_type != 0 {
        return Err((
            ResponseError::InvalidRequest.code(),
            "Strand has no transaction coordinator: transactions are not supported",
        ));
    }
    let Some(leader) = broker.node.controller().replica.leadership().leader else {
        return Err((
            ResponseError::CoordinatorNotAvailable.code(),
            "the controller group has no leader yet",
        ));
    };
    let metadata = broker.node.controller().metadata();
    let Some(info) = metadata.brokers.get(&leader) else {
        return Err((
            ResponseError::CoordinatorNotAvailable.code(),
            "the coordinator has not registered its address yet",
        ));
    };
    Ok((broker_id(info.id).0, info.host.clone(), info.port as i32))
}

pub fn find_coordinator(
    broker: &Broker,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let answer = coordinator_of(broker, request.key_type);
    if version < 4 {
        return match answer {
            Ok((id, host, port)) => FindCoordinatorResponse::default()
                .with_node_id(id.into())
                .with_host(str_bytes(host))
                .with_port(port),
            Err((code, message)) => FindCoordinatorResponse::default()
                .with_error_code(code)
                .with_error_message(Some(str_bytes(message)))
                .with_node_id((-1).into())
                .with_port(-1),
        };
    }
    // v4 batched the lookups (KIP-699); all groups share one coordinator here.
    let coordinators = request
        .coordinator_keys
        .into_iter()
        .map(|key| {
            let c = Coordinator::default().with_key(key);
            match &answer {
                Ok((id, host, port)) => c
                    .with_node_id((*id).into())
                    .with_host(str_bytes(host.clone()))
                    .with_port(*port),
                Err((code, message)) => c
                    .with_error_code(*code)
                    .with_error_message(Some(str_bytes(*message)))
                    .with_node_id((-1).into())
                    .with_port(-1),
            }
        })
        .collect();
    FindCoordinatorResponse::default().with_coordinators(coordinators)
}

fn optional(s: &Option<StrBytes>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

fn millis(ms: i32) -> Duration {
    Duration::from_millis(ms.max(0) as u64)
}

/// Waits for a deferred answer; a dropped sender means the coordinator moved away.
async fn settle<T>(reply: Reply<T>, limit: Duration, lost: impl FnOnce() -> T) -> T {
    match reply {
        Reply::Now(answer) => answer,
        Reply::Later(rx) => match tokio::time::timeout(limit, rx).await {
            Ok(Ok(answer)) => answer,
            _ => lost(),
        },
    }
}

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

pub async fn join_group(
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
        Ok(mut groups) => groups.group(&request.group_id).join(join, Instant::now()),
        Err(code) => return fail(code),
    };
    let outcome = settle(reply, limit, || JoinOutcome {
        error: ResponseError::NotCoordinator.code(),
        generation: -1,
        member_id: member_id.clone(),
        ..JoinOutcome::default()
    })
    .await;
    join_response(outcome)
}

fn sync_response(outcome: SyncOutcome) -> SyncGroupResponse {
    SyncGroupResponse::default()
        .with_error_code(outcome.error)
        .with_protocol_type(outcome.protocol_type.map(str_bytes))
        .with_protocol_name(outcome.protocol_name.map(str_bytes))
        .with_assignment(outcome.assignment)
}

pub async fn sync_group(broker: &Broker, request: SyncGroupRequest) -> SyncGroupResponse {
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

pub fn heartbeat(broker: &Broker, request: HeartbeatRequest) -> HeartbeatResponse {
    let error = match broker.groups.lock(broker) {
        Ok(mut groups) => match groups.existing(&request.group_id) {
            Some(group) => group.heartbeat(
                &request.member_id,
                optional(&request.group_instance_id),
                request.generation_id,
                Instant::now(),
            ),
            None => ResponseError::UnknownMemberId.code(),
        },
        Err(code) => code,
    };
    HeartbeatResponse::default().with_error_code(error)
}

pub fn leave_group(
    broker: &Broker,
    request: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
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
