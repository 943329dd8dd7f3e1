//! What nodes tell each other besides Raft itself: proposals forwarded to a group's
//! leader, and reports of which groups each node leads; and the fast failover that
//! watches for silent leaders.
//!
//! Every node answers Metadata for every partition, including partitions it has no replica
//! of, so leaders report their groups (term and in-sync replicas) to all peers twice a
//! second; a report with a higher term replaces an older one.
//!
//! Fast failover: openraft lets a follower stand for election only after the leader lease
//! (the maximum election timeout) plus a random election timeout, checked on a coarse
//! tick, although the other voters grant their vote as soon as the lease has passed. Every
//! leader's heartbeats arrive together (see `node::heartbeat_loop`), so a node knows when
//! it last heard from each peer. Once a peer that leads some of this node's groups has been
//! silent for longer than the lease, one survivor of each such group (the remaining voter
//! with the lowest id, so survivors do not split the vote) stands at once. Raft's rules
//! are unchanged; the election only starts at the earliest moment it can succeed.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use openraft::raft::AppendEntriesResponse;
use openraft::Snapshot;
use tokio::net::TcpListener;

use crate::messages::{LeaderReport, Reply, Request};
use crate::node::RaftNode;
use crate::replica::{is_voter, voters_of, ProposeError, Replica};
use crate::transport;
use crate::types::{Command, NodeId, RaftGroupId, Response, Types, Vote};

/// How often leaders report.
const REPORT_INTERVAL: Duration = Duration::from_millis(500);
/// A follower not heard from for this long is out of sync (Kafka: replica.lag.time.max.ms).
const IN_SYNC_SILENCE: Duration = Duration::from_secs(10);
/// A follower more entries behind than this is out of sync.
const IN_SYNC_LAG: u64 = 1000;
/// How long a forwarded proposal may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);
/// How often nodes look for silent leaders.
const FAILOVER_CHECK: Duration = Duration::from_millis(50);
/// How far past the lease a leader must be silent: the other voters must have seen the
/// lease pass too, and their last heartbeat may have come a little later than ours.
const FAILOVER_MARGIN: Duration = Duration::from_millis(100);

/// What this node knows of a group's leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownLeader {
    pub node: NodeId,
    pub term: u64,
    pub in_sync: Vec<NodeId>,
    /// The voters, when the leader reported a committed membership.
    pub voters: Option<Vec<NodeId>>,
}

/// Leaders reported by peers, and when each peer was last heard from.
#[derive(Debug, Default)]
pub struct LeaderTable {
    entries: RwLock<HashMap<RaftGroupId, KnownLeader>>,
    heard_from: RwLock<HashMap<NodeId, Instant>>,
    /// The groups this node stood for in place of a silent leader, while it stays silent.
    stood: std::sync::Mutex<HashSet<(RaftGroupId, NodeId)>>,
}

impl LeaderTable {
    fn record(&self, from: NodeId, reports: Vec<LeaderReport>) {
        let mut entries = self.entries.write().expect("leader table lock");
        for report in reports {
            let newer = entries
                .get(&report.group)
                .is_none_or(|known| known.term <= report.term);
            if newer {
                entries.insert(
                    report.group,
                    KnownLeader {
                        node: from,
                        term: report.term,
                        in_sync: report.in_sync,
                        voters: report.voters,
                    },
                );
            }
        }
    }

    fn get(&self, group: RaftGroupId) -> Option<KnownLeader> {
        self.entries
            .read()
            .expect("leader table lock")
            .get(&group)
            .cloned()
    }

    fn heard(&self, node: NodeId) {
        let now = Instant::now();
        let mut heard = self.heard_from.write().expect("leader table lock");
        // Heartbeats of all groups arrive together: update once per burst.
        if heard
            .get(&node)
            .is_none_or(|t| now.duration_since(*t) > Duration::from_millis(5))
        {
            heard.insert(node, now);
        }
    }

    /// Counts every known peer as heard from now.
    fn hear_everyone_now(&self) {
        let now = Instant::now();
        for t in self
            .heard_from
            .write()
            .expect("leader table lock")
            .values_mut()
        {
            *t = now;
        }
    }

    /// Peers silent for longer than `silence`.
    fn silent(&self, silence: Duration) -> Vec<NodeId> {
        self.heard_from
            .read()
            .expect("leader table lock")
            .iter()
            .filter(|(_, t)| t.elapsed() > silence)
            .map(|(n, _)| *n)
            .collect()
    }
}

impl RaftNode {
    /// Starts answering peers on `listener`, and reporting the groups this node leads.
    pub fn serve_peers(self: &Arc<Self>, listener: TcpListener) {
        let node = Arc::downgrade(self);
        let handler: transport::Handler = Arc::new(move |request| {
            let node = node.clone();
            Box::pin(async move {
                match node.upgrade() {
                    Some(node) => node.handle(request).await,
                    None => Reply::Refused("the node is shutting down".into()),
                }
            })
        });
        tokio::spawn(transport::serve(listener, handler));
        tokio::spawn(report_loop(Arc::downgrade(self)));
        tokio::spawn(failover_loop(Arc::downgrade(self)));
    }

    /// The local replica of `group`, if any.
    pub(crate) fn replica(&self, group: RaftGroupId) -> Option<Replica> {
        self.replica_map().get(group).cloned()
    }

    /// The local replica of `group`, waiting a little for one this node has not opened
    /// yet. A new topic's groups open on every node as each applies the topic's creation,
    /// and the first leader asks for votes as soon as its own replica is open: refused at
    /// once, it would try again only after an election timeout, which made creating a
    /// topic of 1,000 partitions take a second.
    async fn replica_soon(&self, group: RaftGroupId) -> Option<Replica> {
        let wait = Duration::from_millis(self.config.election_timeout_min / 2);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before the check, so an opening between the two is not missed.
            let opened = self.partition_opened.notified();
            if let Some(replica) = self.replica(group) {
                return Some(replica);
            }
            if tokio::time::timeout_at(deadline, opened).await.is_err() {
                return None;
            }
        }
    }

    /// Answers one request from a peer.
    pub async fn handle(&self, request: Request) -> Reply {
        let unknown =
            |group| Reply::Refused(format!("group {group} is not open on node {}", self.id()));
        match request {
            Request::AppendEntries { group, rpc } => {
                if let Some(leader) = rpc.vote.leader_id().voted_for() {
                    self.leaders.heard(leader);
                }
                let Some(replica) = self.replica_soon(group).await else {
                    return unknown(group);
                };
                let carries_entries = !rpc.entries.is_empty();
                match replica.raft.append_entries(rpc).await {
                    Ok(response) => {
                        // openraft 0.9 answers once the entries are appended, before they are
                        // on disk, and the leader counts the answer towards its commit
                        // quorum: so the answer waits for the (shared) fsync.
                        let accepted = matches!(
                            response,
                            AppendEntriesResponse::Success
                                | AppendEntriesResponse::PartialSuccess(_)
                        );
                        if !matches!(response, AppendEntriesResponse::HigherVote(_)) {
                            replica.election_timer.heard_leader();
                        }
                        if carries_entries && accepted {
                            if let Err(e) = self.store.group_commit().sync().await {
                                return Reply::Refused(format!("cannot sync the log: {e}"));
                            }
                        }
                        Reply::AppendEntries(response)
                    }
                    Err(e) => Reply::Refused(e.to_string()),
                }
            }
            Request::Vote { group, rpc } => match self.replica_soon(group).await {
                Some(replica) => match self.refuses_vote(&replica, &rpc) {
                    Some(refusal) => Reply::Vote(refusal),
                    None => match replica.raft.vote(rpc).await {
                        Ok(response) => {
                            if response.vote_granted {
                                replica.election_timer.granted_vote();
                            }
                            Reply::Vote(response)
                        }
                        Err(e) => Reply::Refused(e.to_string()),
                    },
                },
                None => unknown(group),
            },
            Request::Propose { group, command } => match self.replica(group) {
                Some(replica) => match replica.propose(command).await {
                    Ok(response) => Reply::Proposed(response),
                    Err(ProposeError::NotLeader { leader }) => Reply::NotLeader { leader },
                    Err(ProposeError::Unavailable(reason)) => Reply::Refused(reason),
                },
                None => unknown(group),
            },
            Request::Leaders { from, leaders } => {
                self.leaders.record(from, leaders);
                Reply::Ack
            }
            Request::HandOver { group, to } => Reply::HandedOver(self.hand_over(group, to).await),
            Request::StartElection { group, after_ms } => {
                self.stand_after(group, Duration::from_millis(after_ms));
                Reply::Ack
            }
            Request::ControllerMembership(change) => {
                Reply::Changed(self.change_controller_membership(change).await)
            }
            Request::QuietHeartbeats { from, groups } => {
                self.leaders.heard(from);
                Reply::QuietConfirmed(self.confirm_quiet(from, &groups))
            }
            Request::Snapshot { group, chunk } => {
                let Some(replica) = self.replica_soon(group).await else {
                    return unknown(group);
                };
                replica.election_timer.heard_leader();
                match self.snapshots.receive(group, chunk) {
                    Ok(None) => Reply::Ack,
                    Ok(Some((vote, snapshot))) => self.install(&replica, vote, snapshot).await,
                    Err(why) => Reply::Refused(format!("snapshot chunk refused: {why}")),
                }
            }
        }
    }

    /// Installs a snapshot received whole. The answer waits for it to be on disk: the
    /// leader then counts this replica as holding the log up to the snapshot.
    async fn install(&self, replica: &Replica, vote: Vote, snapshot: Snapshot<Types>) -> Reply {
        tracing::info!(group = replica.group, snapshot = %snapshot.meta.snapshot_id,
            entries = snapshot.snapshot.entries.len(), "installing a snapshot");
        let bytes = snapshot.snapshot.entry_bytes();
        let response = match replica.raft.install_full_snapshot(vote, snapshot).await {
            Ok(response) => response,
            Err(e) => return Reply::Refused(e.to_string()),
        };
        if let Err(e) = self.store.group_commit().sync().await {
            return Reply::Refused(format!("cannot sync the snapshot: {e}"));
        }
        if response.vote <= vote {
            self.snapshots.count_installed(bytes);
        }
        Reply::Installed(response)
    }

    /// Proposes `command` to `group` wherever its leader is: on this node, or forwarded to
    /// the leader's node. Waits out elections (no leader yet) up to a timeout.
    pub async fn propose(
        &self,
        group: RaftGroupId,
        command: Command,
    ) -> Result<Response, ProposeError> {
        let deadline = Instant::now() + FORWARD_TIMEOUT;
        loop {
            let replica = self.replica(group).ok_or_else(|| {
                ProposeError::Unavailable(format!("group {group} is not on this node"))
            })?;
            let leader = replica.leadership().leader;
            let result = match leader {
                Some(leader) if leader == self.id() => replica.propose(command.clone()).await,
                Some(leader) => self.forward(&replica, leader, group, &command).await,
                None => Err(ProposeError::NotLeader { leader: None }),
            };
            match result {
                Err(ProposeError::NotLeader { .. }) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => return other,
            }
        }
    }

    async fn forward(
        &self,
        replica: &Replica,
        leader: NodeId,
        group: RaftGroupId,
        command: &Command,
    ) -> Result<Response, ProposeError> {
        let addr = replica
            .member_addr(leader)
            .ok_or(ProposeError::NotLeader { leader: None })?;
        let request = Request::Propose {
            group,
            command: command.clone(),
        };
        match self
            .transport
            .call(leader, &addr, &request, FORWARD_TIMEOUT)
            .await
        {
            Ok(Reply::Proposed(response)) => Ok(response),
            Ok(Reply::NotLeader { leader }) => Err(ProposeError::NotLeader { leader }),
            Ok(other) => Err(ProposeError::Unavailable(format!(
                "node {leader} answered {other:?}"
            ))),
            Err(e) => Err(ProposeError::Unavailable(e.to_string())),
        }
    }

    /// Who leads `group`, as far as this node knows: from its own replica, or from the
    /// leader's reports.
    pub fn leader_of(&self, group: RaftGroupId) -> Option<KnownLeader> {
        if let Some(replica) = self.replica(group) {
            let leadership = replica.leadership();
            if leadership.leader == Some(self.id()) {
                if !leadership.quorum {
                    // Cut off from a majority: another node may lead by now. Name it if
                    // a peer reported a newer term, else no one.
                    return self
                        .leaders
                        .get(group)
                        .filter(|k| k.node != self.id() && k.term > leadership.term);
                }
                return Some(KnownLeader {
                    node: self.id(),
                    term: leadership.term,
                    in_sync: self.in_sync(&replica),
                    voters: committed_voters(&replica),
                });
            }
            if let Some(leader) = leadership.leader {
                let reported = self.leaders.get(group).filter(|k| k.node == leader);
                return Some(reported.unwrap_or(KnownLeader {
                    node: leader,
                    term: leadership.term,
                    in_sync: Vec::new(),
                    voters: None,
                }));
            }
            return None;
        }
        self.leaders.get(group)
    }

    /// Whether this node should keep its copy of `group`, which the metadata no longer
    /// places here; see [`keeps_unlisted_copy`].
    pub(crate) fn keeps_unlisted_copy(&self, group: RaftGroupId) -> bool {
        let Some(replica) = self.replica(group) else {
            return false;
        };
        let leadership = replica.leadership();
        let leading = (leadership.leader == Some(self.id())).then_some(leadership.term);
        // Not the vote's term: a node dropped from the voters stands for election again and
        // again, each time in a new term, while its log stays where it was.
        let applied_term = replica
            .metrics
            .borrow()
            .last_applied
            .map_or(0, |applied| applied.leader_id.term);
        let reported = self.leaders.get(group);
        let keep = keeps_unlisted_copy(self.id(), leading, applied_term, reported.as_ref());
        if keep {
            tracing::debug!(
                group,
                applied_term,
                ?reported,
                "keeping a copy the metadata no longer lists until its leader says it no longer votes"
            );
        }
        keep
    }

    /// The voters of a group this node leads that are caught up: the leader itself, and
    /// followers heard from recently that are not far behind.
    fn in_sync(&self, replica: &Replica) -> Vec<NodeId> {
        replica
            .voters()
            .into_iter()
            .filter(|id| {
                *id == self.id()
                    || self
                        .follower_lag(replica, *id, IN_SYNC_SILENCE)
                        .is_some_and(|lag| lag <= IN_SYNC_LAG)
            })
            .collect()
    }

    /// How many entries `follower`, a voter of a group this node leads, lacks; `None` if
    /// it is no voter or has not answered within `heard_within`.
    pub(crate) fn follower_lag(
        &self,
        replica: &Replica,
        follower: NodeId,
        heard_within: Duration,
    ) -> Option<u64> {
        let heard = self
            .transport
            .last_heard(follower)
            .is_some_and(|t| t.elapsed() < heard_within);
        let metrics = replica.metrics.borrow();
        if !(heard && is_voter(metrics.membership_config.membership(), follower)) {
            return None;
        }
        let matched = metrics
            .replication
            .as_ref()
            .and_then(|r| r.get(&follower).cloned().flatten())
            .map_or(0, |m| m.index);
        Some(metrics.last_log_index.unwrap_or(0).saturating_sub(matched))
    }

    fn leader_reports(&self) -> Vec<LeaderReport> {
        let mut reports = Vec::new();
        self.for_each_replica(|replica| {
            // Who leads, not whether with a quorum (`Replica::leadership`): what the other
            // nodes would hear from openraft.
            let (leader, term) = {
                let m = replica.metrics.borrow();
                (m.current_leader, m.current_term)
            };
            if leader == Some(self.id()) {
                reports.push(LeaderReport {
                    group: replica.group,
                    term,
                    in_sync: self.in_sync(replica),
                    voters: committed_voters(replica),
                });
            }
        });
        reports
    }
}

/// The voters of `replica`'s group, if the membership naming them is committed (applied
/// here); while a change is under way the voters may yet fall back to the previous ones.
fn committed_voters(replica: &Replica) -> Option<Vec<NodeId>> {
    let metrics = replica.metrics.borrow();
    let membership = &metrics.membership_config;
    let committed = membership.log_id().as_ref().is_none_or(|at| {
        metrics
            .last_applied
            .as_ref()
            .is_some_and(|applied| applied.index >= at.index)
    });
    committed.then(|| voters_of(membership.membership()).collect())
}

/// Whether node `me` keeps its copy of a group that the metadata no longer places on it.
///
/// The metadata and a group's voters agree but for moments: a move records its end after
/// changing the voters. A move cancelled or retargeted in between leaves voters the
/// metadata does not list, and should they all delete their copies the partition would be
/// gone. So a copy is deleted only once the group's leader, in the term of the last entry
/// applied here or a later one, reports a committed membership without this node. A node
/// that believes it leads (in term `leading`) keeps its copy unless that report comes from
/// a later term: a leader moves the voters back in line first (see
/// `membership::move_loop`), and one that moved itself out may still think it leads.
pub(crate) fn keeps_unlisted_copy(
    me: NodeId,
    leading: Option<u64>,
    applied_term: u64,
    reported: Option<&KnownLeader>,
) -> bool {
    let gone_in = reported.and_then(|r| match &r.voters {
        Some(voters) if r.node != me && r.term >= applied_term && !voters.contains(&me) => {
            Some(r.term)
        }
        _ => None,
    });
    match (gone_in, leading) {
        (None, _) => true,
        (Some(reported_term), Some(leading_term)) => reported_term <= leading_term,
        (Some(_), None) => false,
    }
}

/// Reports the groups this node leads to every other broker, twice a second.
async fn report_loop(node: Weak<RaftNode>) {
    loop {
        tokio::time::sleep(REPORT_INTERVAL).await;
        let Some(node) = node.upgrade() else { return };
        let reports = node.leader_reports();
        let metadata = node.controller.metadata();
        let request = Request::Leaders {
            from: node.id(),
            leaders: reports,
        };
        for broker in metadata.brokers.values().filter(|b| b.id != node.id()) {
            let _ = node
                .transport
                .notify(broker.id, &broker.raft_addr, &request)
                .await;
        }
    }
}

/// Stands for election in the groups of silent leaders; see the module documentation.
///
/// A node stands once per group and silent leader. Standing again would be harmful: if this
/// node's log is behind another survivor's, its vote requests fail, and each one resets
/// that survivor's election timer, so the one node that could win would never stand.
///
/// A node that was itself stalled (stopped, swapped out, starved of CPU) for longer than
/// the lease cannot tell a silent leader from one it did not listen to: it forgives the
/// silence and waits a full lease again, rather than unseating healthy leaders on waking.
async fn failover_loop(node: Weak<RaftNode>) {
    let mut last_check = Instant::now();
    loop {
        tokio::time::sleep(FAILOVER_CHECK).await;
        let Some(node) = node.upgrade() else { return };
        let silence = node.leader_lease() + FAILOVER_MARGIN;
        let stalled = last_check.elapsed() > node.leader_lease();
        last_check = Instant::now();
        if stalled {
            tracing::info!("this node was stalled past the leader lease: not judging silence");
            node.leaders.hear_everyone_now();
            continue;
        }
        let silent = node.leaders.silent(silence);
        let mut stood = node.leaders.stood.lock().expect("leader table lock");
        stood.retain(|(_, leader)| silent.contains(leader));
        if silent.is_empty() {
            continue;
        }
        for replica in node.replicas() {
            let (gone, term, first_survivor) = {
                let metrics = replica.metrics.borrow();
                let Some(leader) = metrics.current_leader.filter(|l| silent.contains(l)) else {
                    continue;
                };
                let first_survivor = voters_of(metrics.membership_config.membership())
                    .filter(|v| *v != leader)
                    .min();
                (
                    leader,
                    metrics.current_term,
                    first_survivor == Some(node.id()),
                )
            };
            if first_survivor && stood.insert((replica.group, gone)) {
                tracing::info!(
                    group = replica.group,
                    silent_leader = gone,
                    term,
                    "leader silent past its lease: standing for election"
                );
                let raft = replica.raft.clone();
                tokio::spawn(async move { raft.trigger().elect().await });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(term: u64, voters: Option<&[NodeId]>) -> KnownLeader {
        KnownLeader {
            node: 9,
            term,
            in_sync: Vec::new(),
            voters: voters.map(<[NodeId]>::to_vec),
        }
    }

    #[test]
    fn an_unlisted_copy_goes_only_once_the_leader_confirms_it_no_longer_votes() {
        let me = 4;
        // A move to 1, 2, 3 completed: the leader of this term says so.
        let moved_away = report(5, Some(&[1, 2, 3]));
        assert!(!keeps_unlisted_copy(me, None, 5, Some(&moved_away)));
        assert!(
            !keeps_unlisted_copy(me, None, 4, Some(&moved_away)),
            "a later term counts too"
        );
        // A move cancelled after the voters changed to 4, 5, 6: still a voter, keep it.
        let still_voting = report(5, Some(&[4, 5, 6]));
        assert!(keeps_unlisted_copy(me, None, 5, Some(&still_voting)));
        // A stale report, a membership still changing, or no report at all: keep it.
        assert!(keeps_unlisted_copy(me, None, 6, Some(&moved_away)));
        assert!(keeps_unlisted_copy(me, None, 5, Some(&report(5, None))));
        assert!(keeps_unlisted_copy(me, None, 5, None));
        // A leader keeps its copy (it first puts the listed replicas back as voters), unless
        // the report comes from a leader of a later term: it moved itself out.
        assert!(keeps_unlisted_copy(me, Some(5), 5, Some(&moved_away)));
        assert!(!keeps_unlisted_copy(me, Some(3), 1, Some(&moved_away)));
    }
}
