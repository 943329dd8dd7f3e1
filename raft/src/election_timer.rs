//! Runs openraft's election timer only in the groups that may need an election.
//!
//! openraft 0.9 wakes every group's core once per tick (1.5 heartbeat intervals) to check
//! its election timeout, and each wake-up also rebuilds and publishes the group's metrics.
//! On a node with a thousand healthy groups that is most of its idle CPU, spent finding
//! each time that the leader was heard from a moment ago. So the tick is off (`enable_tick:
//! false`) and [`election_timer_loop`] turns it on, group by group, where openraft's own
//! timer could fire: a follower or candidate with no leader, or whose leader has not been
//! heard from for [`quiet_limit`]; and a leader removed from the voters, which steps down
//! on a tick. Where the tick is on, openraft decides exactly as it always does, from its
//! own record of the last leader contact: the timer is only ever on earlier than needed,
//! never later.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use openraft::ServerState;

use crate::node::RaftNode;
use crate::replica::Replica;

/// How often the loop looks at every group.
const CHECK_INTERVAL: Duration = Duration::from_millis(200);

/// Per group: when this node last accepted an append from the group's leader, and whether
/// the group's election timer runs. Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct ElectionTimer {
    leader_heard: Arc<Mutex<Option<Instant>>>,
    running: Arc<AtomicBool>,
}

impl ElectionTimer {
    /// The leader's append was accepted: its heartbeats are arriving.
    pub fn heard_leader(&self) {
        *self.leader_heard.lock().expect("leader contact lock") = Some(Instant::now());
    }

    fn leader_silence(&self) -> Option<Duration> {
        self.leader_heard
            .lock()
            .expect("leader contact lock")
            .map(|t| t.elapsed())
    }
}

/// How long a follower may go without hearing its leader before its timer runs: longer
/// than a heartbeat interval, so it stays off between heartbeats, and short enough that
/// once on, the timer's first tick (at most 1.5 heartbeat intervals later) comes before
/// openraft's earliest election (the lease plus the minimum election timeout).
pub(crate) fn quiet_limit(config: &openraft::Config) -> Duration {
    Duration::from_millis(config.election_timeout_min)
}

/// What the decision needs to know of one group on this node.
#[derive(Debug, Clone, Copy)]
struct GroupView {
    state: ServerState,
    /// This node votes in the group's effective membership.
    voter: bool,
    /// Another node leads the group, as far as this node knows.
    other_leader: bool,
    /// Time since this node last accepted an append from a leader of the group.
    leader_silence: Option<Duration>,
}

/// Whether openraft's tick could do anything in this group now.
fn needs_timer(g: GroupView, quiet_limit: Duration) -> bool {
    match g.state {
        // A leader's tick only steps it down once a membership without it is applied.
        ServerState::Leader => !g.voter,
        ServerState::Follower | ServerState::Candidate => {
            g.voter && !(g.other_leader && g.leader_silence.is_some_and(|s| s < quiet_limit))
        }
        ServerState::Learner | ServerState::Shutdown => false,
    }
}

fn view(replica: &Replica) -> GroupView {
    let m = replica.metrics.borrow();
    GroupView {
        state: m.state,
        voter: m
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == m.id),
        other_leader: m.current_leader.is_some_and(|l| l != m.id),
        leader_silence: replica.election_timer.leader_silence(),
    }
}

/// Turns each group's election timer on or off as [`needs_timer`] says, every
/// [`CHECK_INTERVAL`].
pub(crate) async fn election_timer_loop(node: Weak<RaftNode>, quiet_limit: Duration) {
    let mut ticker = tokio::time::interval(CHECK_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(node) = node.upgrade() else { return };
        node.for_each_replica(|replica| {
            let wanted = needs_timer(view(replica), quiet_limit);
            if replica
                .election_timer
                .running
                .swap(wanted, Ordering::Relaxed)
                != wanted
            {
                replica.raft.runtime_config().tick(wanted);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_millis(500);

    fn follower(other_leader: bool, silence_ms: Option<u64>) -> GroupView {
        GroupView {
            state: ServerState::Follower,
            voter: true,
            other_leader,
            leader_silence: silence_ms.map(Duration::from_millis),
        }
    }

    #[test]
    fn a_follower_hearing_its_leader_runs_no_timer() {
        assert!(!needs_timer(follower(true, Some(0)), LIMIT));
        assert!(!needs_timer(follower(true, Some(499)), LIMIT));
    }

    #[test]
    fn a_follower_whose_leader_is_quiet_or_unknown_runs_its_timer() {
        assert!(needs_timer(follower(true, Some(500)), LIMIT));
        assert!(needs_timer(follower(true, None), LIMIT), "never heard");
        assert!(needs_timer(follower(false, Some(0)), LIMIT), "no leader");
        let candidate = GroupView {
            state: ServerState::Candidate,
            ..follower(false, Some(0))
        };
        assert!(needs_timer(candidate, LIMIT));
    }

    #[test]
    fn only_voters_and_removed_leaders_need_a_tick() {
        let learner = GroupView {
            state: ServerState::Learner,
            voter: false,
            ..follower(false, None)
        };
        assert!(!needs_timer(learner, LIMIT));
        let leader = GroupView {
            state: ServerState::Leader,
            ..follower(false, None)
        };
        assert!(!needs_timer(leader, LIMIT));
        assert!(
            needs_timer(
                GroupView {
                    voter: false,
                    ..leader
                },
                LIMIT
            ),
            "a leader removed from the voters steps down on a tick"
        );
    }
}
