//! One Raft group on this node: proposing to it, and who leads it.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::ClientWriteError;
use openraft::raft::responder::Responder;
use openraft::storage::RaftLogStorage;
use openraft::{BasicNode, Membership, RaftMetrics, StoredMembership};
use tokio::sync::{oneshot, watch};

use crate::contacts::QuorumContacts;
use crate::election_timer::ElectionTimer;
use crate::log_store::LogStore;
use crate::snapshot::LogFloor;
use crate::types::{
    AppliedReply, Command, NodeId, Raft, RaftGroupId, Response, StorageError, Types,
};

type ResponderReceiverOf<C> =
    <<C as openraft::RaftTypeConfig>::Responder as Responder<C>>::Receiver;

/// Who leads a group, as this node last heard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leadership {
    pub leader: Option<NodeId>,
    /// The Raft term: Kafka's leader epoch.
    pub term: u64,
    /// This node leads the group and has heard from a majority of its voters (itself
    /// included) within the leader lease; see [`Replica::leadership`].
    pub quorum: bool,
    /// This node leads the group with a quorum and has applied every entry committed
    /// before its leadership, so what it serves is the whole committed log.
    pub serving: bool,
}

/// Why a proposal was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    #[error("not the leader (leader is {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    #[error("the group is unavailable: {0}")]
    Unavailable(String),
}

/// One Raft group on this node. Cheap to clone.
#[derive(Clone)]
pub struct Replica {
    pub(crate) group: RaftGroupId,
    pub(crate) node_id: NodeId,
    pub(crate) raft: Raft,
    pub(crate) metrics: watch::Receiver<RaftMetrics<NodeId, BasicNode>>,
    /// Set while this leader hands the group over (see `crate::handover`).
    pub(crate) handover: Arc<Mutex<Option<Handover>>>,
    /// When each peer last accepted this node's appends: a leader's contact with its
    /// quorum.
    pub(crate) contacts: Arc<QuorumContacts>,
    /// The leader lease (the longest election timeout): after this long without a leader,
    /// followers may elect another.
    pub(crate) lease: Duration,
    /// Set when this node led the group when it stopped, and so leads it again at once.
    pub(crate) restored: Option<RestoredLeadership>,
    /// Whether openraft's election timer runs in this group (see `crate::election_timer`).
    pub(crate) election_timer: ElectionTimer,
    /// Until when this node, leading, knows it has a quorum (see [`Replica::leadership`]).
    pub(crate) quorum_lease: Arc<Mutex<Option<QuorumLease>>>,
    /// The first entry the group's state machine reads.
    pub(crate) floor: LogFloor,
    /// That floor as `crate::purge` saw it last time.
    pub(crate) purge_seen: Arc<Mutex<u64>>,
}

impl Replica {
    /// The index up to which the group's log is purged and the index of its last snapshot,
    /// as openraft reports them (0 for none).
    pub(crate) fn purged_and_snapshot(&self) -> (u64, u64) {
        let m = self.metrics.borrow();
        (
            m.purged.map_or(0, |id| id.index),
            m.snapshot.map_or(0, |id| id.index),
        )
    }
}

/// A leader's quorum, known to hold until `until` for the term and membership it was
/// counted in. Appends are accepted later and later, never earlier, so a majority in
/// contact now is still in contact then; counting again only once that has passed spares
/// a fetch naming a thousand partitions a thousand lookups of the followers' contacts.
#[derive(Debug)]
pub(crate) struct QuorumLease {
    term: u64,
    /// openraft publishes every new membership in a new `Arc`; holding this one keeps its
    /// address from being reused by a later one.
    membership: Arc<StoredMembership<NodeId, BasicNode>>,
    until: Instant,
}

/// Whether `id` votes in `membership` (in either configuration while it changes).
/// openraft's `voter_ids()` builds a new set on every call, too costly for the loops that
/// visit every group several times a second; these helpers read the configurations in place.
pub(crate) fn is_voter(membership: &Membership<NodeId, BasicNode>, id: NodeId) -> bool {
    membership
        .get_joint_config()
        .iter()
        .any(|voters| voters.contains(&id))
}

/// The voters of `membership`, each once: both configurations' while it changes.
pub(crate) fn voters_of(
    membership: &Membership<NodeId, BasicNode>,
) -> impl Iterator<Item = NodeId> + '_ {
    let configs = membership.get_joint_config();
    configs.iter().enumerate().flat_map(move |(i, voters)| {
        voters
            .iter()
            .copied()
            .filter(move |v| !configs[..i].iter().any(|earlier| earlier.contains(v)))
    })
}

/// Until when a majority of each voter configuration in `configs` is in contact with
/// leader `me`: `me` always, any other voter for `lease` after it last accepted the
/// leader's appends (`accepted_at`). `None` if a majority is not in contact at `now`.
fn quorum_until(
    configs: &[BTreeSet<NodeId>],
    me: NodeId,
    accepted_at: impl Fn(NodeId) -> Option<Instant>,
    lease: Duration,
    now: Instant,
) -> Option<Instant> {
    // A leader that is a majority by itself keeps it; look again a lease from now anyway.
    let mut until = now + lease;
    for voters in configs {
        let majority = voters.len() / 2 + 1;
        let needed = majority.saturating_sub(usize::from(voters.contains(&me)));
        if needed == 0 {
            continue;
        }
        let mut contact_ends: Vec<Instant> = voters
            .iter()
            .filter(|v| **v != me)
            .filter_map(|v| accepted_at(*v))
            .map(|at| at + lease)
            .filter(|end| *end > now)
            .collect();
        if contact_ends.len() < needed {
            return None;
        }
        contact_ends.sort_unstable_by(|a, b| b.cmp(a));
        until = until.min(contact_ends[needed - 1]);
    }
    Some(until)
}

/// Whether the voters of `membership` and its members (voters and learners) are both
/// exactly the nodes in `listed`.
fn members_are(membership: &Membership<NodeId, BasicNode>, listed: &[NodeId]) -> bool {
    let distinct = listed
        .iter()
        .enumerate()
        .filter(|(i, id)| !listed[..*i].contains(id))
        .count();
    membership.nodes().count() == distinct
        && membership.nodes().all(|(id, _)| listed.contains(id))
        && voters_of(membership).count() == distinct
        && voters_of(membership).all(|id| listed.contains(&id))
}

/// A leadership openraft 0.9 restores at startup, from a committed vote for this node,
/// without an election and without a new entry. Its log may hold entries that were
/// committed, even acknowledged, before the restart but are not applied yet (the applied
/// state is not synced, so a crash can lose some of it); until they are, the high
/// watermark lags what clients were told. The term's first entry, which shows an elected
/// leader has applied everything before it, does not come: wait for the log end instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RestoredLeadership {
    pub term: u64,
    /// The index of the last entry in the log at startup.
    pub log_end: u64,
}

impl RestoredLeadership {
    /// Reads, before the group starts, whether openraft will restore this node as leader.
    pub async fn read(
        log: &mut LogStore,
        me: NodeId,
    ) -> Result<Option<RestoredLeadership>, StorageError> {
        let Some(vote) = log.read_vote().await? else {
            return Ok(None);
        };
        if !vote.is_committed() || vote.leader_id().voted_for() != Some(me) {
            return Ok(None);
        }
        let log_end = log
            .get_log_state()
            .await?
            .last_log_id
            .map_or(0, |l| l.index);
        Ok(Some(RestoredLeadership {
            term: vote.leader_id().get_term(),
            log_end,
        }))
    }
}

/// Whether a leader in `term` that has applied up to `applied` (index and term) serves
/// the whole committed log: an elected leader once it has applied an entry of its own
/// term, which comes after everything earlier leaders committed; a restored one once it
/// has applied its log as it was at startup.
fn serves_whole_log(
    term: u64,
    applied: Option<(u64, u64)>,
    restored: Option<RestoredLeadership>,
) -> bool {
    let Some((index, applied_term)) = applied else {
        return false;
    };
    match restored {
        Some(r) if r.term == term => index >= r.log_end,
        _ => applied_term == term,
    }
}

/// A leadership hand-over in progress: to whom, and until when it may take.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Handover {
    pub to: NodeId,
    pub until: Instant,
}

impl Replica {
    pub fn group(&self) -> RaftGroupId {
        self.group
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// Who leads the group, and whether this node, if it leads, may serve clients.
    ///
    /// openraft 0.9 has no check-quorum: a leader cut off from its followers goes on
    /// believing it leads, while they elect another once the lease has run out. Such a
    /// leader must not keep producers waiting on appends that cannot commit, nor serve
    /// consumers a log that has moved on elsewhere, so it counts as leading with a quorum
    /// only while a majority of the voters has accepted its appends within the lease
    /// (heartbeats go out several times per lease). A reply carrying a newer vote does not
    /// count: it is how a deposed leader learns it was deposed.
    pub fn leadership(&self) -> Leadership {
        let m = self.metrics.borrow();
        let is_self = m.current_leader == Some(self.node_id);
        let quorum = is_self && self.has_quorum(&m);
        Leadership {
            leader: m.current_leader,
            term: m.current_term,
            quorum,
            serving: quorum && self.serves_whole_log(&m),
        }
    }

    /// Whether, in each voter configuration of this leader's membership (two while it
    /// changes), a majority has accepted its appends within the lease, this node counting
    /// for itself: what committing an entry takes. Called for every partition a fetch
    /// names, so the answer is kept until it could change ([`QuorumLease`]).
    fn has_quorum(&self, m: &RaftMetrics<NodeId, BasicNode>) -> bool {
        let now = Instant::now();
        let mut lease = self.quorum_lease.lock().expect("quorum lease lock");
        if lease.as_ref().is_some_and(|l| {
            l.term == m.current_term
                && Arc::ptr_eq(&l.membership, &m.membership_config)
                && now < l.until
        }) {
            return true;
        }
        let configs = m.membership_config.membership().get_joint_config();
        let accepted_at = |node| self.contacts.last_accepted(self.group, node);
        let until = quorum_until(configs, self.node_id, accepted_at, self.lease, now);
        *lease = until.map(|until| QuorumLease {
            term: m.current_term,
            membership: m.membership_config.clone(),
            until,
        });
        until.is_some()
    }

    /// Resolves once this node no longer leads the group with a quorum (see
    /// [`Self::leadership`]), checking every 100 ms.
    pub async fn quorum_lost(&self) {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if !self.leadership().quorum {
                return;
            }
        }
    }

    /// The group's voters, as this node's membership configuration lists them.
    pub fn voters(&self) -> Vec<NodeId> {
        voters_of(self.metrics.borrow().membership_config.membership()).collect()
    }

    /// Whether the group's voters and its members (voters and learners) are both exactly
    /// the nodes in `listed`, as this node's membership configuration has them.
    pub fn members_are(&self, listed: &[NodeId]) -> bool {
        members_are(self.metrics.borrow().membership_config.membership(), listed)
    }

    /// The group's members, voters and learners, as this node's membership configuration
    /// lists them.
    pub fn members(&self) -> Vec<NodeId> {
        self.metrics
            .borrow()
            .membership_config
            .membership()
            .nodes()
            .map(|(id, _)| *id)
            .collect()
    }

    /// Whether this node, if it leads, has applied all it must before it serves (see
    /// [`serves_whole_log`]).
    fn serves_whole_log(&self, m: &RaftMetrics<NodeId, BasicNode>) -> bool {
        serves_whole_log(
            m.current_term,
            m.last_applied.map(|a| (a.index, a.leader_id.term)),
            self.restored,
        )
    }

    /// The index of the last entry applied here (0 before any).
    pub fn last_applied_index(&self) -> u64 {
        self.metrics
            .borrow()
            .last_applied
            .map_or(0, |log_id| log_id.index)
    }

    /// Whether the log holds entries not applied yet: appends under way, or what a leader
    /// restored at startup has not applied yet.
    pub fn has_unapplied_entries(&self) -> bool {
        let metrics = self.metrics.borrow();
        metrics.last_log_index.unwrap_or(0) > metrics.last_applied.map_or(0, |l| l.index)
    }

    /// Whether `node` is a member, voter or learner, in a membership this node has applied,
    /// so committed: a membership only appended here may still be overwritten by another
    /// leader's log, leaving `node` out.
    pub fn has_committed_member(&self, node: NodeId) -> bool {
        let metrics = self.metrics.borrow();
        let membership = &metrics.membership_config;
        let applied = metrics.last_applied.map_or(0, |l| l.index);
        membership.membership().get_node(&node).is_some()
            && membership.log_id().map_or(0, |l| l.index) <= applied
    }

    /// Whether `node` is in the group's membership, as a voter or a learner.
    pub fn has_member(&self, node: NodeId) -> bool {
        self.member_addr(node).is_some()
    }

    /// The Raft address of `node`, a member of this group, as its membership records it.
    pub(crate) fn member_addr(&self, node: NodeId) -> Option<String> {
        self.metrics
            .borrow()
            .membership_config
            .membership()
            .get_node(&node)
            .map(|n| n.addr.clone())
    }

    /// The node this leader is handing the group over to, while it does.
    pub fn handing_over_to(&self) -> Option<NodeId> {
        let handover = (*self.handover.lock().expect("handover lock"))?;
        let leading = self.metrics.borrow().current_leader == Some(self.node_id);
        (leading && Instant::now() < handover.until).then_some(handover.to)
    }

    /// Hands `command` to the group and returns at once; the result comes from the
    /// returned [`Proposal`]. Commands submitted one after another from one task are
    /// appended in that order. During a hand-over nothing new is appended: an append
    /// would reach the other voters and so renew the lease that keeps them from voting.
    pub async fn submit(&self, mut command: Command) -> Result<Proposal, ProposeError> {
        if let Some(to) = self.handing_over_to() {
            return Err(ProposeError::NotLeader { leader: Some(to) });
        }
        let applied = command.append_mut().map(|append| {
            let (reply, receiver) = AppliedReply::channel();
            append.reply = reply;
            receiver
        });
        self.raft
            .client_write_ff(command)
            .await
            .map(|committed| Proposal { committed, applied })
            .map_err(|e| ProposeError::Unavailable(e.to_string()))
    }

    /// Replicates `command` and returns its result once it is committed and applied.
    pub async fn propose(&self, command: Command) -> Result<Response, ProposeError> {
        self.submit(command).await?.outcome().await
    }

    /// Waits until this node leads the group and serves its whole committed log.
    pub async fn wait_serving(&self, timeout: Duration) -> bool {
        let mut metrics = self.metrics.clone();
        let ready = |m: &RaftMetrics<NodeId, BasicNode>| {
            m.current_leader == Some(self.node_id) && self.serves_whole_log(m)
        };
        tokio::time::timeout(timeout, metrics.wait_for(ready))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// A submitted command, waiting to be committed and applied.
pub struct Proposal {
    /// openraft's answer: the result, or why the command was not committed.
    committed: ResponderReceiverOf<Types>,
    /// The state machine's direct answer (appends only; see [`AppliedReply`]).
    applied: Option<oneshot::Receiver<Response>>,
}

impl Proposal {
    /// The command's result once it is committed and applied.
    pub async fn outcome(self) -> Result<Response, ProposeError> {
        let mut committed = self.committed;
        if let Some(applied) = self.applied {
            tokio::select! {
                biased;
                // A dropped sender (the entry was not applied here) disables this branch.
                Ok(response) = applied => return Ok(response),
                result = &mut committed => return Self::committed(result),
            }
        }
        Self::committed(committed.await)
    }

    fn committed(
        result: <ResponderReceiverOf<Types> as std::future::Future>::Output,
    ) -> Result<Response, ProposeError> {
        match result {
            Ok(Ok(written)) => Ok(written.data),
            Ok(Err(ClientWriteError::ForwardToLeader(f))) => Err(ProposeError::NotLeader {
                leader: f.leader_id,
            }),
            Ok(Err(e)) => Err(ProposeError::Unavailable(e.to_string())),
            Err(_) => Err(ProposeError::Unavailable("the group shut down".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Vote;
    use strand_storage::{Store, StoreOptions};

    fn membership(configs: &[&[NodeId]], learners: &[NodeId]) -> Membership<NodeId, BasicNode> {
        let configs = configs
            .iter()
            .map(|c| c.iter().copied().collect())
            .collect();
        Membership::new(configs, Some(learners.iter().copied().collect()))
    }

    #[test]
    fn voters_are_read_in_place_from_one_or_both_configurations() {
        let settled = membership(&[&[1, 2, 3]], &[4]);
        assert!(is_voter(&settled, 2));
        assert!(!is_voter(&settled, 4), "a learner");
        assert_eq!(voters_of(&settled).collect::<Vec<_>>(), [1, 2, 3]);
        let joint = membership(&[&[1, 2, 3], &[2, 3, 4]], &[]);
        assert!(is_voter(&joint, 1) && is_voter(&joint, 4));
        assert!(!is_voter(&joint, 5));
        let mut voters: Vec<_> = voters_of(&joint).collect();
        voters.sort();
        assert_eq!(voters, [1, 2, 3, 4], "each once");
        assert_eq!(
            voters_of(&joint).collect::<BTreeSet<_>>(),
            joint.voter_ids().collect(),
            "what openraft's voter_ids() gives"
        );
    }

    #[test]
    fn members_are_the_listed_replicas_only_without_learners_or_a_change_under_way() {
        assert!(members_are(&membership(&[&[1, 2, 3]], &[]), &[3, 1, 2]));
        assert!(members_are(&membership(&[&[1, 2, 3]], &[]), &[1, 2, 3, 1]));
        assert!(!members_are(&membership(&[&[1, 2, 3]], &[4]), &[1, 2, 3]));
        assert!(!members_are(&membership(&[&[1, 2]], &[3]), &[1, 2, 3]));
        assert!(!members_are(&membership(&[&[1, 2, 3]], &[]), &[1, 2, 4]));
        assert!(!members_are(&membership(&[&[1, 2, 3]], &[]), &[1, 2]));
        let joint = membership(&[&[1, 2, 3], &[2, 3, 4]], &[]);
        assert!(!members_are(&joint, &[2, 3, 4]));
        assert!(
            members_are(&joint, &[1, 2, 3, 4]),
            "as the sets compared before"
        );
    }

    #[test]
    fn a_quorum_holds_until_the_majority_s_last_contact_is_a_lease_old() {
        let lease = Duration::from_millis(1000);
        let now = Instant::now();
        let ago = |ms| Some(now - Duration::from_millis(ms));
        let three: &[BTreeSet<NodeId>] = &[BTreeSet::from([1, 2, 3])];
        // Leader 1 with followers heard 100 and 700 ms ago: the fresher one is enough.
        let until = quorum_until(
            three,
            1,
            |v| [None, None, ago(100), ago(700)][v as usize],
            lease,
            now,
        );
        assert_eq!(until, Some(now + Duration::from_millis(900)));
        // Neither within the lease, or never heard: no quorum.
        assert_eq!(
            quorum_until(
                three,
                1,
                |v| [None, None, ago(1000), ago(1500)][v as usize],
                lease,
                now
            ),
            None
        );
        assert_eq!(quorum_until(three, 1, |_| None, lease, now), None);
        // Five voters need two followers: the second freshest decides.
        let five: &[BTreeSet<NodeId>] = &[BTreeSet::from([1, 2, 3, 4, 5])];
        let heard = |v: NodeId| [None, None, ago(100), ago(300), ago(600), None][v as usize];
        assert_eq!(
            quorum_until(five, 1, heard, lease, now),
            Some(now + Duration::from_millis(700))
        );
        // While the voters change, both configurations need a majority.
        let joint: &[BTreeSet<NodeId>] = &[BTreeSet::from([1, 2, 3]), BTreeSet::from([1, 4, 5])];
        let heard = |v: NodeId| [None, None, ago(100), None, ago(500), None][v as usize];
        assert_eq!(
            quorum_until(joint, 1, heard, lease, now),
            Some(now + Duration::from_millis(500))
        );
        let heard = |v: NodeId| [None, None, ago(100), None, None, None][v as usize];
        assert_eq!(quorum_until(joint, 1, heard, lease, now), None);
        // A leader outside the new voters needs a majority of them without itself.
        let moving: &[BTreeSet<NodeId>] = &[BTreeSet::from([1, 2, 3]), BTreeSet::from([2, 3, 4])];
        let heard = |v: NodeId| [None, None, ago(100), ago(200), None][v as usize];
        assert_eq!(
            quorum_until(moving, 1, heard, lease, now),
            Some(now + Duration::from_millis(800))
        );
        // A leader alone is its own majority.
        let alone: &[BTreeSet<NodeId>] = &[BTreeSet::from([1])];
        assert_eq!(
            quorum_until(alone, 1, |_| None, lease, now),
            Some(now + lease)
        );
    }

    #[test]
    fn an_elected_leader_serves_once_it_has_applied_an_entry_of_its_term() {
        assert!(!serves_whole_log(3, None, None));
        assert!(!serves_whole_log(3, Some((40, 2)), None));
        assert!(serves_whole_log(3, Some((41, 3)), None));
    }

    #[test]
    fn a_restored_leader_serves_once_it_has_applied_its_log_as_it_was_at_startup() {
        let restored = Some(RestoredLeadership {
            term: 3,
            log_end: 50,
        });
        // Entries of its own term, applied before the crash, are not enough.
        assert!(!serves_whole_log(3, Some((41, 3)), restored));
        assert!(serves_whole_log(3, Some((50, 3)), restored));
        // Elected again in a later term, it is an elected leader like any other.
        assert!(!serves_whole_log(4, Some((50, 3)), restored));
        assert!(serves_whole_log(4, Some((51, 4)), restored));
    }

    #[tokio::test]
    async fn only_a_committed_vote_for_this_node_restores_its_leadership() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreOptions::new(dir.path())).unwrap();
        let mut log = LogStore::new(store.raft_log(7));
        assert_eq!(RestoredLeadership::read(&mut log, 1).await.unwrap(), None);
        log.save_vote(&Vote::new(3, 1)).await.unwrap();
        assert_eq!(RestoredLeadership::read(&mut log, 1).await.unwrap(), None);
        log.save_vote(&Vote::new_committed(3, 2)).await.unwrap();
        assert_eq!(RestoredLeadership::read(&mut log, 1).await.unwrap(), None);
        log.save_vote(&Vote::new_committed(4, 1)).await.unwrap();
        assert_eq!(
            RestoredLeadership::read(&mut log, 1).await.unwrap(),
            Some(RestoredLeadership {
                term: 4,
                log_end: 0
            })
        );
    }
}
