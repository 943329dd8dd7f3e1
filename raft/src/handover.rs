//! Moving a partition's leadership to its preferred replica, the first of its replicas as
//! in Kafka: on request (Kafka's ElectLeaders) and by the periodic leader balancer, which
//! undoes the pile-up of leaders on the nodes that stayed up through a restart.
//!
//! openraft 0.9 cannot transfer leadership, and a voter refuses to vote while its leader's
//! lease (the maximum election timeout) runs. So the leader hands over: it stops appending
//! to the group (producers get NOT_LEADER_OR_FOLLOWER naming the preferred replica, and
//! retry) and sending its heartbeats, waits until the preferred replica has every entry,
//! and asks it to stand once the lease has run out at the other voters. Being caught up,
//! it wins; the old leader learns the new term and follows. Should nobody win within
//! [`HANDOVER_LIMIT`], the old leader carries on as before. Produce to the partition pauses
//! for about one lease per hand-over.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::messages::{HandoverError, Reply, Request};
use crate::node::RaftNode;
use crate::replica::Handover;
use crate::types::{NodeId, RaftGroupId};

/// How long a leader stays silent for a hand-over before it gives up and carries on.
const HANDOVER_LIMIT: Duration = Duration::from_secs(4);
/// How long after the lease the preferred replica stands: the other voters must have seen
/// the lease pass too.
const STAND_MARGIN: Duration = Duration::from_millis(150);
/// The preferred replica must have answered this recently to be handed a group.
const ALIVE_WITHIN: Duration = Duration::from_secs(2);
/// How far behind the leader (in entries) the preferred replica may be when a hand-over
/// starts; it then has [`CATCH_UP_LIMIT`] to take the rest, with appends paused.
const MAX_LAG: u64 = 1000;
const CATCH_UP_LIMIT: Duration = Duration::from_secs(2);
/// How many groups one node hands over per balancing round, so that a node coming back
/// after a restart takes its leaderships back in waves rather than all at once.
const HANDOVERS_PER_ROUND: usize = 64;

impl RaftNode {
    /// Makes `to` the leader of `group`, wherever its current leader is. Returns once the
    /// hand-over has started; [`RaftNode::leader_of`] shows when it is done.
    pub async fn elect_preferred(
        &self,
        group: RaftGroupId,
        to: NodeId,
    ) -> Result<(), HandoverError> {
        let leader = self.leader_of(group).ok_or(HandoverError::NoLeader)?;
        if leader.node == to {
            return Err(HandoverError::NotNeeded(to));
        }
        if leader.node == self.id() {
            return self.hand_over(group, to).await;
        }
        let addr = self
            .controller
            .metadata()
            .brokers
            .get(&leader.node)
            .map(|b| b.raft_addr.clone())
            .ok_or(HandoverError::NoLeader)?;
        let request = Request::HandOver { group, to };
        match self
            .transport
            .call(leader.node, &addr, &request, Duration::from_secs(5))
            .await
        {
            Ok(Reply::HandedOver(result)) => result,
            Ok(other) => Err(HandoverError::Unavailable(format!(
                "node {} answered {other:?}",
                leader.node
            ))),
            Err(e) => Err(HandoverError::Unavailable(e.to_string())),
        }
    }

    /// Starts handing `group`, which this node leads, over to `to`.
    pub(crate) async fn hand_over(
        &self,
        group: RaftGroupId,
        to: NodeId,
    ) -> Result<(), HandoverError> {
        let replica = self
            .partition(group)
            .map(|p| p.replica.clone())
            .ok_or(HandoverError::NoLeader)?;
        if replica.leadership().leader != Some(self.id()) {
            return Err(HandoverError::NoLeader);
        }
        if to == self.id() {
            return Err(HandoverError::NotNeeded(to));
        }
        if self
            .follower_lag(&replica, to, ALIVE_WITHIN)
            .is_none_or(|lag| lag > MAX_LAG)
        {
            return Err(HandoverError::NotInSync(to));
        }
        let addr = replica
            .member_addr(to)
            .ok_or(HandoverError::NotInSync(to))?;
        // Appends stop now; the preferred replica takes what it lacks, then stands.
        *replica.handover.lock().expect("handover lock") = Some(Handover {
            to,
            until: Instant::now() + CATCH_UP_LIMIT + HANDOVER_LIMIT,
        });
        let caught_up_by = Instant::now() + CATCH_UP_LIMIT;
        while self.follower_lag(&replica, to, ALIVE_WITHIN) != Some(0) {
            if Instant::now() >= caught_up_by {
                *replica.handover.lock().expect("handover lock") = None;
                return Err(HandoverError::NotInSync(to));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let stand = Request::StartElection {
            group,
            after_ms: (self.leader_lease() + STAND_MARGIN).as_millis() as u64,
        };
        if let Err(e) = self.transport.notify(to, &addr, &stand).await {
            *replica.handover.lock().expect("handover lock") = None;
            return Err(HandoverError::Unavailable(e.to_string()));
        }
        tracing::info!(
            group,
            to,
            "handing leadership over to the preferred replica"
        );
        Ok(())
    }

    /// Stands for election in `group` after `after` (asked by its leader).
    pub(crate) fn stand_after(&self, group: RaftGroupId, after: Duration) {
        let Some(partition) = self.partition(group) else {
            return;
        };
        let raft = partition.replica.raft.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let _ = raft.trigger().elect().await;
        });
    }
}

/// Every `interval`, hands each group this node leads to its preferred replica when that
/// replica is alive and caught up (Kafka's auto.leader.rebalance.enable).
pub(crate) async fn balance_loop(node: Weak<RaftNode>, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        let Some(node): Option<Arc<RaftNode>> = node.upgrade() else {
            return;
        };
        let metadata = node.controller.metadata();
        let candidates: Vec<(RaftGroupId, NodeId)> = metadata
            .topics
            .values()
            .flat_map(|topic| &topic.partitions)
            .filter_map(|partition| {
                let preferred = *partition.replicas.first()?;
                let local = node.partition(partition.group)?;
                let ready = local.replica.leadership().serving
                    && preferred != node.id()
                    && local.replica.handing_over_to().is_none()
                    && node
                        .follower_lag(&local.replica, preferred, ALIVE_WITHIN)
                        .is_some_and(|lag| lag <= MAX_LAG);
                ready.then_some((partition.group, preferred))
            })
            .take(HANDOVERS_PER_ROUND)
            .collect();
        let started = candidates.len();
        for (group, preferred) in candidates {
            let node = node.clone();
            tokio::spawn(async move {
                if let Err(e) = node.hand_over(group, preferred).await {
                    tracing::debug!(group, error = %e, "leader balancing: not now");
                }
            });
        }
        if started > 0 {
            tracing::info!(
                groups = started,
                "leader balancing: handing leaderships back"
            );
        }
    }
}
