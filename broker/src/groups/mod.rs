//! The group coordinator: consumer group membership and committed offsets.
//!
//! The leader of the controller Raft group coordinates every group. Committed offsets go
//! through that group (so they survive the loss of any node, and every node holds them);
//! membership lives in the coordinator's memory only, as DESIGN.md decides. When the
//! controller's leadership moves, the new leader starts with every group empty, and
//! members find it through FindCoordinator and rejoin, as Kafka clients do after a
//! coordinator fails over.

pub mod group;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kafka_protocol::ResponseError;
use strand_raft::{
    Command, CommittedOffset, ControllerCommand, GroupOffsets, ProposeError, Response,
    TopicPartition,
};

use crate::Broker;
pub use group::{Group, GroupLimits, GroupState, JoinOutcome, JoinRequest, Reply, SyncOutcome};

/// How often member sessions and rebalance deadlines are checked.
const TICK: Duration = Duration::from_millis(100);
/// How often committed offsets of empty groups are checked for expiry.
const RETENTION_CHECK: Duration = Duration::from_secs(60);

/// The groups this node coordinates, valid for one controller term.
#[derive(Default)]
struct Groups {
    term: u64,
    groups: HashMap<String, Group>,
}

impl Groups {
    /// Drops every group, answering their waiting requests NOT_COORDINATOR: this node no
    /// longer coordinates, or coordinates for a new term.
    fn forget_all(&mut self) {
        for group in self.groups.values_mut() {
            group.abandon(ResponseError::NotCoordinator.code());
        }
        self.groups.clear();
    }
}

pub struct Coordinator {
    limits: GroupLimits,
    /// Groups, with members or committed offsets, the cluster keeps (Strand's own bound:
    /// every group costs the coordinator memory, and its offsets cost every node).
    max_groups: usize,
    offsets_retention: Duration,
    state: Mutex<Groups>,
}

/// The coordinator's groups, locked, once this node is known to coordinate.
pub struct Locked<'a> {
    guard: MutexGuard<'a, Groups>,
    limits: GroupLimits,
    max_groups: usize,
}

impl Locked<'_> {
    /// The group `id`, created empty if this node has not seen it this term.
    pub fn group(&mut self, id: &str) -> &mut Group {
        let limits = self.limits;
        self.guard
            .groups
            .entry(id.to_string())
            .or_insert_with(|| Group::new(limits))
    }

    /// The group `id` if it has members (or members joining). A group without them is
    /// known only by its committed offsets, as after a coordinator change.
    pub fn existing(&mut self, id: &str) -> Option<&mut Group> {
        self.guard.groups.get_mut(id).filter(|g| !g.is_empty())
    }

    /// Whether group `id` may start here: it has members or committed offsets already, or
    /// fewer than `max_groups` groups do. Concurrent first commits of new groups may pass
    /// the bound by a few.
    pub fn admits(&self, id: &str, offsets: &GroupOffsets) -> bool {
        let has_members = |g: &Group| !g.is_empty();
        if offsets.contains_key(id) || self.guard.groups.get(id).is_some_and(has_members) {
            return true;
        }
        let without_offsets = self
            .guard
            .groups
            .iter()
            .filter(|(g, group)| has_members(group) && !offsets.contains_key(*g))
            .count();
        offsets.len() + without_offsets < self.max_groups
    }

    /// Every group with members.
    pub fn groups(&self) -> impl Iterator<Item = (&String, &Group)> {
        self.guard.groups.iter().filter(|(_, g)| !g.is_empty())
    }
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

impl Coordinator {
    pub fn new(limits: GroupLimits, max_groups: usize, offsets_retention: Duration) -> Coordinator {
        Coordinator {
            limits,
            max_groups,
            offsets_retention,
            state: Mutex::default(),
        }
    }

    /// The groups, if this node coordinates: it leads the controller group. Otherwise the
    /// error clients recover from: NOT_COORDINATOR (ask FindCoordinator again) or
    /// COORDINATOR_NOT_AVAILABLE (no leader yet). A new term starts from empty groups.
    pub fn lock(&self, broker: &Broker) -> Result<Locked<'_>, i16> {
        let leadership = broker.node.controller().replica.leadership();
        match leadership.leader {
            None => return Err(ResponseError::CoordinatorNotAvailable.code()),
            Some(leader) if leader != broker.node.id() => {
                return Err(ResponseError::NotCoordinator.code())
            }
            Some(_) if !leadership.serving => {
                return Err(ResponseError::CoordinatorLoadInProgress.code())
            }
            Some(_) => {}
        }
        let mut guard = self.state.lock().expect("group coordinator lock");
        if guard.term != leadership.term {
            guard.forget_all();
            guard.term = leadership.term;
        }
        Ok(Locked {
            guard,
            limits: self.limits,
            max_groups: self.max_groups,
        })
    }

    /// Expires sessions and ends rebalances on time; drops what a lost leadership left.
    fn tick(&self, broker: &Broker) {
        match self.lock(broker) {
            Ok(mut locked) => {
                let now = Instant::now();
                for group in locked.guard.groups.values_mut() {
                    group.tick(now);
                }
                // Groups whose members are all gone live on in their committed offsets.
                locked.guard.groups.retain(|_, g| !g.is_empty());
            }
            Err(_) => self
                .state
                .lock()
                .expect("group coordinator lock")
                .forget_all(),
        }
    }

    /// Offsets of groups without members whose last commit is older than the retention
    /// (Kafka: offsets.retention.minutes), by group.
    fn expired_offsets(&self, broker: &Broker) -> Vec<(String, Vec<TopicPartition>)> {
        let Ok(locked) = self.lock(broker) else {
            return Vec::new();
        };
        let before = now_ms() - self.offsets_retention.as_millis() as i64;
        let offsets = broker.node.controller().offsets();
        offsets
            .iter()
            .filter(|(id, _)| locked.guard.groups.get(*id).is_none_or(|g| g.is_empty()))
            .filter_map(|(id, committed)| {
                let old: Vec<TopicPartition> = committed
                    .iter()
                    .filter(|(_, o)| o.commit_timestamp < before)
                    .map(|(p, _)| p.clone())
                    .collect();
                (!old.is_empty()).then(|| (id.clone(), old))
            })
            .collect()
    }
}

/// Proposes a change to committed offsets on the controller group, which this node leads.
pub async fn propose_offsets(broker: &Broker, command: ControllerCommand) -> Result<Response, i16> {
    broker
        .node
        .controller()
        .replica
        .propose(Command::Controller(command))
        .await
        .map_err(|e| match e {
            ProposeError::NotLeader { .. } => ResponseError::NotCoordinator.code(),
            ProposeError::Unavailable(_) => ResponseError::CoordinatorNotAvailable.code(),
        })
}

/// Records offsets committed at `commit_timestamp`.
pub async fn commit(
    broker: &Broker,
    group: &str,
    offsets: Vec<(TopicPartition, CommittedOffset)>,
) -> Result<(), i16> {
    propose_offsets(
        broker,
        ControllerCommand::CommitOffsets {
            group: group.to_string(),
            offsets,
        },
    )
    .await
    .map(|_| ())
}

/// Runs the coordinator's timers for as long as the broker runs.
pub async fn run(broker: Arc<Broker>) {
    let mut last_retention_check = Instant::now();
    loop {
        tokio::time::sleep(TICK).await;
        broker.groups.tick(&broker);
        if last_retention_check.elapsed() >= RETENTION_CHECK {
            last_retention_check = Instant::now();
            for (group, partitions) in broker.groups.expired_offsets(&broker) {
                tracing::info!(%group, count = partitions.len(), "expiring committed offsets");
                let command = ControllerCommand::DeleteOffsets {
                    group,
                    partitions: Some(partitions),
                };
                if let Err(code) = propose_offsets(&broker, command).await {
                    tracing::debug!(code, "offset expiry deferred");
                }
            }
        }
    }
}
