//! Plumbing shared by the handlers.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::{BrokerId, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use strand_raft::{
    BrokerInfo, Command, ControllerCommand, Leadership, PartitionInfo, Response, CONTROLLER_GROUP,
};

use crate::groups::Reply;
use crate::{topics, Broker};

pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

pub fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

pub fn broker_id(id: u64) -> BrokerId {
    BrokerId(i32::try_from(id).unwrap_or(-1))
}

/// The error code and message a per-resource result carries: 0 and none on success.
pub fn error_fields(result: Result<(), (ResponseError, String)>) -> (i16, Option<StrBytes>) {
    match result {
        Ok(()) => (0, None),
        Err((error, message)) => (error.code(), Some(str_bytes(message))),
    }
}

/// The Kafka leader epoch of a group's current term.
pub fn leader_epoch(leadership: &Leadership) -> i32 {
    i32::try_from(leadership.term).unwrap_or(i32::MAX)
}

/// KIP-320 fencing: a client that names a leader epoch must name the current one. Older
/// epochs are stale clients (FENCED_LEADER_EPOCH), newer ones mean this node has not yet
/// learnt of an election (UNKNOWN_LEADER_EPOCH). -1 skips the check.
pub fn check_leader_epoch(requested: i32, leadership: &Leadership) -> Result<(), ResponseError> {
    let current = leader_epoch(leadership);
    match requested {
        -1 => Ok(()),
        e if e < current => Err(ResponseError::FencedLeaderEpoch),
        e if e > current => Err(ResponseError::UnknownLeaderEpoch),
        _ => Ok(()),
    }
}

/// Kafka's config resource types (DescribeConfigs, AlterConfigs, IncrementalAlterConfigs).
pub const TOPIC: i8 = 2;
pub const BROKER: i8 = 4;

/// Longest a JoinGroup or SyncGroup may wait for the rest of its group, past the member's
/// rebalance timeout; only a coordinator that stops coordinating leaves one waiting.
pub const WAIT_SLACK: Duration = Duration::from_secs(5);
/// A nullable string field, with the empty string read as absent.
pub fn optional(s: &Option<StrBytes>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

/// A client's millisecond field as a duration; negatives are zero.
pub fn millis(ms: i32) -> Duration {
    Duration::from_millis(ms.max(0) as u64)
}

/// Waits for a deferred answer; a dropped sender means the coordinator moved away.
pub async fn settle<T>(reply: Reply<T>, limit: Duration, lost: impl FnOnce() -> T) -> T {
    match reply {
        Reply::Now(answer) => answer,
        Reply::Later(rx) => match tokio::time::timeout(limit, rx).await {
            Ok(Ok(answer)) => answer,
            _ => lost(),
        },
    }
}

/// The registered brokers among `leaders` (the ids in a response's `current_leader`
/// fields), each once, so that clients can reach a new leader without asking for metadata
/// first (KIP-951).
pub fn leader_brokers(broker: &Broker, leaders: impl Iterator<Item = i32>) -> Vec<BrokerInfo> {
    let mut ids: Vec<i32> = leaders.filter(|id| *id >= 0).collect();
    ids.sort_unstable();
    ids.dedup();
    let metadata = broker.node.controller().metadata();
    ids.into_iter()
        .filter_map(|id| metadata.brokers.get(&(id as u64)).cloned())
        .collect()
}

/// A partition's leader as clients see it.
pub struct Led {
    /// LEADER_NOT_AVAILABLE while it has none.
    pub error_code: i16,
    pub leader: BrokerId,
    /// The Raft term.
    pub epoch: i32,
    pub in_sync: Vec<BrokerId>,
}

pub fn leader_and_isr(broker: &Broker, info: &PartitionInfo) -> Led {
    let Some(leader) = broker.node.leader_of(info.group) else {
        return Led {
            error_code: ResponseError::LeaderNotAvailable.code(),
            leader: BrokerId(-1),
            epoch: -1,
            in_sync: Vec::new(),
        };
    };
    let in_sync = if leader.in_sync.is_empty() {
        vec![leader.node]
    } else {
        leader.in_sync.clone()
    };
    Led {
        error_code: 0,
        leader: broker_id(leader.node),
        epoch: i32::try_from(leader.term).unwrap_or(i32::MAX),
        in_sync: in_sync.into_iter().map(broker_id).collect(),
    }
}

/// Kafka's "authorized operations not requested" marker.
pub const OPERATIONS_OMITTED: i32 = i32::MIN;

/// Checks a topic's whole new set of configs and, unless `validate_only`, replaces its
/// stored set with them through the controller group.
pub async fn store_topic_configs(
    broker: &Broker,
    name: String,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<(), (ResponseError, String)> {
    for (key, value) in &configs {
        if let Some(problem) = topics::config_problem(key, value) {
            return Err((ResponseError::InvalidConfig, problem));
        }
    }
    if validate_only {
        return Ok(());
    }
    let command = Command::Controller(ControllerCommand::SetTopicConfigs { name, configs });
    match broker.node.propose(CONTROLLER_GROUP, command).await {
        Ok(Response::Done) => Ok(()),
        Ok(other) => Err((
            ResponseError::UnknownTopicOrPartition,
            format!("the topic changed meanwhile: {other:?}"),
        )),
        Err(e) => Err((ResponseError::RequestTimedOut, e.to_string())),
    }
}

/// The refusal of a change to broker config `name`.
pub fn static_broker_config(name: &str) -> (ResponseError, String) {
    (
        ResponseError::InvalidConfig,
        format!(
            "broker config '{name}' cannot change at run time: set it with strand's flags or \
             config file and restart the node"
        ),
    )
}

/// A broker config resource names this node, or none (Kafka's tools send either).
pub fn check_broker_name(broker: &Broker, name: &str) -> Result<(), (ResponseError, String)> {
    if name.is_empty() || name == broker.node.id().to_string() {
        return Ok(());
    }
    Err((
        ResponseError::InvalidRequest,
        format!("broker '{name}' is not this node: send its configs to that broker"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_epochs_are_fenced_both_ways() {
        let l = Leadership {
            leader: Some(1),
            term: 5,
            quorum: true,
            serving: true,
        };
        assert_eq!(check_leader_epoch(-1, &l), Ok(()));
        assert_eq!(check_leader_epoch(5, &l), Ok(()));
        assert_eq!(
            check_leader_epoch(4, &l),
            Err(ResponseError::FencedLeaderEpoch)
        );
        assert_eq!(
            check_leader_epoch(6, &l),
            Err(ResponseError::UnknownLeaderEpoch)
        );
    }
}
