//! UnregisterBroker: takes a node out of the cluster once it holds no replicas, as
//! `kafka-cluster unregister --id N` asks. Its partitions must be moved away first
//! (AlterPartitionReassignments); the node then leaves the controller group and can be
//! shut down. Asking again for a node that left the broker list but not yet the controller
//! group (the first request timed out in between) completes its removal.

use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::{UnregisterBrokerRequest, UnregisterBrokerResponse};
use kafka_protocol::ResponseError;
use strand_protocol::api_versions::ApiRange;
use strand_raft::{
    Command, ControllerCommand, ControllerMembership, NodeId, Rejection, Response, CONTROLLER_GROUP,
};

use super::details::str_bytes;
use crate::Broker;

pub const VERSIONS: ApiRange = ApiRange::new(ApiKey::UnregisterBroker, 0, 0);

pub async fn handle(broker: &Broker, request: UnregisterBrokerRequest) -> UnregisterBrokerResponse {
    let answer = |error: ResponseError, message: String| {
        UnregisterBrokerResponse::default()
            .with_error_code(error.code())
            .with_error_message(Some(str_bytes(message)))
    };
    let Ok(id) = NodeId::try_from(request.broker_id.0) else {
        return answer(
            ResponseError::BrokerIdNotRegistered,
            format!("{} is not a broker id", request.broker_id.0),
        );
    };
    let command = Command::Controller(ControllerCommand::UnregisterBroker { id });
    match broker.node.propose(CONTROLLER_GROUP, command).await {
        Ok(Response::Done) => {}
        // Unregistered, but still in the controller group: an earlier unregister timed out
        // between its two steps. Finish it.
        Ok(Response::Rejected(Rejection::UnknownBroker(_)))
            if broker.node.controller().replica.has_member(id) => {}
        Ok(Response::Rejected(Rejection::UnknownBroker(_))) => {
            return answer(
                ResponseError::BrokerIdNotRegistered,
                format!("broker {id} is not registered"),
            )
        }
        Ok(Response::Rejected(why @ Rejection::BrokerInUse(..))) => {
            return answer(
                ResponseError::InvalidRequest,
                format!("{why} (kafka-reassign-partitions)"),
            )
        }
        Ok(other) => {
            return answer(
                ResponseError::UnknownServerError,
                format!("unexpected result {other:?}"),
            )
        }
        Err(e) => return answer(ResponseError::RequestTimedOut, e.to_string()),
    }
    match broker
        .node
        .change_controller_membership(ControllerMembership::Remove { id })
        .await
    {
        Ok(()) => {
            tracing::info!(node = id, "broker unregistered");
            UnregisterBrokerResponse::default()
        }
        Err(e) => answer(
            ResponseError::RequestTimedOut,
            format!("broker {id} is unregistered but still in the controller group: {e}"),
        ),
    }
}
