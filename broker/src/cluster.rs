//! Topic creation and deletion through the controller group, broker registration, and
//! the loop that keeps this node's partition replicas in line with the metadata.
//!
//! Decisions are made here, by the proposer, and carried in the command (replica
//! placement, topic id), so applying the command is deterministic on every replica.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;
use strand_raft::{
    BrokerInfo, ClusterMetadata, Command, ControllerCommand, NodeId, ProposeError, RaftNode,
    Rejection, Response, TopicInfo, CONTROLLER_GROUP,
};

use crate::metrics::Refused;
use crate::topics;
use crate::Broker;

/// A topic to create, as a client asked for it (before defaults).
#[derive(Debug, Clone)]
pub struct TopicSpec {
    pub name: String,
    /// -1 for the broker default.
    pub partitions: i32,
    /// -1 for the broker default.
    pub replication_factor: i16,
    /// Explicit replicas per partition, if the client chose them.
    pub assignments: Option<Vec<Vec<NodeId>>>,
    pub configs: BTreeMap<String, String>,
}

impl TopicSpec {
    /// A topic with every setting at its default, as auto-creation makes them.
    pub fn with_defaults(name: &str) -> TopicSpec {
        TopicSpec {
            name: name.to_string(),
            partitions: -1,
            replication_factor: -1,
            assignments: None,
            configs: BTreeMap::new(),
        }
    }
}

/// Why a topic operation failed; each maps to a Kafka error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("{0}")]
    InvalidName(&'static str),
    #[error("topic '{0}' already exists")]
    Exists(String),
    #[error("topic '{0}' does not exist")]
    Unknown(String),
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("{0}")]
    InvalidReplicationFactor(String),
    #[error("{0}")]
    InvalidAssignment(String),
    #[error("{0}")]
    InvalidConfig(String),
    #[error("{0}")]
    PolicyViolation(String),
    #[error("this broker is not the controller")]
    NotController,
    #[error("the controller is unavailable: {0}")]
    Unavailable(String),
}

impl TopicError {
    pub fn error_code(&self) -> i16 {
        match self {
            TopicError::InvalidName(_) => ResponseError::InvalidTopicException,
            TopicError::Exists(_) => ResponseError::TopicAlreadyExists,
            TopicError::Unknown(_) => ResponseError::UnknownTopicOrPartition,
            TopicError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
            TopicError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
            TopicError::InvalidAssignment(_) => ResponseError::InvalidReplicaAssignment,
            TopicError::InvalidConfig(_) => ResponseError::InvalidConfig,
            TopicError::PolicyViolation(_) => ResponseError::PolicyViolation,
            TopicError::NotController => ResponseError::NotController,
            TopicError::Unavailable(_) => ResponseError::RequestTimedOut,
        }
        .code()
    }
}

fn from_propose(e: ProposeError) -> TopicError {
    match e {
        ProposeError::NotLeader { .. } => TopicError::NotController,
        ProposeError::Unavailable(reason) => TopicError::Unavailable(reason),
    }
}

/// Replica placement: partition `i` starts at broker `start + i` and takes the next
/// `replication_factor` brokers, so leaders and replicas spread evenly.
pub fn place_replicas(
    partitions: usize,
    replication_factor: usize,
    brokers: &[NodeId],
    start: usize,
) -> Vec<Vec<NodeId>> {
    (0..partitions)
        .map(|i| {
            (0..replication_factor)
                .map(|j| brokers[(start + i + j) % brokers.len()])
                .collect()
        })
        .collect()
}

/// Checks a spec against the cluster and fills in defaults, returning the replicas of
/// each partition.
fn plan(
    broker: &Broker,
    spec: &TopicSpec,
    metadata: &ClusterMetadata,
) -> Result<Vec<Vec<NodeId>>, TopicError> {
    if metadata.topics.contains_key(&spec.name) || spec.name == topics::CONSUMER_OFFSETS {
        return Err(TopicError::Exists(spec.name.clone()));
    }
    if let Some(problem) = topics::name_problem(&spec.name) {
        return Err(TopicError::InvalidName(problem));
    }
    for (key, value) in &spec.configs {
        if let Some(problem) = topics::config_problem(key, value) {
            return Err(TopicError::InvalidConfig(problem));
        }
    }
    let brokers: Vec<NodeId> = metadata.brokers.keys().copied().collect();
    if let Some(assignments) = &spec.assignments {
        if spec.partitions != -1 || spec.replication_factor != -1 {
            return Err(TopicError::InvalidAssignment(
                "give either assignments or a partition count and replication factor".into(),
            ));
        }
        if assignments.is_empty() {
            return Err(TopicError::InvalidAssignment(
                "no partitions assigned".into(),
            ));
        }
        check_assignments(assignments, assignments[0].len(), &brokers)?;
        return Ok(assignments.clone());
    }
    let partitions = match spec.partitions {
        -1 => broker.config.default_partitions,
        n if n >= 1 => n,
        n => {
            return Err(TopicError::InvalidPartitions(format!(
                "number of partitions must be at least 1, not {n}"
            )))
        }
    };
    if partitions as usize > MAX_PARTITIONS {
        return Err(TopicError::InvalidPartitions(format!(
            "{partitions} partitions is more than this broker supports ({MAX_PARTITIONS})"
        )));
    }
    let rf = match spec.replication_factor {
        -1 => broker.config.default_replication_factor,
        n if n >= 1 => n,
        n => {
            return Err(TopicError::InvalidReplicationFactor(format!(
                "replication factor must be at least 1, not {n}"
            )))
        }
    };
    if rf as usize > brokers.len() {
        return Err(TopicError::InvalidReplicationFactor(format!(
            "replication factor {rf} is larger than the {} available broker(s)",
            brokers.len()
        )));
    }
    Ok(place_replicas(
        partitions as usize,
        rf as usize,
        &brokers,
        placement_start(&spec.name) % brokers.len().max(1),
    ))
}

/// Where a topic's placement starts in the list of brokers, so that topics' partition 0s
/// spread over the brokers.
fn placement_start(name: &str) -> usize {
    name.bytes()
        .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize))
}

/// Checks replicas chosen by a client: `rf` replicas for each partition, all known
/// brokers, none twice.
fn check_assignments(
    assignments: &[Vec<NodeId>],
    rf: usize,
    brokers: &[NodeId],
) -> Result<(), TopicError> {
    for replicas in assignments {
        if replicas.is_empty() || replicas.len() != rf {
            return Err(TopicError::InvalidAssignment(format!(
                "every partition needs the same, non-zero number of replicas ({rf})"
            )));
        }
        if let Some(unknown) = replicas.iter().find(|r| !brokers.contains(r)) {
            return Err(TopicError::InvalidAssignment(format!(
                "broker {unknown} is not in the cluster"
            )));
        }
        let mut distinct = replicas.clone();
        distinct.sort();
        distinct.dedup();
        if distinct.len() != replicas.len() {
            return Err(TopicError::InvalidAssignment(
                "a partition lists the same broker twice".into(),
            ));
        }
    }
    Ok(())
}

/// Most partitions a topic may have.
const MAX_PARTITIONS: usize = 100_000;

/// Refuses new partitions whose replicas would give a node more than
/// `max-broker-partitions`: each replica is a Raft group, with its own memory and timers.
/// Two requests planned at once may pass the bound together.
fn check_node_load(
    broker: &Broker,
    metadata: &ClusterMetadata,
    new: &[Vec<NodeId>],
) -> Result<(), TopicError> {
    let mut held: BTreeMap<NodeId, usize> = new.iter().flatten().map(|n| (*n, 0)).collect();
    let partitions = metadata.topics.values().flat_map(|t| &t.partitions);
    for node in partitions
        .flat_map(|p| metadata.replica_nodes(p))
        .chain(new.iter().flatten().copied())
    {
        if let Some(count) = held.get_mut(&node) {
            *count += 1;
        }
    }
    let max = broker.config.max_broker_partitions;
    match held.into_iter().find(|(_, count)| *count > max) {
        Some((node, count)) => {
            broker.metrics.refused(Refused::MaxBrokerPartitions);
            Err(TopicError::PolicyViolation(format!(
                "node {node} would hold {count} partition replicas, more than \
             max-broker-partitions ({max}); delete topics or add nodes"
            )))
        }
        None => Ok(()),
    }
}

/// Adds partitions to topic `name` until it has `count` (CreatePartitions), on the
/// replicas the client chose or placed as a new topic's would be, continuing its rotation;
/// with `validate_only`, only checks that it could. Returns once this node's new replicas
/// have leaders, or when `wait` runs out.
pub async fn add_partitions(
    broker: &Broker,
    name: &str,
    count: i32,
    assignments: Option<Vec<Vec<NodeId>>>,
    validate_only: bool,
    wait: Duration,
) -> Result<(), TopicError> {
    let metadata = broker.node.controller().metadata();
    let topic = metadata
        .topics
        .get(name)
        .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
    let now = topic.partitions.len();
    let count = match usize::try_from(count) {
        Ok(c) if c > MAX_PARTITIONS => {
            return Err(TopicError::InvalidPartitions(format!(
                "{c} partitions is more than this broker supports ({MAX_PARTITIONS})"
            )))
        }
        Ok(c) if c > now => c,
        Ok(c) if c == now => {
            return Err(TopicError::InvalidPartitions(format!(
                "topic already has {now} partitions"
            )))
        }
        _ => {
            return Err(TopicError::InvalidPartitions(format!(
                "topic currently has {now} partitions, which is more than the requested \
                 {count}: partitions cannot be removed"
            )))
        }
    };
    let rf = topic.partitions.first().map_or(1, |p| p.replicas.len());
    let brokers: Vec<NodeId> = metadata.brokers.keys().copied().collect();
    let replicas = match assignments {
        Some(assignments) => {
            if assignments.len() != count - now {
                return Err(TopicError::InvalidAssignment(format!(
                    "{} assignments for {} new partitions",
                    assignments.len(),
                    count - now
                )));
            }
            check_assignments(&assignments, rf, &brokers)?;
            assignments
        }
        None if rf > brokers.len() => {
            return Err(TopicError::InvalidReplicationFactor(format!(
                "the topic's replication factor {rf} is larger than the {} available broker(s)",
                brokers.len()
            )))
        }
        None => place_replicas(
            count - now,
            rf,
            &brokers,
            placement_start(name).wrapping_add(now) % brokers.len().max(1),
        ),
    };
    check_node_load(broker, &metadata, &replicas)?;
    if validate_only {
        return Ok(());
    }
    let command = Command::Controller(ControllerCommand::AddPartitions {
        name: name.to_string(),
        count,
        replicas,
    });
    match broker
        .node
        .propose(CONTROLLER_GROUP, command)
        .await
        .map_err(from_propose)?
    {
        Response::Done => {}
        Response::Rejected(Rejection::UnknownTopic(name)) => return Err(TopicError::Unknown(name)),
        Response::Rejected(Rejection::PartitionCountChanged(_, now)) => {
            return Err(TopicError::InvalidPartitions(format!(
                "the topic's partition count changed to {now} meanwhile; ask again"
            )))
        }
        other => {
            return Err(TopicError::Unavailable(format!(
                "unexpected result {other:?}"
            )))
        }
    }
    tracing::info!(topic = %name, count, "partitions added");
    // Committed: the partitions exist whether or not their leaders are elected in time.
    wait_for_topic(broker, name, wait, count).await;
    Ok(())
}

/// Creates a topic (or only validates it). Returns the topic once this node has opened
/// its local replicas and they have leaders, or when `wait` runs out.
pub async fn create_topic(
    broker: &Broker,
    spec: TopicSpec,
    validate_only: bool,
    wait: Duration,
) -> Result<Arc<TopicInfo>, TopicError> {
    let controller = broker.node.controller();
    let metadata = controller.metadata();
    let replicas = plan(broker, &spec, &metadata)?;
    check_node_load(broker, &metadata, &replicas)?;
    if validate_only {
        return Ok(Arc::new(TopicInfo {
            name: spec.name,
            id: [0; 16],
            partitions: replicas
                .into_iter()
                .map(|replicas| strand_raft::PartitionInfo {
                    group: 0,
                    initial: replicas.clone(),
                    replicas,
                })
                .collect(),
            configs: spec.configs,
        }));
    }
    let command = Command::Controller(ControllerCommand::CreateTopic {
        name: spec.name.clone(),
        topic_id: *uuid::Uuid::new_v4().as_bytes(),
        replicas,
        configs: spec.configs,
    });
    // Any broker may create a topic: the proposal goes to the controller's leader, as
    // Kafka brokers forward to their controller (KIP-590).
    match broker
        .node
        .propose(CONTROLLER_GROUP, command)
        .await
        .map_err(from_propose)?
    {
        Response::TopicCreated { .. } => {}
        Response::Rejected(Rejection::TopicExists(name)) => return Err(TopicError::Exists(name)),
        other => {
            return Err(TopicError::Unavailable(format!(
                "unexpected result {other:?}"
            )))
        }
    }
    tracing::info!(topic = %spec.name, "topic created");
    let topic = wait_for_topic(broker, &spec.name, wait, 0).await;
    topic.ok_or_else(|| TopicError::Unavailable("the new topic did not appear in time".into()))
}

/// The topic named `name`, created with defaults first when auto-creation is on.
pub async fn get_or_auto_create(
    broker: &Broker,
    name: &str,
    allow_create: bool,
) -> Result<Arc<TopicInfo>, TopicError> {
    if let Some(topic) = broker.node.controller().metadata().topics.get(name) {
        return Ok(topic.clone());
    }
    if let Some(problem) = topics::name_problem(name) {
        return Err(TopicError::InvalidName(problem));
    }
    if !(allow_create && broker.config.auto_create_topics) {
        return Err(TopicError::Unknown(name.to_string()));
    }
    match create_topic(
        broker,
        TopicSpec::with_defaults(name),
        false,
        Duration::from_secs(10),
    )
    .await
    {
        Ok(topic) => Ok(topic),
        // Another request created it first.
        Err(TopicError::Exists(_)) => broker
            .node
            .controller()
            .metadata()
            .topics
            .get(name)
            .cloned()
            .ok_or_else(|| TopicError::Unknown(name.to_string())),
        Err(e) => Err(e),
    }
}

/// Deletes a topic; its partition replicas are removed by the reconcile loop.
pub async fn delete_topic(broker: &Broker, name: &str) -> Result<(), TopicError> {
    let controller = broker.node.controller();
    if !controller.metadata().topics.contains_key(name) {
        return Err(TopicError::Unknown(name.to_string()));
    }
    let command = Command::Controller(ControllerCommand::DeleteTopic {
        name: name.to_string(),
    });
    match broker
        .node
        .propose(CONTROLLER_GROUP, command)
        .await
        .map_err(from_propose)?
    {
        Response::TopicDeleted => {
            tracing::info!(topic = %name, "topic deleted");
            Ok(())
        }
        Response::Rejected(Rejection::UnknownTopic(name)) => Err(TopicError::Unknown(name)),
        other => Err(TopicError::Unavailable(format!(
            "unexpected result {other:?}"
        ))),
    }
}

/// Waits until `name` exists with at least `partitions` partitions and every partition
/// this node replicates has a local replica that leads and serves, up to `wait`. Returns
/// the topic if it exists.
async fn wait_for_topic(
    broker: &Broker,
    name: &str,
    wait: Duration,
    partitions: usize,
) -> Option<Arc<TopicInfo>> {
    let deadline = Instant::now() + wait;
    loop {
        let topic = broker
            .node
            .controller()
            .metadata()
            .topics
            .get(name)
            .cloned();
        if let Some(topic) = topic.as_ref().filter(|t| t.partitions.len() >= partitions) {
            let ready = topic.partitions.iter().all(|p| {
                !p.replicas.contains(&broker.node.id())
                    || broker
                        .node
                        .partition(p.group)
                        .is_some_and(|r| r.replica.leadership().leader.is_some())
            });
            if ready {
                return Some(topic.clone());
            }
        }
        if Instant::now() >= deadline {
            return topic;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Records this broker's client and Raft addresses in the metadata if they changed.
pub async fn register_broker(node: &RaftNode, info: BrokerInfo) -> Result<(), TopicError> {
    if node.controller().metadata().brokers.get(&info.id) == Some(&info) {
        return Ok(());
    }
    node.propose(
        CONTROLLER_GROUP,
        Command::Controller(ControllerCommand::RegisterBroker(info)),
    )
    .await
    .map_err(from_propose)?;
    Ok(())
}

/// Keeps local partition replicas in line with the metadata, for as long as the node runs:
/// at every change, and every few seconds for copies waiting to be let go.
pub async fn reconcile_loop(node: Arc<RaftNode>) {
    let mut metadata = node.controller().watch_metadata();
    loop {
        let current = metadata.borrow_and_update().clone();
        if let Err(e) = node.reconcile(&current).await {
            tracing::error!(error = %e, "cannot open or remove partition replicas; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        tokio::select! {
            changed = metadata.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(RECONCILE_AGAIN) => {}
        }
    }
}

/// How often replicas are reconciled without a metadata change.
const RECONCILE_AGAIN: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_spreads_leaders_and_never_repeats_a_broker() {
        let placed = place_replicas(4, 3, &[1, 2, 3], 1);
        assert_eq!(placed, [[2, 3, 1], [3, 1, 2], [1, 2, 3], [2, 3, 1]]);
        let single = place_replicas(3, 1, &[1], 0);
        assert_eq!(single, [[1], [1], [1]]);
    }
}
