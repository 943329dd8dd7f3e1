//! The controller state machine: cluster metadata (brokers, topics and where each
//! partition is replicated), held by the controller Raft group.
//!
//! Decisions (where to place replicas, which id a topic gets) are made by the proposer and
//! carried in the command; applying only checks preconditions that depend on the order of
//! commands (a name taken by an earlier command) and hands out partition group ids from a
//! counter, so every replica reaches the same metadata.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use strand_storage::keys::{self, GroupId};
use strand_storage::{StateBatch, Store};
use tokio::sync::watch;

use crate::codec;
use crate::state_machine::Machine;
use crate::types::{BrokerInfo, Command, ControllerCommand, LogId, NodeId, Rejection, Response};

/// The controller's own Raft group id.
pub const CONTROLLER_GROUP: GroupId = 0;

/// One partition of a topic: the Raft group that replicates it and the nodes it lives on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionInfo {
    pub group: GroupId,
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
    /// The group id the next partition gets.
    pub next_group: GroupId,
    /// The first producer id not yet handed out.
    pub next_producer_id: i64,
}

impl ClusterMetadata {
    /// The topic and partition index replicated by `group`, if any.
    pub fn partition_of_group(&self, group: GroupId) -> Option<(&Arc<TopicInfo>, usize)> {
        self.topics.values().find_map(|t| {
            t.partitions
                .iter()
                .position(|p| p.group == group)
                .map(|i| (t, i))
        })
    }
}

const TOPIC_PREFIX: &[u8] = b"topic/";
const BROKER_PREFIX: &[u8] = b"broker/";
const NEXT_GROUP: &[u8] = b"next_group";
const NEXT_PRODUCER_ID: &[u8] = b"next_producer_id";

fn named(prefix: &[u8], name: &[u8]) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(name);
    keys::record(CONTROLLER_GROUP, &key)
}

pub struct ControllerMachine {
    store: Store,
    metadata: ClusterMetadata,
    changed: bool,
    published: watch::Sender<Arc<ClusterMetadata>>,
}

impl ControllerMachine {
    pub fn open(
        store: Store,
    ) -> Result<
        (ControllerMachine, watch::Receiver<Arc<ClusterMetadata>>),
        strand_storage::StorageError,
    > {
        let (tx, rx) = watch::channel(Arc::new(ClusterMetadata::default()));
        let mut machine = ControllerMachine {
            store,
            metadata: ClusterMetadata::default(),
            changed: false,
            published: tx,
        };
        machine.reload()?;
        Ok((machine, rx))
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
        let first = self.metadata.next_group.max(CONTROLLER_GROUP + 1);
        let partitions: Vec<PartitionInfo> = replicas
            .into_iter()
            .enumerate()
            .map(|(i, replicas)| PartitionInfo {
                group: first + i as GroupId,
                initial: replicas.clone(),
                replicas,
            })
            .collect();
        let groups = partitions.iter().map(|p| p.group).collect();
        self.metadata.next_group = first + partitions.len() as GroupId;
        let topic = TopicInfo {
            name: name.clone(),
            id: topic_id,
            partitions,
            configs,
        };
        batch.put(
            &named(TOPIC_PREFIX, name.as_bytes()),
            &codec::encode(&topic),
        );
        batch.put(
            &keys::record(CONTROLLER_GROUP, NEXT_GROUP),
            &self.metadata.next_group.to_be_bytes(),
        );
        self.metadata.topics.insert(name, Arc::new(topic));
        Response::TopicCreated { groups }
    }
}

impl Machine for ControllerMachine {
    fn observe_term(&mut self, _term: u64, _batch: &mut StateBatch) {}

    fn apply(&mut self, _log_id: &LogId, command: Command, batch: &mut StateBatch) -> Response {
        let Command::Controller(command) = command else {
            return Response::Rejected(Rejection::WrongGroup);
        };
        self.changed = true;
        match command {
            ControllerCommand::CreateTopic {
                name,
                topic_id,
                replicas,
                configs,
            } => self.create_topic(name, topic_id, replicas, configs, batch),
            ControllerCommand::DeleteTopic { name } => {
                if self.metadata.topics.remove(&name).is_none() {
                    return Response::Rejected(Rejection::UnknownTopic(name));
                }
                batch.delete(&named(TOPIC_PREFIX, name.as_bytes()));
                Response::TopicDeleted
            }
            ControllerCommand::AllocateProducerIds { count } => {
                let first = self.metadata.next_producer_id;
                self.metadata.next_producer_id = first + count as i64;
                batch.put(
                    &keys::record(CONTROLLER_GROUP, NEXT_PRODUCER_ID),
                    &self.metadata.next_producer_id.to_be_bytes(),
                );
                Response::ProducerIds { first, count }
            }
            ControllerCommand::RegisterBroker(info) => {
                batch.put(
                    &named(BROKER_PREFIX, &info.id.to_be_bytes()),
                    &codec::encode(&info),
                );
                self.metadata.brokers.insert(info.id, info);
                Response::BrokerRegistered
            }
        }
    }

    fn finish_round(&mut self, _batch: &mut StateBatch) {}

    fn publish(&mut self) {
        if std::mem::take(&mut self.changed) {
            self.published.send_replace(Arc::new(self.metadata.clone()));
        }
    }

    fn reload(&mut self) -> Result<(), strand_storage::StorageError> {
        let mut metadata = ClusterMetadata::default();
        let mut corrupt = None;
        let start = keys::state(CONTROLLER_GROUP, keys::RECORD);
        let end = keys::state_tag_end(CONTROLLER_GROUP, keys::RECORD);
        self.store.scan_state(&start, &end, |k, v| {
            let name = keys::record_name(k);
            if let Some(topic) = name.strip_prefix(TOPIC_PREFIX) {
                match codec::decode::<TopicInfo>(v) {
                    Ok(t) => {
                        metadata.topics.insert(t.name.clone(), Arc::new(t));
                    }
                    Err(e) => corrupt = Some(format!("topic {topic:?}: {e}")),
                }
            } else if name.starts_with(BROKER_PREFIX) {
                match codec::decode::<BrokerInfo>(v) {
                    Ok(b) => {
                        metadata.brokers.insert(b.id, b);
                    }
                    Err(e) => corrupt = Some(format!("broker record: {e}")),
                }
            } else if name == NEXT_GROUP {
                metadata.next_group = v.try_into().map(u64::from_be_bytes).unwrap_or_default();
            } else if name == NEXT_PRODUCER_ID {
                metadata.next_producer_id =
                    v.try_into().map(i64::from_be_bytes).unwrap_or_default();
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
        let r = m.apply(
            &LogId::new(CommittedLeaderId::new(1, 1), 1),
            Command::Controller(cmd),
            &mut wb,
        );
        store.write_state(wb).unwrap();
        m.publish();
        r
    }

    fn create(name: &str, partitions: usize) -> ControllerCommand {
        ControllerCommand::CreateTopic {
            name: name.into(),
            topic_id: [7; 16],
            replicas: vec![vec![1]; partitions],
            configs: BTreeMap::new(),
        }
    }

    #[test]
    fn topics_get_distinct_groups_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreOptions::new(dir.path())).unwrap();
        let (mut m, rx) = ControllerMachine::open(store.clone()).unwrap();
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
        let (_, reopened) = ControllerMachine::open(store.clone()).unwrap();
        assert_eq!(*reopened.borrow().clone(), *published);
        assert_eq!(published.next_producer_id, 200, "producer ids never repeat");
        assert_eq!(published.partition_of_group(3).unwrap().0.name, "b");
    }
}
