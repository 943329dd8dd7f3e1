//! The multi-raft node: the controller group and every partition group this node
//! replicates, opened from storage at start and created or removed as the controller's
//! metadata changes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use futures::StreamExt;
use openraft::{BasicNode, SnapshotPolicy};
use strand_storage::Store;

use crate::contacts::QuorumContacts;
use crate::election_timer::ElectionTimer;
use crate::kafka::controller::{ClusterMetadata, ControllerMachine, CONTROLLER_GROUP};
use crate::kafka::partition::{PartitionMachine, PartitionReader};
use crate::kafka::replicas::{ControllerReplica, PartitionReplica};
use crate::log_store::LogStore;
use crate::network::NetworkFactory;
use crate::peers::LeaderTable;
use crate::replica::{Replica, RestoredLeadership};
use crate::state_machine::{Machine, StateMachine};
use crate::transport::Transport;
use crate::types::{NodeId, Raft, RaftGroupId};

/// See [`RaftNode::replica_map`].
pub(crate) struct ReplicaMap<'a> {
    controller: &'a Replica,
    partitions: RwLockReadGuard<'a, HashMap<RaftGroupId, Arc<PartitionReplica>>>,
}

impl ReplicaMap<'_> {
    pub(crate) fn get(&self, group: RaftGroupId) -> Option<&Replica> {
        if group == CONTROLLER_GROUP {
            return Some(self.controller);
        }
        self.partitions.get(&group).map(|p| &p.replica)
    }

    pub(crate) fn partition(&self, group: RaftGroupId) -> Option<&PartitionReplica> {
        self.partitions.get(&group).map(|p| &**p)
    }
}

/// How many partition groups a node opens at once when new ones appear (a topic of
/// thousands of partitions).
const OPEN_AT_ONCE: usize = 64;

/// Raft timing and sizing for every group on the node.
#[derive(Debug, Clone)]
pub struct RaftTuning {
    /// Leader heartbeat period. Far above openraft's 50 ms default: a node may lead
    /// hundreds of groups. A follower stands for election only after the leader lease (the
    /// maximum election timeout) plus a random timeout without a heartbeat.
    pub heartbeat_interval: Duration,
    /// A follower that hears nothing for a random time in this range starts an election.
    pub election_timeout: (Duration, Duration),
    /// How often leaders hand partitions back to their preferred replicas; None: never.
    pub leader_balance_interval: Option<Duration>,
    /// Unsafe, for the Jepsen self-check alone: purge every group's log up to its last
    /// applied entry, entries its state machine still reads included.
    pub purge_unread: bool,
    /// Unsafe, for the Jepsen self-check alone: the log cleaner tells keys apart by one
    /// byte of a hash, as a cleaner whose key map collides would.
    pub compact_by_hash: bool,
}

impl Default for RaftTuning {
    fn default() -> Self {
        RaftTuning {
            heartbeat_interval: Duration::from_millis(400),
            election_timeout: (Duration::from_millis(500), Duration::from_millis(1000)),
            leader_balance_interval: Some(Duration::from_secs(30)),
            purge_unread: false,
            compact_by_hash: false,
        }
    }
}

impl RaftTuning {
    fn openraft_config(&self) -> Result<openraft::Config, NodeError> {
        let config = openraft::Config {
            cluster_name: "strand".into(),
            heartbeat_interval: self.heartbeat_interval.as_millis() as u64,
            election_timeout_min: self.election_timeout.0.as_millis() as u64,
            election_timeout_max: self.election_timeout.1.as_millis() as u64,
            // Entries are whole produce requests: a few hundred per message is plenty.
            max_payload_entries: 128,
            // Snapshots are taken, and logs purged, by `crate::purge` alone, where and when
            // a group's state machine no longer reads the entries (see `crate::snapshot`).
            snapshot_policy: SnapshotPolicy::Never,
            max_in_snapshot_log_to_keep: u64::MAX,
            // Heartbeats come from `heartbeat::heartbeat_loop`, for all groups at once.
            enable_heartbeat: false,
            // `election_timer_loop` turns each group's tick on where it may be needed.
            enable_tick: false,
            ..Default::default()
        };
        config
            .validate()
            .map_err(|e| NodeError::Config(e.to_string()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("invalid raft configuration: {0}")]
    Config(String),
    #[error("storage: {0}")]
    Storage(#[from] strand_storage::StorageError),
    #[error("raft: {0}")]
    Raft(String),
}

/// How a new group is started: its first voters, and which of them should lead.
#[derive(Debug, Clone)]
pub struct GroupStart {
    pub voters: BTreeMap<NodeId, BasicNode>,
    pub preferred_leader: NodeId,
}

/// This node's identity for Raft.
#[derive(Debug, Clone)]
pub struct NodeIdentity {
    pub id: NodeId,
    /// Address peers reach this node's Raft transport at.
    pub raft_addr: String,
}

pub struct RaftNode {
    pub(crate) identity: NodeIdentity,
    pub(crate) store: Store,
    pub(crate) config: Arc<openraft::Config>,
    pub(crate) transport: Arc<Transport>,
    /// Followers' acceptance of the groups this node leads, for quorum checks.
    pub(crate) contacts: Arc<QuorumContacts>,
    pub(crate) controller: ControllerReplica,
    partitions: RwLock<HashMap<RaftGroupId, Arc<PartitionReplica>>>,
    /// Leaders of groups this node has no replica of, as their leaders report them.
    pub(crate) leaders: LeaderTable,
    /// Partition moves this node is carrying out as their leader.
    pub(crate) moves: crate::membership::MovesInProgress,
    /// How the groups this node leads were heard from, for the metrics.
    pub(crate) heartbeats: crate::heartbeat::HeartbeatCounts,
    /// Wakes peer requests waiting for a group this node has not opened yet.
    pub(crate) partition_opened: tokio::sync::Notify,
    /// Snapshots this node is receiving.
    pub(crate) snapshots: crate::snapshot::Inbox,
    /// See [`RaftTuning::purge_unread`].
    purge_unread: bool,
    /// See [`RaftTuning::compact_by_hash`].
    compact_by_hash: bool,
}

impl RaftNode {
    /// Opens the controller group. `bootstrap` lists the initial controller voters when
    /// the cluster is formed for the first time (ignored once the group has state).
    pub async fn start(
        identity: NodeIdentity,
        store: Store,
        tuning: RaftTuning,
        transport: Arc<Transport>,
        bootstrap: Option<BTreeMap<NodeId, BasicNode>>,
    ) -> Result<Arc<RaftNode>, NodeError> {
        let config = Arc::new(tuning.openraft_config()?);
        let contacts = Arc::new(QuorumContacts::default());
        let (machine, metadata, offsets) = ControllerMachine::open(store.clone())?;
        let env = GroupEnv {
            identity: &identity,
            store: &store,
            config: &config,
            transport: &transport,
            contacts: &contacts,
            purge_unread: tuning.purge_unread,
        };
        let replica = open_group(&env, CONTROLLER_GROUP, machine).await?;
        if let Some(voters) = bootstrap {
            initialize_if_new(&replica, voters).await?;
        }
        let node = Arc::new(RaftNode {
            identity,
            store,
            config,
            transport,
            contacts,
            controller: ControllerReplica {
                replica,
                metadata,
                offsets,
            },
            partitions: RwLock::new(HashMap::new()),
            leaders: LeaderTable::default(),
            moves: Default::default(),
            heartbeats: Default::default(),
            partition_opened: Default::default(),
            snapshots: Default::default(),
            purge_unread: tuning.purge_unread,
            compact_by_hash: tuning.compact_by_hash,
        });
        tokio::spawn(crate::purge::purge_loop(Arc::downgrade(&node)));
        tokio::spawn(crate::membership::move_loop(Arc::downgrade(&node)));
        tokio::spawn(crate::election_timer::election_timer_loop(
            Arc::downgrade(&node),
            crate::election_timer::quiet_limits(&node.config),
        ));
        tokio::spawn(crate::heartbeat::heartbeat_loop(
            Arc::downgrade(&node),
            tuning.heartbeat_interval,
        ));
        if let Some(interval) = tuning.leader_balance_interval {
            tokio::spawn(crate::handover::balance_loop(
                Arc::downgrade(&node),
                interval,
            ));
        }
        Ok(node)
    }

    pub fn id(&self) -> NodeId {
        self.identity.id
    }

    /// Heartbeats of the groups this node leads since it started, by kind: `(openraft
    /// appends, quiet)`; see `crate::heartbeat`.
    pub fn heartbeat_counts(&self) -> (u64, u64) {
        self.heartbeats.totals()
    }

    /// Raft log entries purged on this node, over all its groups: the sum of each group's
    /// purge point.
    pub fn purged_entries(&self) -> u64 {
        let purged = |r: &Replica| r.purged_and_snapshot().0;
        purged(&self.controller.replica)
            + self
                .partitions()
                .iter()
                .map(|p| purged(&p.replica))
                .sum::<u64>()
    }

    /// Snapshots this node installed since it started, and the entry bytes they carried.
    pub fn snapshots_installed(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.snapshots.installed.load(Relaxed),
            self.snapshots.installed_bytes.load(Relaxed),
        )
    }

    /// How long a follower refuses to vote after hearing from its leader (openraft's leader
    /// lease: the maximum election timeout).
    pub(crate) fn leader_lease(&self) -> Duration {
        Duration::from_millis(self.config.election_timeout_max)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn controller(&self) -> &ControllerReplica {
        &self.controller
    }

    pub fn partition(&self, group: RaftGroupId) -> Option<Arc<PartitionReplica>> {
        self.partitions
            .read()
            .expect("partition map lock")
            .get(&group)
            .cloned()
    }

    /// Every partition replica on this node.
    pub fn partitions(&self) -> Vec<Arc<PartitionReplica>> {
        self.partitions
            .read()
            .expect("partition map lock")
            .values()
            .cloned()
            .collect()
    }

    /// Every group on this node: the controller's, then each partition's.
    pub(crate) fn replicas(&self) -> Vec<Replica> {
        let mut all = Vec::new();
        self.for_each_replica(|r| all.push(r.clone()));
        all
    }

    /// Calls `f` on every group on this node without copying them, for the loops that look
    /// at every group several times a second. `f` runs under the partition map's lock.
    pub(crate) fn for_each_replica(&self, mut f: impl FnMut(&Replica)) {
        f(&self.controller.replica);
        for p in self.partitions.read().expect("partition map lock").values() {
            f(&p.replica);
        }
    }

    /// The groups on this node, looked up by id under one hold of the partition map's
    /// lock and without copying them: for handling messages that name many groups.
    pub(crate) fn replica_map(&self) -> ReplicaMap<'_> {
        ReplicaMap {
            controller: &self.controller.replica,
            partitions: self.partitions.read().expect("partition map lock"),
        }
    }

    pub fn partition_count(&self) -> usize {
        self.partitions.read().expect("partition map lock").len()
    }

    /// Brings the set of local partition groups in line with `metadata`: opens (and on
    /// first creation initialises) every partition replicated here, and shuts down and
    /// deletes every local partition no longer in it, once its leader confirms this node
    /// no longer votes in it. Run it again from time to time: that confirmation comes later.
    pub async fn reconcile(&self, metadata: &ClusterMetadata) -> Result<(), NodeError> {
        let mut wanted = HashMap::new();
        for topic in metadata.topics.values() {
            for p in &topic.partitions {
                if metadata.replica_nodes(p).contains(&self.identity.id) {
                    wanted.insert(p.group, p);
                }
            }
        }
        let existing: Vec<RaftGroupId> = self
            .partitions
            .read()
            .expect("partition map lock")
            .keys()
            .copied()
            .collect();
        for group in existing {
            if wanted.contains_key(&group) {
                continue;
            }
            // A group the metadata still has (its topic exists) may still count this node
            // among its voters; see `peers::keeps_unlisted_copy`.
            if metadata.partition_of_group(group).is_some() && self.keeps_unlisted_copy(group) {
                continue;
            }
            self.remove_partition(group).await?;
        }
        let opening: Vec<(RaftGroupId, Option<GroupStart>)> = wanted
            .into_iter()
            .filter(|(group, _)| self.partition(*group).is_none())
            .map(|(group, partition)| {
                // Only the replicas the partition was created with start its group; a
                // replica added later joins as a learner when the leader adds it.
                let start = partition
                    .initial
                    .contains(&self.identity.id)
                    .then(|| GroupStart {
                        voters: partition
                            .initial
                            .iter()
                            .map(|id| {
                                let addr = metadata
                                    .brokers
                                    .get(id)
                                    .map(|b| b.raft_addr.clone())
                                    .unwrap_or_else(|| self.identity.raft_addr.clone());
                                (*id, BasicNode { addr })
                            })
                            .collect(),
                        preferred_leader: partition.initial[0],
                    });
                (group, start)
            })
            .collect();
        // Each new group waits for a WAL sync of its first writes; opened together, they
        // share the syncs (group commit) instead of paying one each.
        let (count, started) = (opening.len(), std::time::Instant::now());
        let mut opened = futures::stream::iter(opening)
            .map(|(group, start)| self.open_partition(group, start))
            .buffer_unordered(OPEN_AT_ONCE);
        // Every opening runs to its end, even after one fails: one dropped halfway could
        // leave a group running that the node does not know it has.
        let mut first_error = None;
        while let Some(result) = opened.next().await {
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        if count > 0 {
            tracing::info!(count, elapsed = ?started.elapsed(), "partition replicas opened");
        }
        Ok(())
    }

    /// Opens a partition group from storage, starting it as `start` says if it is new.
    pub async fn open_partition(
        &self,
        group: RaftGroupId,
        start: Option<GroupStart>,
    ) -> Result<Arc<PartitionReplica>, NodeError> {
        if let Some(existing) = self.partition(group) {
            return Ok(existing);
        }
        let log = self.store.partition_log(group);
        let reader = PartitionReader::new(log, self.store.raft_log(group));
        let (mut machine, status) = PartitionMachine::open(reader.clone())?;
        machine.compact_by_hash(self.compact_by_hash);
        let env = GroupEnv {
            identity: &self.identity,
            store: &self.store,
            config: &self.config,
            transport: &self.transport,
            contacts: &self.contacts,
            purge_unread: self.purge_unread,
        };
        let replica = open_group(&env, group, machine).await?;
        if let Some(start) = start {
            if start.preferred_leader == self.identity.id {
                initialize_if_new(&replica, start.voters).await?;
            } else {
                // The preferred leader starts the group and so becomes its first leader,
                // as in Kafka. Should it be down, the others start it after a while.
                let replica = replica.clone();
                let wait = self.config.election_timeout_max * 2;
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                    if let Err(e) = initialize_if_new(&replica, start.voters).await {
                        tracing::debug!(group = replica.group, error = %e, "not starting the group");
                    }
                });
            }
        }
        let partition = Arc::new(PartitionReplica {
            replica,
            reader,
            status,
        });
        self.partitions
            .write()
            .expect("partition map lock")
            .insert(group, partition.clone());
        self.partition_opened.notify_waiters();
        tracing::debug!(group, "partition replica open");
        Ok(partition)
    }

    /// Stops a partition group and deletes its data from this node.
    pub async fn remove_partition(&self, group: RaftGroupId) -> Result<(), NodeError> {
        let removed = self
            .partitions
            .write()
            .expect("partition map lock")
            .remove(&group);
        if let Some(p) = removed {
            if let Err(e) = p.replica.raft.shutdown().await {
                tracing::warn!(group, error = %e, "raft group did not shut down cleanly");
            }
        }
        self.store.delete_group(group)?;
        tracing::info!(group, "partition replica removed");
        Ok(())
    }

    /// Stops every group (before the process exits).
    pub async fn shutdown(&self) {
        let partitions: Vec<_> = self
            .partitions
            .write()
            .expect("partition map lock")
            .drain()
            .map(|(_, p)| p)
            .collect();
        for p in partitions {
            let _ = p.replica.raft.shutdown().await;
        }
        let _ = self.controller.replica.raft.shutdown().await;
    }
}

/// What every group of a node is opened with.
struct GroupEnv<'a> {
    identity: &'a NodeIdentity,
    store: &'a Store,
    config: &'a Arc<openraft::Config>,
    transport: &'a Arc<Transport>,
    contacts: &'a Arc<QuorumContacts>,
    purge_unread: bool,
}

async fn open_group<M: Machine>(
    env: &GroupEnv<'_>,
    group: RaftGroupId,
    machine: M,
) -> Result<Replica, NodeError> {
    let GroupEnv {
        identity,
        store,
        config,
        transport,
        contacts,
        purge_unread,
    } = *env;
    let mut log_store = LogStore::new(store.raft_log(group));
    let restored = RestoredLeadership::read(&mut log_store, identity.id)
        .await
        .map_err(|e| NodeError::Raft(format!("group {group}: {e}")))?;
    let floor = log_store.floor();
    let state_machine = StateMachine::open(
        store.clone(),
        group,
        machine,
        log_store.recent(),
        floor.clone(),
    )
    .map_err(|e| NodeError::Raft(e.to_string()))?
    .purging_unread(purge_unread);
    let network = NetworkFactory::new(
        identity.id,
        transport.clone(),
        contacts.clone(),
        store.raft_log(group),
    );
    let raft = Raft::new(
        identity.id,
        config.clone(),
        network,
        log_store,
        state_machine,
    )
    .await
    .map_err(|e| NodeError::Raft(format!("group {group}: {e}")))?;
    let metrics = raft.metrics();
    Ok(Replica {
        group,
        node_id: identity.id,
        raft,
        metrics,
        handover: Default::default(),
        contacts: contacts.clone(),
        lease: Duration::from_millis(config.election_timeout_max),
        restored,
        election_timer: ElectionTimer::new(Duration::from_millis(
            config.election_timeout_max - config.election_timeout_min,
        )),
        quorum_lease: Default::default(),
        floor,
        purge_seen: Default::default(),
    })
}

/// Initialises a group that has never had any state on this node. Every initial replica
/// does this with the same membership, which openraft documents as safe.
async fn initialize_if_new(
    replica: &Replica,
    voters: BTreeMap<NodeId, BasicNode>,
) -> Result<(), NodeError> {
    let initialized = replica
        .raft
        .is_initialized()
        .await
        .map_err(|e| NodeError::Raft(e.to_string()))?;
    if !initialized {
        replica
            .raft
            .initialize(voters)
            .await
            .map_err(|e| NodeError::Raft(format!("initialise group {}: {e}", replica.group)))?;
    }
    Ok(())
}
