//! Nodes joining and leaving a running cluster, and partitions moving between nodes.
//!
//! A new node starts with the Raft addresses of running nodes (`--join`) and asks to be
//! admitted: the controller group's leader adds it as a learner of the controller group, so
//! it receives the metadata, and it then registers as a broker like any other node.
//! Unregistering a broker (Kafka's UnregisterBroker) takes it out of the controller group
//! again; a removed voter is replaced by a learner, so the controller keeps three voters
//! where it can.
//!
//! Moving a partition is recorded in the metadata first (Kafka's
//! AlterPartitionReassignments), which makes the new replicas open the group. The
//! partition's leader then adds them as learners, waits for them to catch up, changes the
//! voters (openraft's joint consensus), and records the move as complete; replicas no
//! longer listed then delete their copy. A leader that removes itself steps down once the
//! new voters are committed, and they elect a leader among themselves. Should a leader fail
//! midway, the next one picks the move up where the voters show it stands.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Mutex, Weak};
use std::time::Duration;

use openraft::{BasicNode, ChangeMembers};

use crate::kafka::controller::{ClusterMetadata, CONTROLLER_GROUP};
use crate::messages::{ControllerMembership, Reply, Request};
use crate::node::{NodeError, RaftNode};
use crate::replica::Replica;
use crate::types::{Command, ControllerCommand, NodeId, RaftGroupId};

/// How often leaders look for partitions to move.
const MOVE_CHECK: Duration = Duration::from_millis(500);
/// Every how many [`MOVE_CHECK`]s leaders also compare every partition's members with its
/// listed replicas (a safety net for interrupted moves): with thousands of partitions,
/// that scan was a tenth of an idle node's CPU at twice a second.
const DRIFT_CHECK_EVERY: u64 = 4;
/// How often a move looks at how far a new replica has caught up.
const CATCH_UP_POLL: Duration = Duration::from_millis(100);
/// Seed nodes given by address have no id yet; calls to them use ids from here down.
const SEED_ID_BASE: NodeId = NodeId::MAX - 1024;

/// The groups whose move this node is carrying out.
#[derive(Default)]
pub(crate) struct MovesInProgress(Mutex<HashSet<RaftGroupId>>);

impl RaftNode {
    /// Asks the cluster, through any of `seeds` (Raft addresses), to admit this node.
    /// Returns once a controller leader has added it; a node that is a member already
    /// returns at once.
    pub async fn join(&self, seeds: &[String]) -> Result<(), NodeError> {
        let me = self.id();
        // A membership that lists this node but is not committed is no admission: the
        // leader that appended it may have lost leadership, and its successor never
        // heard of this node. Ask again then; admitting a member is a no-op.
        if self.controller.replica.has_committed_member(me) {
            return Ok(());
        }
        let request = Request::ControllerMembership(ControllerMembership::Admit {
            id: me,
            addr: self.identity.raft_addr.clone(),
        });
        let mut last_error = String::from("no seed given");
        for (i, seed) in seeds.iter().enumerate() {
            let seed_id = SEED_ID_BASE + i as NodeId;
            match self
                .transport
                .call(seed_id, seed, &request, Duration::from_secs(30))
                .await
            {
                Ok(Reply::Changed(Ok(()))) => return Ok(()),
                Ok(Reply::Changed(Err(e))) => last_error = format!("{seed}: {e}"),
                Ok(other) => last_error = format!("{seed} answered {other:?}"),
                Err(e) => last_error = format!("{seed}: {e}"),
            }
        }
        Err(NodeError::Raft(format!(
            "cannot join the cluster: {last_error}"
        )))
    }

    /// Applies `change` on the controller group's leader, forwarding it there if needed.
    pub async fn change_controller_membership(
        &self,
        change: ControllerMembership,
    ) -> Result<(), String> {
        let replica = &self.controller.replica;
        let leader = replica
            .leadership()
            .leader
            .ok_or("the controller group has no leader right now")?;
        if leader != self.id() {
            let addr = replica
                .member_addr(leader)
                .ok_or("the controller leader's address is unknown")?;
            let request = Request::ControllerMembership(change);
            return match self
                .transport
                .call(leader, &addr, &request, Duration::from_secs(30))
                .await
            {
                Ok(Reply::Changed(result)) => result,
                Ok(other) => Err(format!("node {leader} answered {other:?}")),
                Err(e) => Err(e.to_string()),
            };
        }
        let raft = &replica.raft;
        let membership = replica
            .metrics
            .borrow()
            .membership_config
            .membership()
            .clone();
        let outcome = match change {
            ControllerMembership::Admit { id, addr } => {
                tracing::info!(node = id, %addr, "admitting a node to the cluster");
                raft.add_learner(id, BasicNode { addr }, false).await
            }
            ControllerMembership::Remove { id } => {
                let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
                if voters.contains(&id) {
                    let mut remaining: BTreeSet<NodeId> =
                        voters.into_iter().filter(|v| *v != id).collect();
                    // Keep as many voters as before where a learner can step in.
                    if let Some(learner) = membership.learner_ids().find(|l| *l != id) {
                        remaining.insert(learner);
                    }
                    tracing::info!(node = id, voters = ?remaining, "removing a controller voter");
                    raft.change_membership(remaining, false).await
                } else if membership.get_node(&id).is_some() {
                    tracing::info!(node = id, "removing a controller learner");
                    raft.change_membership(ChangeMembers::RemoveNodes([id].into()), false)
                        .await
                } else {
                    return Ok(());
                }
            }
        };
        outcome.map(|_| ()).map_err(|e| e.to_string())
    }
}

/// Carries out the partition moves this node's leaderships call for, every [`MOVE_CHECK`].
pub(crate) async fn move_loop(node: Weak<RaftNode>) {
    for round in 1u64.. {
        tokio::time::sleep(MOVE_CHECK).await;
        let Some(node) = node.upgrade() else { return };
        let metadata = node.controller.metadata();
        let mut moves: Vec<(RaftGroupId, Vec<NodeId>, bool)> = metadata
            .reassignments
            .iter()
            .map(|(group, target)| (*group, target.clone(), true))
            .collect();
        // Members that differ from the replicas with no move under way: a move cancelled or
        // retargeted after it added a learner or changed the voters. Put the listed
        // replicas back.
        if round % DRIFT_CHECK_EVERY == 0 {
            let replicas = node.replica_map();
            for topic in metadata.topics.values() {
                for p in &topic.partitions {
                    if metadata.reassignments.contains_key(&p.group) {
                        continue;
                    }
                    let Some(partition) = replicas.partition(p.group) else {
                        continue;
                    };
                    // Only the leader carries out a move (see below): skip the others early.
                    if partition.replica.metrics.borrow().current_leader != Some(node.id()) {
                        continue;
                    }
                    if !partition.replica.members_are(&p.replicas) {
                        moves.push((p.group, p.replicas.clone(), false));
                    }
                }
            }
        }
        for (group, target, record) in moves {
            let Some(partition) = node.partition(group) else {
                continue;
            };
            if partition.replica.leadership().leader != Some(node.id()) {
                continue;
            }
            if !node.moves.0.lock().expect("moves lock").insert(group) {
                continue;
            }
            let addrs: BTreeMap<NodeId, String> = target
                .iter()
                .filter_map(|id| metadata.brokers.get(id).map(|b| (*id, b.raft_addr.clone())))
                .collect();
            let node = node.clone();
            tokio::spawn(async move {
                if let Err(e) = move_partition(&node, group, &target, &addrs, record).await {
                    tracing::warn!(group, error = %e, "partition move interrupted; the next check takes it up");
                }
                node.moves.0.lock().expect("moves lock").remove(&group);
            });
        }
    }
}

/// Makes `target` the voters of `group` (which this node leads), drops learners it does not
/// list, and records the move as complete when `record` (a reassignment asked for it).
///
/// New replicas join as learners first; the voters change only once they hold the log.
/// A move retargeted or cancelled meanwhile is abandoned (the next check of [`move_loop`]
/// starts the new one): its learner may never catch up, since a node deletes a replica the
/// metadata no longer lists.
async fn move_partition(
    node: &RaftNode,
    group: RaftGroupId,
    target: &[NodeId],
    addrs: &BTreeMap<NodeId, String>,
    record: bool,
) -> Result<(), String> {
    let partition = node.partition(group).ok_or("the partition is gone")?;
    let raft = &partition.replica.raft;
    let membership = partition
        .replica
        .metrics
        .borrow()
        .membership_config
        .membership()
        .clone();
    let wanted: BTreeSet<NodeId> = target.iter().copied().collect();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    if voters != wanted {
        for id in wanted.difference(&voters) {
            // The learner must hold the log up to here: the entry that added it, or
            // what the log holds now if an earlier attempt added it.
            let goal = if membership.get_node(id).is_none() {
                let addr = addrs
                    .get(id)
                    .cloned()
                    .ok_or_else(|| format!("broker {id} has no address"))?;
                tracing::info!(
                    group,
                    node = id,
                    "adding a replica; waiting for it to catch up"
                );
                let added = raft
                    .add_learner(*id, BasicNode { addr }, false)
                    .await
                    .map_err(|e| e.to_string())?;
                added.log_id.index
            } else {
                partition
                    .replica
                    .metrics
                    .borrow()
                    .last_log_index
                    .unwrap_or(0)
            };
            wait_for_catch_up(node, &partition.replica, *id, goal, target, record).await?;
        }
        tracing::info!(group, voters = ?wanted, "changing the partition's voters");
        raft.change_membership(wanted.clone(), false)
            .await
            .map_err(|e| e.to_string())?;
    }
    let unlisted: BTreeSet<NodeId> = partition
        .replica
        .members()
        .into_iter()
        .filter(|id| !wanted.contains(id))
        .collect();
    if !unlisted.is_empty() {
        tracing::info!(group, learners = ?unlisted, "dropping learners the partition no longer lists");
        raft.change_membership(ChangeMembers::RemoveNodes(unlisted), false)
            .await
            .map_err(|e| e.to_string())?;
    }
    if !record {
        tracing::info!(group, voters = ?target, "partition voters back in line with its replicas");
        return Ok(());
    }
    let done = Command::Controller(ControllerCommand::CompleteReassignment {
        group,
        replicas: target.to_vec(),
    });
    node.propose(CONTROLLER_GROUP, done)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(group, replicas = ?target, "partition moved");
    Ok(())
}

/// Waits until learner `id` of the group `replica` leads holds the log up to `goal`, as long
/// as the metadata still asks for `target`. (openraft's own wait, `add_learner(.., true)`,
/// counts a learner within 5,000 entries as caught up, even one that holds nothing, and
/// never gives up.)
async fn wait_for_catch_up(
    node: &RaftNode,
    replica: &Replica,
    id: NodeId,
    goal: u64,
    target: &[NodeId],
    record: bool,
) -> Result<(), String> {
    let group = replica.group();
    loop {
        if !still_wanted(&node.controller.metadata(), group, target, record) {
            return Err(format!(
                "abandoned: the partition no longer moves to {target:?}"
            ));
        }
        {
            let metrics = replica.metrics.borrow();
            if metrics.current_leader != Some(node.id()) {
                return Err("this node no longer leads the partition".into());
            }
            let matched = metrics
                .replication
                .as_ref()
                .and_then(|progress| progress.get(&id).copied().flatten());
            if matched.is_some_and(|m| m.index >= goal) {
                return Ok(());
            }
        }
        tokio::time::sleep(CATCH_UP_POLL).await;
    }
}

/// Whether the metadata still asks for `group` to have the replicas `target`: as the goal of
/// its reassignment (`record`), or as its listed replicas with no reassignment under way.
fn still_wanted(
    metadata: &ClusterMetadata,
    group: RaftGroupId,
    target: &[NodeId],
    record: bool,
) -> bool {
    if record {
        return metadata.reassignments.get(&group).map(Vec::as_slice) == Some(target);
    }
    !metadata.reassignments.contains_key(&group)
        && metadata
            .partition_of_group(group)
            .is_some_and(|(topic, i)| topic.partitions[i].replicas == target)
}
