//! FindCoordinator: where a group's coordinator is. Every group is coordinated by the
//! controller group's leader; transaction coordinators (key type 1) do not exist yet.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::{FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::ResponseError;
use strand_protocol::api_versions::ApiRange;

use super::details::{broker_id, str_bytes};
use crate::Broker;

/// v4 batches the lookups (KIP-699).
pub const VERSIONS: ApiRange = ApiRange::new(ApiKey::FindCoordinator, 0, 6);

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

pub fn handle(
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
