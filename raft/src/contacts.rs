//! When each follower last accepted this node as its leader, per group: what a leader's
//! quorum check counts (`Replica::leadership`). Appends and quiet heartbeats record it as
//! their answers arrive; it lives apart from the transport, which knows peers, not groups.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::types::{NodeId, RaftGroupId};

#[derive(Debug, Default)]
pub struct QuorumContacts {
    accepted: Mutex<HashMap<(RaftGroupId, NodeId), Instant>>,
}

impl QuorumContacts {
    /// Records that `node` accepted this node as the leader of `group` in answer to a
    /// request sent at `sent`, rather than answering with a newer vote. The lease counts
    /// from the sending: the follower's own lease, the time it refuses other candidates,
    /// ran from when it received the request.
    pub fn accepted_by(&self, group: RaftGroupId, node: NodeId, sent: Instant) {
        self.accepted_by_all(&[group], node, sent);
    }

    /// [`Self::accepted_by`] for each of `groups`.
    pub fn accepted_by_all(&self, groups: &[RaftGroupId], node: NodeId, sent: Instant) {
        let mut accepted = self.accepted.lock().expect("accepted lock");
        for group in groups {
            let at = accepted.entry((*group, node)).or_insert(sent);
            *at = (*at).max(sent);
        }
    }

    /// When `node` last accepted this node as the leader of `group`, if ever.
    pub fn last_accepted(&self, group: RaftGroupId, node: NodeId) -> Option<Instant> {
        let accepted = self.accepted.lock().expect("accepted lock");
        accepted.get(&(group, node)).copied()
    }
}
