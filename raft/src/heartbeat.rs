//! Heartbeats: every group's at once, and those of quiet groups in one message per peer.
//!
//! openraft times each group's heartbeats on its own, so a node leading hundreds of groups
//! would send a lone small message every few hundred microseconds, each its own syscall and
//! wake-up on both sides. [`heartbeat_loop`] triggers them together instead, so the
//! heartbeats of all groups to one peer leave in a handful of writes (see `transport`).
//!
//! Even so, an openraft heartbeat wakes the group's core and replication task on the
//! leader and its core on each follower, and every wake-up publishes fresh metrics: with a
//! thousand idle partitions, that was most of an idle node's CPU, spent by groups with
//! nothing to say. Such a group is *quiet*: its leader has applied its whole log and every
//! follower has matched it, at this round and at the same log end the round before, whose
//! openraft heartbeat carried the commit index to the followers. For its quiet groups a
//! leader sends each peer one [`Request::QuietHeartbeats`] naming each group's vote and
//! last log index, and a follower with exactly that vote and log, all applied, confirms
//! the group (unless it voted in the group within the lease). A confirmation stands for an
//! accepted append: it keeps the leader's quorum fresh (`Replica::leadership`), the
//! follower's election timer off, and the leader's node counted alive for fast failover
//! (`peers`). Anything else (a write, a follower behind or silent, a follower with another
//! vote or log) and the group gets openraft's heartbeat at the next round, which settles
//! it in Raft's usual way.
//!
//! openraft hears nothing from a quiet group, so its own clocks of leader contact go
//! stale. The election timer allows for that (`crate::election_timer`), and
//! [`RaftNode::refuses_vote`] stands in for openraft's leader lease, which would otherwise
//! let a candidate unseat a leader in contact with its quorum.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use openraft::raft::{VoteRequest, VoteResponse};
use openraft::{BasicNode, RaftMetrics, ServerState};

use crate::contacts::QuorumContacts;
use crate::messages::{QuietGroup, Reply, Request};
use crate::node::RaftNode;
use crate::replica::{is_voter, voters_of, Replica};
use crate::transport::Transport;
use crate::types::{NodeId, Raft, RaftGroupId};

type Metrics = RaftMetrics<NodeId, BasicNode>;

/// If this node leads `group` and has nothing to replicate (its whole log applied, every
/// follower matched, no learners, no membership change): the group's quiet heartbeat and
/// the followers to send it to.
fn caught_up(m: &Metrics, group: RaftGroupId) -> Option<(QuietGroup, Vec<NodeId>)> {
    if m.state != ServerState::Leader || m.current_leader != Some(m.id) {
        return None;
    }
    let membership = m.membership_config.membership();
    let settled =
        membership.get_joint_config().len() == 1 && membership.learner_ids().next().is_none();
    if !settled || !is_voter(membership, m.id) {
        return None;
    }
    let last = m.last_log_index?;
    if m.last_applied.map(|applied| applied.index) != Some(last) {
        return None;
    }
    let replication = m.replication.as_ref()?;
    let mut followers = Vec::new();
    for follower in voters_of(membership).filter(|v| *v != m.id) {
        let matched = replication.get(&follower)?.as_ref()?.index;
        if matched != last {
            return None;
        }
        followers.push(follower);
    }
    let heartbeat = QuietGroup {
        group,
        vote: m.vote,
        last_log_index: last,
    };
    Some((heartbeat, followers))
}

/// Whether a follower with metrics `m` confirms `heartbeat` from `leader`: it follows that
/// leader with the same vote and has the same log, all applied. A follower that has not
/// applied its whole log has not learnt the commit index yet (its ack or the leader's
/// next message was lost, or it restarted): not confirming puts openraft's heartbeats,
/// which carry the commit index, back on.
fn confirms(m: &Metrics, leader: NodeId, heartbeat: &QuietGroup) -> bool {
    m.state == ServerState::Follower
        && m.current_leader == Some(leader)
        && m.vote == heartbeat.vote
        && m.last_log_index == Some(heartbeat.last_log_index)
        && m.last_applied.map(|applied| applied.index) == Some(heartbeat.last_log_index)
}

/// Heartbeats of the groups a node leads since it started, one per group and round.
#[derive(Debug, Default)]
pub(crate) struct HeartbeatCounts {
    /// openraft's: an append to each follower.
    appends: AtomicU64,
    /// Quiet groups': an entry in one message per peer (or nothing, without followers).
    quiet: AtomicU64,
}

impl HeartbeatCounts {
    pub fn totals(&self) -> (u64, u64) {
        (
            self.appends.load(Ordering::Relaxed),
            self.quiet.load(Ordering::Relaxed),
        )
    }
}

/// What one round of [`heartbeat_loop`] sends.
#[derive(Default)]
struct Round {
    /// Groups that get openraft's heartbeat.
    raft_heartbeats: Vec<Raft>,
    /// How many groups are quiet.
    quiet_groups: u64,
    /// Per peer: its address and the quiet groups it follows.
    quiet: HashMap<NodeId, (String, Vec<QuietGroup>)>,
    /// Groups caught up at this round, with their last log index: quiet at the next
    /// round if still caught up at the same index.
    caught_up: HashSet<(RaftGroupId, u64)>,
}

impl Round {
    /// Decides how `replica`, a group this node leads, is heard from this round.
    fn add(
        &mut self,
        replica: &Replica,
        caught_up_before: &HashSet<(RaftGroupId, u64)>,
        ack_limit: Duration,
    ) {
        let caught_up = caught_up(&replica.metrics.borrow(), replica.group);
        let Some((heartbeat, followers)) = caught_up else {
            self.raft_heartbeats.push(replica.raft.clone());
            return;
        };
        let key = (replica.group, heartbeat.last_log_index);
        self.caught_up.insert(key);
        let confirmed = |follower: &NodeId| {
            replica
                .contacts
                .last_accepted(replica.group, *follower)
                .is_some_and(|t| t.elapsed() < ack_limit)
        };
        if !caught_up_before.contains(&key) || !followers.iter().all(confirmed) {
            self.raft_heartbeats.push(replica.raft.clone());
            return;
        }
        self.quiet_groups += 1;
        for follower in followers {
            let groups = match self.quiet.entry(follower) {
                Entry::Occupied(peer) => &mut peer.into_mut().1,
                Entry::Vacant(peer) => {
                    let Some(addr) = replica.member_addr(follower) else {
                        continue;
                    };
                    &mut peer.insert((addr, Vec::new())).1
                }
            };
            groups.push(heartbeat.clone());
        }
    }
}

/// Sends the heartbeats of every group this node leads at the same moment, once per
/// interval: openraft's for groups with something to replicate or settle, one
/// [`Request::QuietHeartbeats`] per peer for the quiet ones.
pub(crate) async fn heartbeat_loop(node: Weak<RaftNode>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A follower that confirmed neither of the last heartbeats gets openraft's again.
    let ack_limit = interval * 3 / 2;
    let mut caught_up_before = HashSet::new();
    loop {
        ticker.tick().await;
        let Some(node) = node.upgrade() else { return };
        let mut round = Round::default();
        node.for_each_replica(|replica| {
            // A group being handed over stays silent, so its lease runs out.
            let leading = replica.metrics.borrow().current_leader == Some(node.id());
            if leading && replica.handing_over_to().is_none() {
                round.add(replica, &caught_up_before, ack_limit);
            }
        });
        caught_up_before = round.caught_up;
        let counts = &node.heartbeats;
        let appends = round.raft_heartbeats.len() as u64;
        counts.appends.fetch_add(appends, Ordering::Relaxed);
        counts
            .quiet
            .fetch_add(round.quiet_groups, Ordering::Relaxed);
        for (peer, (addr, groups)) in round.quiet {
            tokio::spawn(send_quiet(
                node.transport.clone(),
                node.contacts.clone(),
                node.id(),
                peer,
                addr,
                groups,
                interval,
            ));
        }
        drop(node);
        for raft in round.raft_heartbeats {
            let _ = raft.trigger().heartbeat().await;
        }
    }
}

/// Sends one peer the heartbeats of the quiet groups it follows and records which it
/// confirmed.
async fn send_quiet(
    transport: Arc<Transport>,
    contacts: Arc<QuorumContacts>,
    from: NodeId,
    peer: NodeId,
    addr: String,
    groups: Vec<QuietGroup>,
    timeout: Duration,
) {
    let request = Request::QuietHeartbeats { from, groups };
    let sent = Instant::now();
    if let Ok(Reply::QuietConfirmed(confirmed)) =
        transport.call(peer, &addr, &request, timeout).await
    {
        contacts.accepted_by_all(&confirmed, peer, sent);
    }
}

impl RaftNode {
    /// A follower's side of [`Request::QuietHeartbeats`]: the groups it confirms.
    pub(crate) fn confirm_quiet(&self, leader: NodeId, groups: &[QuietGroup]) -> Vec<RaftGroupId> {
        let lease = self.leader_lease();
        let replicas = self.replica_map();
        groups
            .iter()
            .filter(|heartbeat| {
                let Some(replica) = replicas.get(heartbeat.group) else {
                    return false;
                };
                let confirmed = replica.election_timer.may_confirm_quiet(lease)
                    && confirms(&replica.metrics.borrow(), leader, heartbeat);
                if confirmed {
                    replica.election_timer.heard_quiet_leader();
                }
                confirmed
            })
            .map(|heartbeat| heartbeat.group)
            .collect()
    }

    /// openraft's leader lease where openraft cannot see it: the refusal to send a
    /// candidate in `replica`'s group, if this node is the leader in contact with a
    /// quorum, or a follower that confirmed its leader's quiet heartbeat within the lease.
    /// openraft refuses in the same cases, but counts only the appends it saw.
    pub(crate) fn refuses_vote(
        &self,
        replica: &Replica,
        request: &VoteRequest<NodeId>,
    ) -> Option<VoteResponse<NodeId>> {
        let candidate = request.vote.leader_id().voted_for();
        let (state, leader) = {
            let m = replica.metrics.borrow();
            (m.state, m.current_leader)
        };
        let refuse = match state {
            ServerState::Follower => {
                leader.is_some()
                    && leader != candidate
                    && replica
                        .election_timer
                        .quiet_leader_silence()
                        .is_some_and(|silence| silence < self.leader_lease())
            }
            ServerState::Leader => {
                candidate != Some(self.id())
                    && replica.handing_over_to().is_none()
                    && replica.voters().contains(&self.id())
                    && replica.leadership().quorum
            }
            _ => false,
        };
        if !refuse {
            return None;
        }
        let m = replica.metrics.borrow();
        tracing::debug!(
            group = replica.group,
            ?candidate,
            "refusing a vote: the leader is in contact within its lease"
        );
        Some(VoteResponse {
            vote: m.vote,
            vote_granted: false,
            // A lower bound of this node's log: openraft uses it only to delay the
            // candidate's next election when this log is longer.
            last_log_id: m.last_applied,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use openraft::{CommittedLeaderId, LogId, Membership, StoredMembership};

    use super::*;
    use crate::types::Vote;

    fn log_id(term: u64, index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    /// Node 1 leading a group of voters 1, 2, 3 in term 2 with a log ending at 10, all
    /// applied; followers 2 and 3 matched at `matched`.
    fn leader(matched: [Option<u64>; 2]) -> Metrics {
        let mut m = Metrics::new_initial(1);
        let voters: BTreeSet<NodeId> = [1, 2, 3].into();
        let nodes: BTreeMap<NodeId, BasicNode> = voters
            .iter()
            .map(|id| (*id, BasicNode::default()))
            .collect();
        m.membership_config = Arc::new(StoredMembership::new(
            Some(log_id(1, 1)),
            Membership::new(vec![voters], nodes),
        ));
        m.state = ServerState::Leader;
        m.current_leader = Some(1);
        m.current_term = 2;
        m.vote = Vote::new_committed(2, 1);
        m.last_log_index = Some(10);
        m.last_applied = Some(log_id(2, 10));
        m.replication = Some(
            [2, 3]
                .into_iter()
                .zip(matched)
                .map(|(id, index)| (id, index.map(|i| log_id(2, i))))
                .collect(),
        );
        m
    }

    #[test]
    fn a_leader_whose_followers_have_its_whole_log_is_quiet() {
        let (heartbeat, followers) = caught_up(&leader([Some(10), Some(10)]), 7).expect("quiet");
        assert_eq!(followers, vec![2, 3]);
        assert_eq!(heartbeat.group, 7);
        assert_eq!(heartbeat.last_log_index, 10);
        assert_eq!(heartbeat.vote, Vote::new_committed(2, 1));
    }

    #[test]
    fn a_follower_behind_an_unapplied_entry_or_a_learner_keeps_the_group_talking() {
        assert!(caught_up(&leader([Some(10), Some(9)]), 7).is_none());
        assert!(caught_up(&leader([Some(10), None]), 7).is_none());
        let mut unapplied = leader([Some(10), Some(10)]);
        unapplied.last_applied = Some(log_id(2, 9));
        assert!(caught_up(&unapplied, 7).is_none());
        let mut with_learner = leader([Some(10), Some(10)]);
        let voters: BTreeSet<NodeId> = [1, 2, 3].into();
        let nodes: BTreeMap<NodeId, BasicNode> = [1, 2, 3, 4]
            .into_iter()
            .map(|id| (id, BasicNode::default()))
            .collect();
        with_learner.membership_config = Arc::new(StoredMembership::new(
            Some(log_id(1, 1)),
            Membership::new(vec![voters], nodes),
        ));
        assert!(caught_up(&with_learner, 7).is_none());
        let mut follower = leader([Some(10), Some(10)]);
        follower.state = ServerState::Follower;
        follower.current_leader = Some(2);
        assert!(caught_up(&follower, 7).is_none());
    }

    #[test]
    fn a_follower_confirms_only_its_own_leader_with_the_same_vote_and_log() {
        let (heartbeat, _) = caught_up(&leader([Some(10), Some(10)]), 7).expect("quiet");
        let mut follower = leader([None, None]);
        follower.id = 2;
        follower.state = ServerState::Follower;
        follower.replication = None;
        assert!(confirms(&follower, 1, &heartbeat));
        assert!(!confirms(&follower, 3, &heartbeat), "another sender");
        let mut behind = follower.clone();
        behind.last_log_index = Some(9);
        assert!(!confirms(&behind, 1, &heartbeat));
        let mut unapplied = follower.clone();
        unapplied.last_applied = Some(log_id(2, 9));
        assert!(
            !confirms(&unapplied, 1, &heartbeat),
            "commit index not learnt"
        );
        let mut newer_vote = follower.clone();
        newer_vote.vote = Vote::new(3, 3);
        assert!(!confirms(&newer_vote, 1, &heartbeat));
        let mut candidate = follower;
        candidate.state = ServerState::Candidate;
        assert!(!confirms(&candidate, 1, &heartbeat));
    }
}
