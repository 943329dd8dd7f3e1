//! Heartbeat: a classic group member says it is alive and learns of a rebalance.

use std::time::Instant;

use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};
use kafka_protocol::ResponseError;
use strand_protocol::api_versions::ApiRange;

use super::details::optional;
use crate::Broker;

pub const VERSIONS: ApiRange = ApiRange::new(ApiKey::Heartbeat, 0, 4);

pub fn handle(broker: &Broker, request: HeartbeatRequest) -> HeartbeatResponse {
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
