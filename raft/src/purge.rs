//! Purging Raft logs below what each group's state machine still reads.
//!
//! Every replica purges its own log: the floor ([`crate::snapshot::LogFloor`]) comes from
//! replicated state, so it moves identically everywhere, but when each node deletes the
//! entries below it is its own business. openraft purges only up to a snapshot, so a
//! snapshot is taken first; a replica that later needs the purged entries is sent one.

use std::sync::Weak;
use std::time::Duration;

use crate::node::RaftNode;
use crate::replica::Replica;

/// How often each group's floor is looked at.
pub(crate) const PURGE_INTERVAL: Duration = Duration::from_secs(5);

/// Fewer entries than this below the floor are left for later: each purge takes a
/// snapshot, and a partition's first entries (its start) would otherwise cost one per
/// partition.
const MIN_PURGE_ENTRIES: u64 = 64;

pub(crate) async fn purge_loop(node: Weak<RaftNode>) {
    let mut tick = tokio::time::interval(PURGE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(node) = node.upgrade() else {
            return;
        };
        purge(&node.controller.replica).await;
        for partition in node.partitions() {
            purge(&partition.replica).await;
        }
    }
}

/// What to do about one group's log now: take a snapshot, purge up to an entry, or both.
#[derive(Debug, Default, PartialEq, Eq)]
struct Steps {
    snapshot: bool,
    purge_upto: Option<u64>,
}

/// `floor` is the group's floor now, `seen` what it was one interval ago: entries below
/// `seen` go (no further than the last snapshot), so that a reader which located a batch
/// just before the log start moved past it still finds the entry. A snapshot is taken
/// whenever the floor is past it, so that the purge can follow, also while the floor
/// keeps moving.
fn next_steps(floor: u64, seen: u64, purged: u64, snapshot: u64) -> Steps {
    let wanted = floor.saturating_sub(1);
    if wanted < purged + MIN_PURGE_ENTRIES {
        return Steps::default();
    }
    let upto = seen.min(floor).saturating_sub(1).min(snapshot);
    Steps {
        snapshot: snapshot < wanted,
        purge_upto: (upto >= purged + MIN_PURGE_ENTRIES).then_some(upto),
    }
}

async fn purge(replica: &Replica) {
    let floor = replica.floor.get();
    let seen = std::mem::replace(&mut *replica.purge_seen.lock().expect("purge lock"), floor);
    let (purged, snapshot) = replica.purged_and_snapshot();
    let steps = next_steps(floor, seen, purged, snapshot);
    let trigger = replica.raft.trigger();
    let mut result = Ok(());
    if let Some(upto) = steps.purge_upto {
        tracing::debug!(group = replica.group, upto, "purging the raft log");
        result = trigger.purge_log(upto).await;
    }
    if steps.snapshot && result.is_ok() {
        result = trigger.snapshot().await;
    }
    if let Err(e) = result {
        tracing::debug!(group = replica.group, error = %e, "no purge: the group stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_comes_first_and_the_purge_one_interval_later() {
        let steps = |snapshot, purge_upto| Steps {
            snapshot,
            purge_upto,
        };
        // Nothing to gain yet.
        assert_eq!(next_steps(10, 10, 0, 0), steps(false, None));
        // The floor moved to 1000: a snapshot at once, whatever was seen before.
        assert_eq!(next_steps(1000, 10, 0, 0), steps(true, None));
        // The snapshot covers it, but the floor was lower an interval ago.
        assert_eq!(next_steps(1000, 10, 0, 1200), steps(false, None));
        // One interval later.
        assert_eq!(next_steps(1000, 1000, 0, 1200), steps(false, Some(999)));
        assert_eq!(next_steps(1000, 1000, 999, 1200), steps(false, None));
        // A floor that went down (a snapshot installed) is not purged past.
        assert_eq!(next_steps(500, 1000, 0, 1200), steps(false, Some(499)));
    }

    #[test]
    fn a_floor_that_moves_every_interval_is_still_purged_behind() {
        // Each interval the floor moves 1,000 entries on, past the snapshot taken the
        // interval before: a snapshot every time, and the purge one interval behind.
        let (mut purged, mut snapshot, mut seen) = (0, 0, 0);
        for round in 1..=5u64 {
            let floor = round * 1000;
            let s = next_steps(floor, seen, purged, snapshot);
            assert!(s.snapshot, "round {round}");
            if round > 1 {
                assert_eq!(s.purge_upto, Some(floor - 1001), "round {round}");
            }
            purged = s.purge_upto.unwrap_or(purged);
            // The snapshot is taken at the applied entry, at or past the floor.
            snapshot = floor;
            seen = floor;
        }
        assert_eq!(purged, 3999);
    }
}
