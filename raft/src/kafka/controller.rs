//! The controller state machine: cluster metadata (brokers, topics and where each
//! partition is replicated), held by the controller Raft group.
//!
//! Decisions (where to place replicas, which id a topic gets) are made by the proposer and
//! carried in the command; applying only checks preconditions that depend on the order of
//! commands (a name taken by an earlier command) and hands out partition group ids from a
//! counter, so every replica reaches the same metadata.
//!
//! The controller group also holds consumer groups' committed offsets, so they survive the
//! loss of any node; its leader is every group's coordinator. Offsets change far more often
//! than metadata, so they live in their own map rather than in the published metadata.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use strand_storage::keys::{ControllerRecord, RaftGroupId};
use strand_storage::{StateBatch, Store};
use tokio::sync::watch;

use crate::codec;
use crate::state_machine::Machine;
use crate::types::{
    BrokerInfo, Command, CommittedOffset, ControllerCommand, LogId, NodeId, Rejection, Response,
    TopicPartition,
};

pub use strand_storage::keys::CONTROLLER_GROUP;

/// One partition of a topic: the Raft group that replicates it and the nodes it lives on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionInfo {
    pub group: RaftGroupId,
    pub replicas: Vec<NodeId>,
    /// The replicas that may start the group: those it was created with, less any removed
    /// since. A replica added later never starts it; the leader adds it.
    pub initial: Vec<NodeId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicInfo {
    pub name: String,
    pub id: [u8; 16],
    pub partitions: Vec<PartitionInfo>,
    pub configs: BTreeMap<String, String>,
}

/// Everything the controller knows, as published to the rest of the node after each apply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterMetadata {
    pub brokers: BTreeMap<NodeId, BrokerInfo>,
    pub topics: BTreeMap<String, Arc<TopicInfo>>,
    /// Topic names by topic id (KIP-516): requests that name topics by id find them without
    /// a scan.
    pub topic_names: BTreeMap<[u8; 16], String>,
    /// The group id the next partition gets.
    pub next_group: RaftGroupId,
    /// The first producer id not yet handed out.
    pub next_producer_id: i64,
    /// Partitions being moved, by group: the replicas they are moving to. Until the move
    /// completes, a partition is replicated on its old and new replicas together.
    pub reassignments: BTreeMap<RaftGroupId, Vec<NodeId>>,
    /// Finalized cluster features and their levels (Kafka's finalized features); a feature
    /// not listed is at level 0.
    pub features: BTreeMap<String, i16>,
}

impl ClusterMetadata {
    pub fn topic_by_id(&self, id: &[u8; 16]) -> Option<&Arc<TopicInfo>> {
        self.topics.get(self.topic_names.get(id)?)
    }

    fn insert_topic(&mut self, topic: Arc<TopicInfo>) {
        self.topic_names.insert(topic.id, topic.name.clone());
        self.topics.insert(topic.name.clone(), topic);
    }

    /// Every node a partition lives on now: its replicas, and those it is moving to.
    pub fn replica_nodes(&self, partition: &PartitionInfo) -> Vec<NodeId> {
        let mut nodes = self
            .reassignments
            .get(&partition.group)
            .cloned()
            .unwrap_or_default();
        for r in &partition.replicas {
            if !nodes.contains(r) {
                nodes.push(*r);
            }
        }
        nodes
    }

    /// The topic and partition index replicated by `group`, if any.
    pub fn partition_of_group(&self, group: RaftGroupId) -> Option<(&Arc<TopicInfo>, usize)> {
        self.topics.values().find_map(|t| {
            t.partitions
                .iter()
                .position(|p| p.group == group)
                .map(|i| (t, i))
        })
    }
}

/// Every consumer group's committed offsets, by group id then partition.
pub type GroupOffsets = BTreeMap<String, BTreeMap<TopicPartition, CommittedOffset>>;

/// The committed offsets as this replica has applied them, shared with the broker.
pub type SharedOffsets = Arc<RwLock<GroupOffsets>>;

/// How many entries of the controller's log are purged at once.
const SNAPSHOT_EVERY: u64 = 10_000;

pub struct ControllerMachine {
    store: Store,
    metadata: ClusterMetadata,
    changed: bool,
    published: watch::Sender<Arc<ClusterMetadata>>,
    offsets: SharedOffsets,
}

impl ControllerMachine {
    pub fn open(
        store: Store,
    ) -> Result<
        (
            ControllerMachine,
            watch::Receiver<Arc<ClusterMetadata>>,
            SharedOffsets,
        ),
        strand_storage::StorageError,
    > {
        let (tx, rx) = watch::channel(Arc::new(ClusterMetadata::default()));
        let offsets = SharedOffsets::default();
        let mut machine = ControllerMachine {
            store,
            metadata: ClusterMetadata::default(),
            changed: false,
            published: tx,
            offsets: offsets.clone(),
        };
        machine.reload()?;
        Ok((machine, rx, offsets))
    }

    fn commit_offsets(
        &mut self,
        group: String,
        offsets: Vec<(TopicPartition, CommittedOffset)>,
        batch: &mut StateBatch,
    ) -> Response {
        let mut all = self.offsets.write().expect("offsets lock");
        let committed = all.entry(group.clone()).or_default();
        for ((topic, partition), offset) in offsets {
            batch.put(
                &ControllerRecord::Offset {
                    group: group.clone(),
                    topic: topic.clone(),
                    partition,
                }
                .key(),
                &codec::encode(&offset),
            );
            committed.insert((topic, partition), offset);
        }
        Response::OffsetsCommitted
    }

    fn delete_offsets(
        &mut self,
        group: String,
        partitions: Option<Vec<TopicPartition>>,
        batch: &mut StateBatch,
    ) -> Response {
        let mut all = self.offsets.write().expect("offsets lock");
        let Some(committed) = all.get_mut(&group) else {
            return Response::OffsetsDeleted { count: 0 };
        };
        let doomed: Vec<TopicPartition> = match partitions {
            None => committed.keys().cloned().collect(),
            Some(list) => list
                .into_iter()
                .filter(|p| committed.contains_key(p))
                .collect(),
        };
        for (topic, partition) in &doomed {
            batch.delete(
                &ControllerRecord::Offset {
                    group: group.clone(),
                    topic: topic.clone(),
                    partition: *partition,
                }
                .key(),
            );
            committed.remove(&(topic.clone(), *partition));
        }
        if committed.is_empty() {
            all.remove(&group);
        }
        Response::OffsetsDeleted {
            count: doomed.len() as u32,
        }
    }

    /// Stores `topic` (new or changed) and publishes it.
    fn put_topic(&mut self, topic: TopicInfo, batch: &mut StateBatch) {
        batch.put(
            &ControllerRecord::Topic(topic.name.clone()).key(),
            &codec::encode(&topic),
        );
        self.metadata.insert_topic(Arc::new(topic));
    }

    fn reassign(
        &mut self,
        group: RaftGroupId,
        replicas: Option<Vec<NodeId>>,
        batch: &mut StateBatch,
    ) -> Response {
        if self.metadata.partition_of_group(group).is_none() {
            return Response::Rejected(Rejection::UnknownPartition(group));
        }
        let key = ControllerRecord::Reassign(group).key();
        match replicas {
            Some(replicas) => {
                if let Some(unknown) = replicas
                    .iter()
                    .find(|r| !self.metadata.brokers.contains_key(r))
                {
                    return Response::Rejected(Rejection::UnknownBroker(*unknown));
                }
                batch.put(&key, &codec::encode(&replicas));
                self.metadata.reassignments.insert(group, replicas);
            }
            None => {
                if self.metadata.reassignments.remove(&group).is_none() {
                    return Response::Rejected(Rejection::NoReassignment(group));
                }
                batch.delete(&key);
            }
        }
        Response::Done
    }

    /// Records a partition's new replicas once its leader has changed the voters. The
    /// replicas it was created with that remain may still start it; new ones never do.
    fn complete_reassignment(
        &mut self,
        group: RaftGroupId,
        replicas: Vec<NodeId>,
        batch: &mut StateBatch,
    ) -> Response {
        if self.metadata.reassignments.get(&group) != Some(&replicas) {
            return Response::Rejected(Rejection::NoReassignment(group));
        }
        let Some((topic, index)) = self.metadata.partition_of_group(group) else {
            return Response::Rejected(Rejection::UnknownPartition(group));
        };
        let mut topic = (**topic).clone();
        let partition = &mut topic.partitions[index];
        partition.initial.retain(|r| replicas.contains(r));
        partition.replicas = replicas;
        self.put_topic(topic, batch);
        batch.delete(&ControllerRecord::Reassign(group).key());
        self.metadata.reassignments.remove(&group);
        Response::Done
    }

    fn unregister_broker(&mut self, id: NodeId, batch: &mut StateBatch) -> Response {
        if !self.metadata.brokers.contains_key(&id) {
            return Response::Rejected(Rejection::UnknownBroker(id));
        }
        for topic in self.metadata.topics.values() {
            for (i, p) in topic.partitions.iter().enumerate() {
                if self.metadata.replica_nodes(p).contains(&id) {
                    let held = format!("{}-{i}", topic.name);
                    return Response::Rejected(Rejection::BrokerInUse(id, held));
                }
            }
        }
        batch.delete(&ControllerRecord::Broker(id).key());
        self.metadata.brokers.remove(&id);
        Response::Done
    }

    /// Partitions replicated on `replicas`, with Raft groups never used before.
    fn new_partitions(
        &mut self,
        replicas: Vec<Vec<NodeId>>,
        batch: &mut StateBatch,
    ) -> Vec<PartitionInfo> {
        let first = self.metadata.next_group.max(CONTROLLER_GROUP + 1);
        let partitions: Vec<PartitionInfo> = replicas
            .into_iter()
            .enumerate()
            .map(|(i, replicas)| PartitionInfo {
                group: first + i as RaftGroupId,
                initial: replicas.clone(),
                replicas,
            })
            .collect();
        self.metadata.next_group = first + partitions.len() as RaftGroupId;
        batch.put(
            &ControllerRecord::NextGroup.key(),
            &self.metadata.next_group.to_be_bytes(),
        );
        partitions
    }

    fn add_partitions(
        &mut self,
        name: String,
        count: usize,
        replicas: Vec<Vec<NodeId>>,
        batch: &mut StateBatch,
    ) -> Response {
        let Some(topic) = self.metadata.topics.get(&name) else {
            return Response::Rejected(Rejection::UnknownTopic(name));
        };
        let now = topic.partitions.len();
        if now + replicas.len() != count {
            return Response::Rejected(Rejection::PartitionCountChanged(name, now));
        }
        let mut topic = (**topic).clone();
        let added = self.new_partitions(replicas, batch);
        topic.partitions.extend(added);
        self.put_topic(topic, batch);
        Response::Done
    }

    fn create_topic(
        &mut self,
        name: String,
        topic_id: [u8; 16],
        replicas: Vec<Vec<NodeId>>,
        configs: BTreeMap<String, String>,
        batch: &mut StateBatch,
    ) -> Response {
        if self.metadata.topics.contains_key(&name) {
            return Response::Rejected(Rejection::TopicExists(name));
        }
        let partitions = self.new_partitions(replicas, batch);
        let groups = partitions.iter().map(|p| p.group).collect();
        let topic = TopicInfo {
            name,
            id: topic_id,
            partitions,
            configs,
        };
        self.put_topic(topic, batch);
        Response::TopicCreated { groups }
    }

    /// Applies a command; reads nothing from storage, so it cannot fail.
    fn apply_command(&mut self, command: Command, batch: &mut StateBatch) -> Response {
        let Command::Controller(command) = command else {
            return Response::Rejected(Rejection::WrongGroup);
        };
        // Committed offsets are not part of the published metadata.
        self.changed |= !matches!(
            command,
            ControllerCommand::CommitOffsets { .. } | ControllerCommand::DeleteOffsets { .. }
        );
        match command {
            ControllerCommand::CreateTopic {
                name,
                topic_id,
                replicas,
                configs,
            } => self.create_topic(name, topic_id, replicas, configs, batch),
            ControllerCommand::DeleteTopic { name } => {
                let Some(topic) = self.metadata.topics.remove(&name) else {
                    return Response::Rejected(Rejection::UnknownTopic(name));
                };
                self.metadata.topic_names.remove(&topic.id);
                batch.delete(&ControllerRecord::Topic(name.clone()).key());
                for p in &topic.partitions {
                    if self.metadata.reassignments.remove(&p.group).is_some() {
                        batch.delete(&ControllerRecord::Reassign(p.group).key());
                    }
                }
                Response::TopicDeleted
            }
            ControllerCommand::AllocateProducerIds { count } => {
                let first = self.metadata.next_producer_id;
                self.metadata.next_producer_id = first + count as i64;
                batch.put(
                    &ControllerRecord::NextProducerId.key(),
                    &self.metadata.next_producer_id.to_be_bytes(),
                );
                Response::ProducerIds { first, count }
            }
            ControllerCommand::CommitOffsets { group, offsets } => {
                self.commit_offsets(group, offsets, batch)
            }
            ControllerCommand::DeleteOffsets { group, partitions } => {
                self.delete_offsets(group, partitions, batch)
            }
            ControllerCommand::Reassign { group, replicas } => {
                self.reassign(group, replicas, batch)
            }
            ControllerCommand::CompleteReassignment { group, replicas } => {
                self.complete_reassignment(group, replicas, batch)
            }
            ControllerCommand::UnregisterBroker { id } => self.unregister_broker(id, batch),
            ControllerCommand::SetTopicConfigs { name, configs } => {
                let Some(topic) = self.metadata.topics.get(&name) else {
                    return Response::Rejected(Rejection::UnknownTopic(name));
                };
                let topic = TopicInfo {
                    configs,
                    ..(**topic).clone()
                };
                self.put_topic(topic, batch);
                Response::Done
            }
            ControllerCommand::AddPartitions {
                name,
                count,
                replicas,
            } => self.add_partitions(name, count, replicas, batch),
            ControllerCommand::FinalizeFeature { name, level } => {
                if self.metadata.features.get(&name).is_none_or(|l| *l < level) {
                    batch.put(
                        &ControllerRecord::Feature(name.clone()).key(),
                        &level.to_be_bytes(),
                    );
                    self.metadata.features.insert(name, level);
                }
                Response::Done
            }
            ControllerCommand::RegisterBroker(info) => {
                batch.put(
                    &ControllerRecord::Broker(info.id).key(),
                    &codec::encode(&info),
                );
                self.metadata.brokers.insert(info.id, info);
                Response::BrokerRegistered
            }
        }
    }
}

impl Machine for ControllerMachine {
    fn observe_term(&mut self, _term: u64, _batch: &mut StateBatch) {}

    fn apply(
        &mut self,
        _log_id: &LogId,
        command: Command,
        batch: &mut StateBatch,
    ) -> Result<Response, strand_storage::StorageError> {
        Ok(self.apply_command(command, batch))
    }

    fn finish_round(&mut self, _batch: &mut StateBatch) {}

    /// The state reads no entry: the log can go up to the applied point, in steps of
    /// [`SNAPSHOT_EVERY`] entries so that a snapshot is not taken for every commit.
    fn keep_from(&self, applied: u64) -> u64 {
        (applied + 1) / SNAPSHOT_EVERY * SNAPSHOT_EVERY
    }

    fn publish(&mut self) {
        if std::mem::take(&mut self.changed) {
            self.published.send_replace(Arc::new(self.metadata.clone()));
        }
    }

    fn reload(&mut self) -> Result<(), strand_storage::StorageError> {
        let mut metadata = ClusterMetadata::default();
        let mut offsets = GroupOffsets::new();
        let mut corrupt = None;
        let (start, end) = ControllerRecord::range();
        self.store.scan_state(&start, &end, |k, v| {
            match ControllerRecord::decode(k) {
                Ok(Some(ControllerRecord::Topic(topic))) => match codec::decode::<TopicInfo>(v) {
                    Ok(t) => {
                        metadata.insert_topic(Arc::new(t));
                    }
                    Err(e) => corrupt = Some(format!("topic {topic:?}: {e}")),
                },
                Ok(Some(ControllerRecord::Broker(_))) => match codec::decode::<BrokerInfo>(v) {
                    Ok(b) => {
                        metadata.brokers.insert(b.id, b);
                    }
                    Err(e) => corrupt = Some(format!("broker record: {e}")),
                },
                Ok(Some(ControllerRecord::Offset {
                    group,
                    topic,
                    partition,
                })) => match codec::decode::<CommittedOffset>(v) {
                    Ok(offset) => {
                        offsets
                            .entry(group)
                            .or_default()
                            .insert((topic, partition), offset);
                    }
                    Err(e) => corrupt = Some(format!("committed offset of {group:?}: {e}")),
                },
                Ok(Some(ControllerRecord::Reassign(group))) => {
                    match codec::decode::<Vec<NodeId>>(v) {
                        Ok(replicas) => {
                            metadata.reassignments.insert(group, replicas);
                        }
                        Err(e) => corrupt = Some(format!("reassignment record: {e}")),
                    }
                }
                Ok(Some(ControllerRecord::Feature(name))) => match v.try_into() {
                    Ok(level) => {
                        metadata.features.insert(name, i16::from_be_bytes(level));
                    }
                    Err(_) => corrupt = Some(format!("level of feature {name:?}")),
                },
                Ok(Some(ControllerRecord::NextGroup)) => {
                    metadata.next_group = v.try_into().map(u64::from_be_bytes).unwrap_or_default();
                }
                Ok(Some(ControllerRecord::NextProducerId)) => {
                    metadata.next_producer_id =
                        v.try_into().map(i64::from_be_bytes).unwrap_or_default();
                }
                Ok(None) => {}
                Err(detail) => corrupt = Some(detail),
            }
            true
        })?;
        if let Some(detail) = corrupt {
            return Err(strand_storage::StorageError::Corrupt {
                what: "controller metadata",
                detail,
            });
        }
        self.metadata = metadata;
        *self.offsets.write().expect("offsets lock") = offsets;
        self.changed = true;
        self.publish();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::CommittedLeaderId;
    use strand_storage::StoreOptions;

    fn run(m: &mut ControllerMachine, store: &Store, cmd: ControllerCommand) -> Response {
        let mut wb = store.state_batch();
        let r = m
            .apply(
                &LogId::new(CommittedLeaderId::new(1, 1), 1),
                Command::Controller(cmd),
                &mut wb,
            )
            .unwrap();
        store.write_state(wb).unwrap();
        m.publish();
        r
    }

    fn create(name: &str, partitions: usize) -> ControllerCommand {
        ControllerCommand::CreateTopic {
            name: name.into(),
            topic_id: [name.as_bytes()[0]; 16],
            replicas: vec![vec![1]; partitions],
            configs: BTreeMap::new(),
        }
    }

    fn register(id: NodeId) -> ControllerCommand {
        ControllerCommand::RegisterBroker(BrokerInfo {
            id,
            host: "127.0.0.1".into(),
            port: 9092,
            raft_addr: format!("127.0.0.1:{}", 19091 + id),
            rack: None,
        })
    }

    #[test]
    fn reassignments_complete_cancel_and_guard_unregistering() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreOptions::new(dir.path())).unwrap();
        let (mut m, rx, _) = ControllerMachine::open(store.clone()).unwrap();
        for id in 1..=4 {
            run(&mut m, &store, register(id));
        }
        run(
            &mut m,
            &store,
            ControllerCommand::CreateTopic {
                name: "t".into(),
                topic_id: [1; 16],
                replicas: vec![vec![1, 2, 3], vec![2, 3, 1]],
                configs: BTreeMap::new(),
            },
        );
        let reassign =
            |replicas: Option<Vec<NodeId>>| ControllerCommand::Reassign { group: 1, replicas };
        assert_eq!(
            run(&mut m, &store, reassign(Some(vec![4, 1, 2]))),
            Response::Done
        );
        let md = rx.borrow().clone();
        let p0 = &md.topics["t"].partitions[0];
        assert_eq!(md.replica_nodes(p0), [4, 1, 2, 3]);
        // Node 3 still holds partition 0 while it moves, and partition 1 anyway.
        assert!(matches!(
            run(
                &mut m,
                &store,
                ControllerCommand::UnregisterBroker { id: 3 }
            ),
            Response::Rejected(Rejection::BrokerInUse(3, _))
        ));
        // Completing with other replicas than the reassignment's is refused.
        assert_eq!(
            run(
                &mut m,
                &store,
                ControllerCommand::CompleteReassignment {
                    group: 1,
                    replicas: vec![4, 1, 3]
                }
            ),
            Response::Rejected(Rejection::NoReassignment(1))
        );
        assert_eq!(
            run(
                &mut m,
                &store,
                ControllerCommand::CompleteReassignment {
                    group: 1,
                    replicas: vec![4, 1, 2]
                }
            ),
            Response::Done
        );
        let md = rx.borrow().clone();
        let p0 = &md.topics["t"].partitions[0];
        assert_eq!(
            (p0.replicas.clone(), p0.initial.clone()),
            (vec![4, 1, 2], vec![1, 2])
        );
        assert!(md.reassignments.is_empty());
        // A cancelled move leaves the replicas as they were.
        let move_p1 = ControllerCommand::Reassign {
            group: 2,
            replicas: Some(vec![1, 2, 4]),
        };
        assert_eq!(run(&mut m, &store, move_p1), Response::Done);
        let cancel_p1 = ControllerCommand::Reassign {
            group: 2,
            replicas: None,
        };
        assert_eq!(run(&mut m, &store, cancel_p1.clone()), Response::Done);
        assert_eq!(
            run(&mut m, &store, cancel_p1),
            Response::Rejected(Rejection::NoReassignment(2))
        );
        // Once nothing lives on node 3, it may go; the state survives a reopen.
        let move_p1 = ControllerCommand::Reassign {
            group: 2,
            replicas: Some(vec![2, 4, 1]),
        };
        run(&mut m, &store, move_p1);
        drop(m);
        let (mut m, rx, _) = ControllerMachine::open(store.clone()).unwrap();
        assert_eq!(rx.borrow().reassignments[&2], [2, 4, 1]);
        let done = ControllerCommand::CompleteReassignment {
            group: 2,
            replicas: vec![2, 4, 1],
        };
        assert_eq!(run(&mut m, &store, done), Response::Done);
        assert_eq!(
            run(
                &mut m,
                &store,
                ControllerCommand::UnregisterBroker { id: 3 }
            ),
            Response::Done
        );
        assert_eq!(
            rx.borrow().brokers.keys().copied().collect::<Vec<_>>(),
            [1, 2, 4]
        );
    }

    #[test]
    fn added_partitions_get_new_groups_after_the_existing_ones_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreOptions::new(dir.path())).unwrap();
        let (mut m, _, _) = ControllerMachine::open(store.clone()).unwrap();
        run(&mut m, &store, create("a", 2));
        run(&mut m, &store, create("b", 1));
        let add = |count: usize, new: usize| ControllerCommand::AddPartitions {
            name: "a".into(),
            count,
            replicas: vec![vec![1]; new],
        };
        assert_eq!(run(&mut m, &store, add(4, 2)), Response::Done);
        assert_eq!(
            run(&mut m, &store, add(5, 2)),
            Response::Rejected(Rejection::PartitionCountChanged("a".into(), 4)),
            "planned against a count that is no longer the topic's"
        );
        let unknown = ControllerCommand::AddPartitions {
            name: "zz".into(),
            count: 2,
            replicas: vec![vec![1]],
        };
        assert_eq!(
            run(&mut m, &store, unknown),
            Response::Rejected(Rejection::UnknownTopic("zz".into()))
        );
        let (_, rx, _) = ControllerMachine::open(store.clone()).unwrap();
        let groups: Vec<_> = rx.borrow().topics["a"]
            .partitions
            .iter()
            .map(|p| p.group)
            .collect();
        assert_eq!(groups, [1, 2, 4, 5]);
        assert_eq!(
            run(&mut m, &store, create("c", 1)),
            Response::TopicCreated { groups: vec![6] }
        );
    }

    #[test]
    fn topics_get_distinct_groups_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreOptions::new(dir.path())).unwrap();
        let (mut m, rx, _) = ControllerMachine::open(store.clone()).unwrap();
        assert_eq!(
            run(&mut m, &store, create("a", 2)),
            Response::TopicCreated { groups: vec![1, 2] }
        );
        assert_eq!(
            run(&mut m, &store, create("a", 1)),
            Response::Rejected(Rejection::TopicExists("a".into()))
        );
        assert_eq!(
            run(&mut m, &store, create("b", 1)),
            Response::TopicCreated { groups: vec![3] }
        );
        assert_eq!(
            run(
                &mut m,
                &store,
                ControllerCommand::DeleteTopic { name: "a".into() }
            ),
            Response::TopicDeleted
        );
        // Group ids are never reused, so a recreated topic never sees old data.
        assert_eq!(
            run(&mut m, &store, create("a", 1)),
            Response::TopicCreated { groups: vec![4] }
        );
        let published = rx.borrow().clone();
        assert_eq!(published.topics.len(), 2);
        assert_eq!(
            run(
                &mut m,
                &store,
                ControllerCommand::AllocateProducerIds { count: 100 }
            ),
            Response::ProducerIds {
                first: 0,
                count: 100
            }
        );
        assert_eq!(
            run(
                &mut m,
                &store,
                ControllerCommand::AllocateProducerIds { count: 100 }
            ),
            Response::ProducerIds {
                first: 100,
                count: 100
            }
        );
        let published = rx.borrow().clone();
        let (_, reopened, _) = ControllerMachine::open(store.clone()).unwrap();
        assert_eq!(*reopened.borrow().clone(), *published);
        assert_eq!(published.next_producer_id, 200, "producer ids never repeat");
        assert_eq!(published.partition_of_group(3).unwrap().0.name, "b");
        assert_eq!(published.topic_by_id(&[b'b'; 16]).unwrap().name, "b");
        assert_eq!(
            published.topic_by_id(&[b'a'; 16]).unwrap().partitions[0].group,
            4
        );
        assert_eq!(published.topic_names.len(), 2);
    }

    #[test]
    fn features_only_rise_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreOptions::new(dir.path())).unwrap();
        let (mut m, rx, _) = ControllerMachine::open(store.clone()).unwrap();
        let finalize = |level| ControllerCommand::FinalizeFeature {
            name: "strand.version".into(),
            level,
        };
        for level in [2, 1, 3] {
            assert_eq!(run(&mut m, &store, finalize(level)), Response::Done);
        }
        assert_eq!(rx.borrow().features.get("strand.version"), Some(&3));
        let (_, reopened, _) = ControllerMachine::open(store.clone()).unwrap();
        assert_eq!(reopened.borrow().features, rx.borrow().features);
    }

    #[test]
    fn committed_offsets_replace_delete_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreOptions::new(dir.path())).unwrap();
        let (mut m, rx, offsets) = ControllerMachine::open(store.clone()).unwrap();
        let at = |offset| CommittedOffset {
            offset,
            leader_epoch: 2,
            metadata: Some("m".into()),
            commit_timestamp: 1000,
        };
        let commit =
            |group: &str, topic: &str, partition, offset| ControllerCommand::CommitOffsets {
                group: group.into(),
                offsets: vec![((topic.into(), partition), at(offset))],
            };
        let before = rx.borrow().clone();
        // Group ids and topics may hold any character: keys must not run together.
        for cmd in [
            commit("g", "t", 0, 5),
            commit("g", "t", 0, 9),
            commit("g", "t", 1, 3),
            commit("g/\0x", "t", 0, 1),
            commit("h", "u", 7, 4),
        ] {
            assert_eq!(run(&mut m, &store, cmd), Response::OffsetsCommitted);
        }
        assert!(
            Arc::ptr_eq(&before, &rx.borrow()),
            "offsets do not republish metadata"
        );
        assert_eq!(
            run(
                &mut m,
                &store,
                ControllerCommand::DeleteOffsets {
                    group: "h".into(),
                    partitions: None
                }
            ),
            Response::OffsetsDeleted { count: 1 }
        );
        assert_eq!(
            run(
                &mut m,
                &store,
                ControllerCommand::DeleteOffsets {
                    group: "g".into(),
                    partitions: Some(vec![("t".into(), 1), ("t".into(), 9)])
                }
            ),
            Response::OffsetsDeleted { count: 1 }
        );
        let expected: GroupOffsets = [
            ("g".to_string(), [(("t".to_string(), 0), at(9))].into()),
            ("g/\0x".to_string(), [(("t".to_string(), 0), at(1))].into()),
        ]
        .into();
        assert_eq!(*offsets.read().unwrap(), expected);
        let (_, _, reopened) = ControllerMachine::open(store.clone()).unwrap();
        assert_eq!(*reopened.read().unwrap(), expected);
    }

    /// The controller's snapshot is its records alone: installed on a node that never had
    /// the group, it gives the same metadata and offsets, and no entry is needed.
    #[tokio::test]
    async fn a_snapshot_carries_the_whole_controller_state() {
        use crate::recent_entries::RecentEntries;
        use crate::snapshot::LogFloor;
        use crate::state_machine::StateMachine;
        use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
        use openraft::{Entry, EntryPayload};

        let open = |dir: &std::path::Path| {
            let store = Store::open(&StoreOptions::new(dir)).unwrap();
            let (machine, metadata, offsets) = ControllerMachine::open(store.clone()).unwrap();
            let sm = StateMachine::open(
                store,
                CONTROLLER_GROUP,
                machine,
                RecentEntries::default(),
                LogFloor::default(),
            )
            .unwrap();
            (sm, metadata, offsets)
        };
        let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (mut a, a_metadata, a_offsets) = open(a_dir.path());
        let (mut b, b_metadata, b_offsets) = open(b_dir.path());
        let commands = [
            register(1),
            create("orders", 3),
            ControllerCommand::CommitOffsets {
                group: "g".into(),
                offsets: vec![(
                    ("orders".into(), 1),
                    CommittedOffset {
                        offset: 42,
                        leader_epoch: 1,
                        metadata: None,
                        commit_timestamp: 1000,
                    },
                )],
            },
        ];
        for (i, command) in commands.into_iter().enumerate() {
            let entry = Entry::<crate::types::Types> {
                log_id: LogId::new(CommittedLeaderId::new(1, 1), i as u64 + 1),
                payload: EntryPayload::Normal(Command::Controller(command)),
            };
            a.apply([entry]).await.unwrap();
        }
        assert!(a.get_current_snapshot().await.unwrap().is_none());
        a.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        let snapshot = a.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(
            snapshot.snapshot.first_entry, 0,
            "under SNAPSHOT_EVERY entries"
        );
        b.install_snapshot(&snapshot.meta, snapshot.snapshot)
            .await
            .unwrap();
        assert_eq!(**b_metadata.borrow(), **a_metadata.borrow());
        assert_eq!(b_metadata.borrow().topics["orders"].partitions.len(), 3);
        assert_eq!(*b_offsets.read().unwrap(), *a_offsets.read().unwrap());
        assert_eq!(b_offsets.read().unwrap()["g"].len(), 1);
        assert_eq!(b.applied_state().await.unwrap().0.unwrap().index, 3);
    }
}
