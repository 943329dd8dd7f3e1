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
//!
//! A quiet group (see `crate::heartbeat`) hears its leader only through the node-level
//! heartbeat, which openraft never sees: its record of the last contact goes stale, and
//! once on, its timer would fire at the first tick. So after such a contact the timer
//! stays off for as long as openraft would wait after an append: the leader lease plus the
//! minimum election timeout.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use openraft::{BasicNode, RaftMetrics, ServerState};

use crate::node::RaftNode;
use crate::replica::{is_voter, Replica};
use crate::types::NodeId;

type Metrics = RaftMetrics<NodeId, BasicNode>;

/// How often the loop looks at every group.
const CHECK_INTERVAL: Duration = Duration::from_millis(200);

/// Per group: when and how this node last heard from the group's leader, and whether the
/// group's election timer runs. Cheap to clone.
#[derive(Clone)]
pub(crate) struct ElectionTimer {
    contacts: Arc<Mutex<Contacts>>,
    running: Arc<AtomicBool>,
    /// Added to the wait after a quiet-group heartbeat, drawn once per group and node from
    /// the spread of openraft's election timeouts, so that the followers of a silent leader
    /// do not all stand at once and split the vote.
    quiet_jitter: Duration,
}

#[derive(Default)]
struct Contacts {
    leader: Option<LeaderContact>,
    /// When this node last granted its vote in the group.
    vote_granted: Option<Instant>,
}

/// The last time a follower heard from its leader.
#[derive(Debug, Clone, Copy)]
struct LeaderContact {
    at: Instant,
    /// Through an openraft append, which openraft's own timer saw too; otherwise through
    /// a quiet group's node-level heartbeat, which it did not.
    seen_by_openraft: bool,
}

impl ElectionTimer {
    /// `spread`: the range of openraft's randomised election timeout (max - min).
    pub fn new(spread: Duration) -> ElectionTimer {
        let random = RandomState::new().build_hasher().finish();
        let spread_nanos = spread.as_nanos().max(1) as u64;
        ElectionTimer {
            contacts: Default::default(),
            running: Default::default(),
            quiet_jitter: Duration::from_nanos(random % spread_nanos),
        }
    }

    /// The leader's append was accepted: its heartbeats are arriving.
    pub fn heard_leader(&self) {
        self.record(true);
    }

    /// A quiet group's heartbeat from the leader was confirmed (see `crate::heartbeat`).
    pub fn heard_quiet_leader(&self) {
        self.record(false);
    }

    fn record(&self, seen_by_openraft: bool) {
        self.contacts().leader = Some(LeaderContact {
            at: Instant::now(),
            seen_by_openraft,
        });
    }

    /// This node voted for a candidate: whatever it heard from the old leader no longer
    /// counts, and for `lease` it confirms no quiet heartbeat (its published vote may lag
    /// behind the one it just gave).
    pub fn granted_vote(&self) {
        let mut contacts = self.contacts();
        contacts.leader = None;
        contacts.vote_granted = Some(Instant::now());
    }

    /// Whether this node may confirm a quiet heartbeat: it has not voted within `lease`.
    pub fn may_confirm_quiet(&self, lease: Duration) -> bool {
        self.contacts()
            .vote_granted
            .is_none_or(|t| t.elapsed() > lease)
    }

    /// Time since the leader's last quiet-group heartbeat, if that was the last contact:
    /// a contact openraft did not see, so its leader lease does not count it.
    pub(crate) fn quiet_leader_silence(&self) -> Option<Duration> {
        self.contact()
            .filter(|c| !c.seen_by_openraft)
            .map(|c| c.at.elapsed())
    }

    fn contact(&self) -> Option<LeaderContact> {
        self.contacts().leader
    }

    fn contacts(&self) -> std::sync::MutexGuard<'_, Contacts> {
        self.contacts.lock().expect("leader contact lock")
    }
}

/// How long a follower may go without hearing its leader before its timer runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QuietLimits {
    /// After an append: longer than a heartbeat interval, so the timer stays off between
    /// heartbeats, and short enough that once on, its first tick (at most 1.5 heartbeat
    /// intervals later) comes before openraft's earliest election (the lease plus the
    /// minimum election timeout).
    pub after_append: Duration,
    /// After a quiet-group heartbeat: openraft's earliest election itself, since its own
    /// record of the contact is stale and the first tick would start one.
    pub after_quiet_heartbeat: Duration,
}

pub(crate) fn quiet_limits(config: &openraft::Config) -> QuietLimits {
    QuietLimits {
        after_append: Duration::from_millis(config.election_timeout_min),
        after_quiet_heartbeat: Duration::from_millis(
            config.election_timeout_max + config.election_timeout_min,
        ),
    }
}

/// What the decision needs to know of one group on this node.
#[derive(Debug, Clone, Copy)]
struct GroupView {
    state: ServerState,
    /// Another node leads the group, as far as this node knows.
    other_leader: bool,
    /// The last contact with a leader of the group, if any.
    leader_contact: Option<LeaderContact>,
    /// See [`ElectionTimer::quiet_jitter`].
    quiet_jitter: Duration,
}

/// Whether openraft's tick could do anything in this group now. `voter`: whether this node
/// votes in the group's effective membership, asked only where it matters (not for a
/// follower hearing its leader, most groups), since reading the membership costs more than
/// the rest of the decision.
fn needs_timer(g: GroupView, voter: impl FnOnce() -> bool, limits: QuietLimits) -> bool {
    let recently_heard = g.leader_contact.is_some_and(|c| {
        let limit = if c.seen_by_openraft {
            limits.after_append
        } else {
            limits.after_quiet_heartbeat + g.quiet_jitter
        };
        c.at.elapsed() < limit
    });
    match g.state {
        // A leader's tick only steps it down once a membership without it is applied.
        ServerState::Leader => !voter(),
        ServerState::Follower | ServerState::Candidate => {
            !(g.other_leader && recently_heard) && voter()
        }
        ServerState::Learner | ServerState::Shutdown => false,
    }
}

fn view(m: &Metrics, replica: &Replica) -> GroupView {
    GroupView {
        state: m.state,
        other_leader: m.current_leader.is_some_and(|l| l != m.id),
        leader_contact: replica.election_timer.contact(),
        quiet_jitter: replica.election_timer.quiet_jitter,
    }
}

/// Turns each group's election timer on or off as [`needs_timer`] says, every
/// [`CHECK_INTERVAL`].
pub(crate) async fn election_timer_loop(node: Weak<RaftNode>, limits: QuietLimits) {
    let mut ticker = tokio::time::interval(CHECK_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(node) = node.upgrade() else { return };
        node.for_each_replica(|replica| {
            let m = replica.metrics.borrow();
            let voter = || is_voter(m.membership_config.membership(), m.id);
            let wanted = needs_timer(view(&m, replica), voter, limits);
            drop(m);
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

    const LIMITS: QuietLimits = QuietLimits {
        after_append: Duration::from_millis(500),
        after_quiet_heartbeat: Duration::from_millis(1500),
    };

    fn contact(silence_ms: u64, seen_by_openraft: bool) -> LeaderContact {
        LeaderContact {
            at: Instant::now() - Duration::from_millis(silence_ms),
            seen_by_openraft,
        }
    }

    fn follower(other_leader: bool, silence_ms: Option<u64>) -> GroupView {
        GroupView {
            state: ServerState::Follower,
            other_leader,
            leader_contact: silence_ms.map(|ms| contact(ms, true)),
            quiet_jitter: Duration::ZERO,
        }
    }

    #[test]
    fn a_follower_hearing_its_leader_runs_no_timer() {
        assert!(!needs_timer(follower(true, Some(0)), || true, LIMITS));
        assert!(!needs_timer(follower(true, Some(450)), || true, LIMITS));
    }

    #[test]
    fn a_follower_whose_leader_is_quiet_or_unknown_runs_its_timer() {
        assert!(needs_timer(follower(true, Some(500)), || true, LIMITS));
        assert!(
            needs_timer(follower(true, None), || true, LIMITS),
            "never heard"
        );
        assert!(
            needs_timer(follower(false, Some(0)), || true, LIMITS),
            "no leader"
        );
        let candidate = GroupView {
            state: ServerState::Candidate,
            ..follower(false, Some(0))
        };
        assert!(needs_timer(candidate, || true, LIMITS));
    }

    #[test]
    fn after_a_quiet_heartbeat_the_timer_waits_as_long_as_openraft_would() {
        let quiet = |ms| GroupView {
            leader_contact: Some(contact(ms, false)),
            ..follower(true, None)
        };
        assert!(!needs_timer(quiet(500), || true, LIMITS));
        assert!(!needs_timer(quiet(1400), || true, LIMITS));
        assert!(needs_timer(quiet(1500), || true, LIMITS));
        let jittered = GroupView {
            quiet_jitter: Duration::from_millis(300),
            ..quiet(1600)
        };
        assert!(
            !needs_timer(jittered, || true, LIMITS),
            "each group waits its jitter too"
        );
    }

    #[test]
    fn jitter_stays_within_the_spread_of_election_timeouts() {
        let spread = Duration::from_millis(500);
        let jitters: Vec<Duration> = (0..50)
            .map(|_| ElectionTimer::new(spread).quiet_jitter)
            .collect();
        assert!(jitters.iter().all(|j| *j < spread));
        assert!(
            jitters.iter().any(|j| *j != jitters[0]),
            "not random: {jitters:?}"
        );
    }

    #[test]
    fn a_granted_vote_forgets_the_leader_and_holds_off_quiet_confirmations() {
        let timer = ElectionTimer::new(Duration::from_millis(500));
        timer.heard_quiet_leader();
        assert!(timer.quiet_leader_silence().is_some());
        assert!(timer.may_confirm_quiet(Duration::from_secs(1)));
        timer.granted_vote();
        assert!(timer.quiet_leader_silence().is_none());
        assert!(!timer.may_confirm_quiet(Duration::from_secs(1)));
        assert!(timer.may_confirm_quiet(Duration::ZERO));
    }

    #[test]
    fn only_voters_and_removed_leaders_need_a_tick() {
        let learner = GroupView {
            state: ServerState::Learner,
            ..follower(false, None)
        };
        assert!(!needs_timer(learner, || false, LIMITS));
        assert!(
            !needs_timer(follower(false, None), || false, LIMITS),
            "not a voter"
        );
        let leader = GroupView {
            state: ServerState::Leader,
            ..follower(false, None)
        };
        assert!(!needs_timer(leader, || true, LIMITS));
        assert!(
            needs_timer(leader, || false, LIMITS),
            "a leader removed from the voters steps down on a tick"
        );
    }

    #[test]
    fn a_follower_hearing_its_leader_is_not_asked_whether_it_votes() {
        let asked = std::cell::Cell::new(false);
        let voter = || {
            asked.set(true);
            true
        };
        assert!(!needs_timer(follower(true, Some(0)), voter, LIMITS));
        assert!(!asked.get());
    }
}
