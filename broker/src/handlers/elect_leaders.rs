//! ElectLeaders: moves partitions' leadership to their preferred replica (the first one
//! listed), as `kafka-leader-election --election-type PREFERRED` asks; see
//! `raft/src/handover.rs` for how. Raft has no unclean elections: asked for one, a
//! partition with a leader needs none, and one without has no eligible leader.

use std::time::{Duration, Instant};

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};
use kafka_protocol::ResponseError;
use strand_protocol::api_versions::ApiRange;
use strand_raft::{HandoverError, NodeId, RaftGroupId};

use super::details::{str_bytes, topic_name};
use crate::Broker;

pub const VERSIONS: ApiRange = ApiRange::new(ApiKey::ElectLeaders, 0, 2);

/// Kafka's election types.
const UNCLEAN: i8 = 1;
/// The longest an ElectLeaders request waits for its elections.
const MAX_WAIT: Duration = Duration::from_secs(60);

pub async fn handle(
    broker: &Broker,
    request: ElectLeadersRequest,
    _version: i16,
) -> ElectLeadersResponse {
    let metadata = broker.node.controller().metadata();
    let wanted: Vec<(TopicName, Vec<i32>)> = match request.topic_partitions {
        Some(topics) => topics
            .into_iter()
            .map(|t| (t.topic, t.partitions))
            .collect(),
        None => metadata
            .topics
            .values()
            .map(|t| {
                (
                    topic_name(&t.name),
                    (0..t.partitions.len() as i32).collect(),
                )
            })
            .collect(),
    };
    let wait = Duration::from_millis(request.timeout_ms.max(0) as u64).min(MAX_WAIT);
    let deadline = Instant::now() + wait;

    // Start every election first, then wait for them together.
    let mut answers: Vec<(TopicName, Vec<(i32, Answer)>)> = Vec::new();
    for (topic, partitions) in wanted {
        let info = metadata.topics.get(topic.0.as_str());
        let mut results = Vec::new();
        for index in partitions {
            let partition = info.and_then(|t| {
                usize::try_from(index)
                    .ok()
                    .and_then(|i| t.partitions.get(i))
            });
            let answer = match partition {
                None => Answer::Failed(ResponseError::UnknownTopicOrPartition, None),
                Some(p) if request.election_type == UNCLEAN => {
                    match broker.node.leader_of(p.group) {
                        Some(_) => Answer::Failed(ResponseError::ElectionNotNeeded, None),
                        None => Answer::Failed(ResponseError::EligibleLeadersNotAvailable, None),
                    }
                }
                Some(p) => {
                    let preferred = p.replicas[0];
                    match broker.node.elect_preferred(p.group, preferred).await {
                        Ok(()) => Answer::Started(p.group, preferred),
                        Err(e) => {
                            let code = match e {
                                HandoverError::NotNeeded(_) => ResponseError::ElectionNotNeeded,
                                HandoverError::NotInSync(_) => {
                                    ResponseError::PreferredLeaderNotAvailable
                                }
                                HandoverError::NoLeader | HandoverError::Unavailable(_) => {
                                    ResponseError::LeaderNotAvailable
                                }
                            };
                            Answer::Failed(code, Some(e.to_string()))
                        }
                    }
                }
            };
            results.push((index, answer));
        }
        answers.push((topic, results));
    }

    let mut replica_election_results = Vec::new();
    for (topic, results) in answers {
        let mut partition_result = Vec::new();
        for (index, answer) in results {
            let (code, message) = match answer {
                Answer::Started(group, preferred) => {
                    if elected(broker, group, preferred, deadline).await {
                        (0, None)
                    } else {
                        (
                            ResponseError::RequestTimedOut.code(),
                            Some(format!("node {preferred} did not take over in time")),
                        )
                    }
                }
                Answer::Failed(error, message) => (error.code(), message),
            };
            partition_result.push(
                PartitionResult::default()
                    .with_partition_id(index)
                    .with_error_code(code)
                    .with_error_message(message.map(str_bytes)),
            );
        }
        replica_election_results.push(
            ReplicaElectionResult::default()
                .with_topic(topic)
                .with_partition_result(partition_result),
        );
    }
    ElectLeadersResponse::default().with_replica_election_results(replica_election_results)
}

enum Answer {
    /// The hand-over to this node has begun.
    Started(RaftGroupId, NodeId),
    Failed(ResponseError, Option<String>),
}

/// Waits until this node knows `preferred` leads `group`, or the deadline passes.
async fn elected(
    broker: &Broker,
    group: RaftGroupId,
    preferred: NodeId,
    deadline: Instant,
) -> bool {
    loop {
        if broker
            .node
            .leader_of(group)
            .is_some_and(|l| l.node == preferred)
        {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
