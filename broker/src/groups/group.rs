//! One consumer group's membership, run as Kafka's classic group protocol runs it.
//!
//! Members join (JoinGroup), the group waits until every known member has rejoined or the
//! rebalance timeout passes, a new generation starts and its leader computes the assignment,
//! which it hands back in SyncGroup for every member to collect; heartbeats keep members
//! alive and tell them when the next rebalance starts. The assignors (range, roundrobin,
//! cooperative-sticky) run in the clients; the broker only sequences generations.
//!
//! Everything here is synchronous and takes the current time as an argument, so the rules
//! are unit-tested without clocks or sockets. Requests that must wait for other members
//! (JoinGroup, SyncGroup) get a receiver that is answered when the group moves on.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;

/// The broker's limits for groups (Kafka's `group.*` settings).
#[derive(Debug, Clone, Copy)]
pub struct GroupLimits {
    pub min_session_timeout: Duration,
    pub max_session_timeout: Duration,
    /// How long the first rebalance of an empty group waits for more members to arrive.
    pub initial_rebalance_delay: Duration,
    /// Members and members-to-be a group may have (Kafka: group.max.size).
    pub max_size: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    /// The name Kafka's tools show.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

const NONE: i16 = 0;

fn code(error: ResponseError) -> i16 {
    error.code()
}

/// A JoinGroup request, decoded.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    /// Protocol names with the member's metadata for each, in the member's preference order.
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a member without an id is given one and must join again with it.
    pub require_known_member_id: bool,
}

/// A JoinGroup answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JoinOutcome {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// For the leader only: every member with its instance id and metadata.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinOutcome {
    fn error(error: i16, member_id: &str) -> JoinOutcome {
        JoinOutcome {
            error,
            generation: -1,
            member_id: member_id.to_string(),
            ..JoinOutcome::default()
        }
    }
}

/// A SyncGroup answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncOutcome {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncOutcome {
    fn error(error: i16) -> SyncOutcome {
        SyncOutcome {
            error,
            ..SyncOutcome::default()
        }
    }
}

/// An answer now, or one that comes when the group moves on.
#[derive(Debug)]
pub enum Reply<T> {
    Now(T),
    Later(oneshot::Receiver<T>),
}

/// A member as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct MemberDescription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug)]
struct Member {
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    last_heard: Instant,
    /// When the member joined, relative to the others: the earliest leads.
    joined: u64,
    /// Present while the member waits in JoinGroup: it has rejoined this rebalance (as in
    /// Kafka, even if its client no longer waits for the answer; see [`Member::rejoined`]).
    join_waiter: Option<oneshot::Sender<JoinOutcome>>,
    /// The member's SyncGroup requests waiting for the leader's assignment. A client that
    /// retries one before the first is answered gets the assignment on both.
    sync_waiters: Vec<oneshot::Sender<SyncOutcome>>,
}

impl Member {
    fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    /// Takes a rejoining member's new settings; says whether its protocols changed (which
    /// calls for a rebalance).
    fn rejoin(&mut self, request: JoinRequest, now: Instant) -> bool {
        let changed = self.protocols != request.protocols;
        self.protocols = request.protocols;
        self.session_timeout = request.session_timeout;
        self.rebalance_timeout = request.rebalance_timeout;
        self.client_id = request.client_id;
        self.client_host = request.client_host;
        self.last_heard = now;
        changed
    }

    /// Whether the member has rejoined this rebalance and its client still waits for the
    /// answer. One whose wait timed out, or whose connection closed, takes part in the
    /// generation (it may rejoin with its member id and get it) but must not lead it.
    fn rejoined(&self) -> bool {
        self.join_waiter.as_ref().is_some_and(|w| !w.is_closed())
    }

    /// Whether a request of the member's waits here, with its client waiting for the answer.
    fn waiting(&self) -> bool {
        self.rejoined() || self.sync_waiters.iter().any(|w| !w.is_closed())
    }

    /// Answers the member's waiting SyncGroup requests.
    fn answer_sync(&mut self, outcome: &SyncOutcome) {
        for waiter in self.sync_waiters.drain(..) {
            let _ = waiter.send(outcome.clone());
        }
    }

    /// Answers whatever the member waits for with `error`.
    fn dismiss(&mut self, error: i16, member_id: &str) {
        if let Some(waiter) = self.join_waiter.take() {
            let _ = waiter.send(JoinOutcome::error(error, member_id));
        }
        self.answer_sync(&SyncOutcome::error(error));
    }
}

#[derive(Debug)]
pub struct Group {
    limits: GroupLimits,
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, until they join or expire.
    pending: HashMap<String, Instant>,
    /// Static members: instance id to current member id.
    instances: HashMap<String, String>,
    /// The `joined` number the next new member gets.
    next_joined: u64,
    /// When the current rebalance ends whoever has not rejoined.
    rebalance_deadline: Option<Instant>,
    /// The first rebalance of an empty group waits this long for more members.
    initial_delay_until: Option<Instant>,
}

impl Group {
    pub fn new(limits: GroupLimits) -> Group {
        Group {
            limits,
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            instances: HashMap::new(),
            next_joined: 0,
            rebalance_deadline: None,
            initial_delay_until: None,
        }
    }

    pub fn state(&self) -> GroupState {
        self.state
    }

    pub fn generation(&self) -> i32 {
        self.generation
    }

    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.pending.is_empty()
    }

    pub fn members(&self) -> Vec<MemberDescription> {
        let protocol = self.protocol.as_deref().unwrap_or_default();
        self.members
            .iter()
            .map(|(id, m)| MemberDescription {
                member_id: id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: m.metadata(protocol),
                assignment: m.assignment.clone(),
            })
            .collect()
    }

    /// Protocols every member (and the newcomer's `protocols`) supports.
    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|(name, _)| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            })
    }

    pub fn join(&mut self, request: JoinRequest, now: Instant) -> Reply<JoinOutcome> {
        let fail =
            |error: ResponseError| Reply::Now(JoinOutcome::error(code(error), &request.member_id));
        if request.session_timeout < self.limits.min_session_timeout
            || request.session_timeout > self.limits.max_session_timeout
        {
            return fail(ResponseError::InvalidSessionTimeout);
        }
        if !self.supports(&request.protocol_type, &request.protocols) {
            return fail(ResponseError::InconsistentGroupProtocol);
        }
        if request.member_id.is_empty() {
            let prefix = request
                .instance_id
                .as_deref()
                .unwrap_or(&request.client_id)
                .to_string();
            let member_id = format!("{prefix}-{}", uuid::Uuid::new_v4());
            let known_instance = request
                .instance_id
                .as_ref()
                .and_then(|instance| self.instances.get(instance).cloned());
            if let Some(old) = known_instance {
                return self.replace_static_member(old, member_id, request, now);
            }
            if self.members.len() + self.pending.len() >= self.limits.max_size {
                return fail(ResponseError::GroupMaxSizeReached);
            }
            if request.instance_id.is_none() && request.require_known_member_id {
                self.pending
                    .insert(member_id.clone(), now + request.session_timeout);
                return Reply::Now(JoinOutcome::error(
                    code(ResponseError::MemberIdRequired),
                    &member_id,
                ));
            }
            return self.add_member(member_id, request, now);
        }
        if let Some(instance) = &request.instance_id {
            if let Some(current) = self.instances.get(instance) {
                if *current != request.member_id {
                    return fail(ResponseError::FencedInstanceId);
                }
            }
        }
        if self.pending.remove(&request.member_id).is_some() {
            let member_id = request.member_id.clone();
            return self.add_member(member_id, request, now);
        }
        let member_id = request.member_id.clone();
        let Some(member) = self.members.get_mut(&member_id) else {
            return fail(ResponseError::UnknownMemberId);
        };
        let changed = member.rejoin(request, now);
        match self.state {
            GroupState::PreparingRebalance => self.wait_for_join(&member_id, now),
            GroupState::CompletingRebalance if !changed => {
                Reply::Now(self.join_outcome(&member_id))
            }
            GroupState::Stable if !changed && self.leader.as_ref() != Some(&member_id) => {
                Reply::Now(self.join_outcome(&member_id))
            }
            _ => {
                self.prepare_rebalance(now);
                self.wait_for_join(&member_id, now)
            }
        }
    }

    fn add_member(
        &mut self,
        member_id: String,
        request: JoinRequest,
        now: Instant,
    ) -> Reply<JoinOutcome> {
        if self.members.is_empty() {
            self.protocol_type = Some(request.protocol_type.clone());
        }
        self.next_joined += 1;
        if let Some(instance) = &request.instance_id {
            self.instances.insert(instance.clone(), member_id.clone());
        }
        self.members.insert(
            member_id.clone(),
            Member {
                instance_id: request.instance_id,
                client_id: request.client_id,
                client_host: request.client_host,
                session_timeout: request.session_timeout,
                rebalance_timeout: request.rebalance_timeout,
                protocols: request.protocols,
                assignment: Bytes::new(),
                last_heard: now,
                joined: self.next_joined,
                join_waiter: None,
                sync_waiters: Vec::new(),
            },
        );
        if self.state == GroupState::PreparingRebalance {
            // Every newcomer during the initial delay extends it, up to the rebalance timeout.
            if let (Some(until), Some(deadline)) =
                (self.initial_delay_until, self.rebalance_deadline)
            {
                self.initial_delay_until = Some(
                    (now + self.limits.initial_rebalance_delay)
                        .min(deadline)
                        .max(until),
                );
            }
        } else {
            self.prepare_rebalance(now);
        }
        self.wait_for_join(&member_id, now)
    }

    /// A static member restarted with the same instance id: the new member id takes the
    /// old one's place and assignment, and the old id is fenced. If nothing else changed,
    /// no rebalance happens (KIP-345).
    fn replace_static_member(
        &mut self,
        old: String,
        new: String,
        request: JoinRequest,
        now: Instant,
    ) -> Reply<JoinOutcome> {
        let Some(mut member) = self.members.remove(&old) else {
            self.instances
                .remove(request.instance_id.as_deref().unwrap_or_default());
            return self.add_member(new, request, now);
        };
        member.dismiss(code(ResponseError::FencedInstanceId), &old);
        let instance = request.instance_id.clone();
        let changed = member.rejoin(request, now);
        self.members.insert(new.clone(), member);
        if let Some(instance) = instance {
            self.instances.insert(instance, new.clone());
        }
        if self.leader.as_ref() == Some(&old) {
            self.leader = Some(new.clone());
        }
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance if !changed => {
                Reply::Now(self.join_outcome(&new))
            }
            GroupState::PreparingRebalance => self.wait_for_join(&new, now),
            _ => {
                self.prepare_rebalance(now);
                self.wait_for_join(&new, now)
            }
        }
    }

    fn wait_for_join(&mut self, member_id: &str, now: Instant) -> Reply<JoinOutcome> {
        let (tx, rx) = oneshot::channel();
        if let Some(member) = self.members.get_mut(member_id) {
            if let Some(previous) = member.join_waiter.replace(tx) {
                // A retried JoinGroup replaces the earlier one, which gets no generation.
                let _ = previous.send(JoinOutcome::error(
                    code(ResponseError::RebalanceInProgress),
                    member_id,
                ));
            }
        }
        self.complete_join_if_ready(now);
        Reply::Later(rx)
    }

    /// The answer for a member of the current generation.
    fn join_outcome(&self, member_id: &str) -> JoinOutcome {
        let protocol = self.protocol.clone().unwrap_or_default();
        let is_leader = self.leader.as_deref() == Some(member_id);
        JoinOutcome {
            error: NONE,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members: if is_leader {
                self.members
                    .iter()
                    .map(|(id, m)| (id.clone(), m.instance_id.clone(), m.metadata(&protocol)))
                    .collect()
            } else {
                Vec::new()
            },
        }
    }

    fn prepare_rebalance(&mut self, now: Instant) {
        if self.state == GroupState::CompletingRebalance {
            let outcome = SyncOutcome::error(code(ResponseError::RebalanceInProgress));
            for member in self.members.values_mut() {
                member.answer_sync(&outcome);
            }
        }
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        self.initial_delay_until = (self.state == GroupState::Empty)
            .then(|| now + self.limits.initial_rebalance_delay.min(timeout));
        self.rebalance_deadline = Some(now + timeout);
        self.state = GroupState::PreparingRebalance;
    }

    /// Ends the join phase once every member has rejoined (and the initial delay passed),
    /// or at the rebalance deadline without those that did not.
    fn complete_join_if_ready(&mut self, now: Instant) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let all_joined =
            self.pending.is_empty() && self.members.values().all(|m| m.join_waiter.is_some());
        let delay_over = self.initial_delay_until.is_none_or(|t| now >= t);
        let deadline_passed = self.rebalance_deadline.is_some_and(|d| now >= d);
        if !(deadline_passed || (all_joined && delay_over)) {
            return;
        }
        let gone: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| m.join_waiter.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            self.forget(&id);
        }
        self.pending.clear();
        self.generation += 1;
        self.rebalance_deadline = None;
        self.initial_delay_until = None;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.leader = None;
            return;
        }
        self.protocol = self.select_protocol();
        let leads = |id: &String| self.members.get(id).is_some_and(Member::rejoined);
        if !self.leader.as_ref().is_some_and(leads) {
            // As Kafka: the longest-standing member leads, but only one whose client waits
            // for the answer: a leader that never hears of the generation sends no
            // assignment, and the others would wait for it until its session ends.
            self.leader = self
                .members
                .iter()
                .min_by_key(|(_, m)| (!m.rejoined(), m.joined))
                .map(|(id, _)| id.clone());
        }
        self.state = GroupState::CompletingRebalance;
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let outcome = self.join_outcome(&id);
            let member = self.members.get_mut(&id).expect("member listed");
            member.last_heard = now;
            member.assignment = Bytes::new();
            if let Some(waiter) = member.join_waiter.take() {
                let _ = waiter.send(outcome);
            }
        }
    }

    /// The protocol most members prefer among those all support.
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(name, _)| name)
            .filter(|name| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == *name))
            })
            .collect();
        let mut votes: HashMap<&String, usize> = HashMap::new();
        for member in self.members.values() {
            if let Some((name, _)) = member
                .protocols
                .iter()
                .find(|(n, _)| candidates.contains(&n))
            {
                *votes.entry(name).or_default() += 1;
            }
        }
        candidates
            .iter()
            .max_by_key(|name| {
                (
                    votes.get(*name).copied().unwrap_or(0),
                    std::cmp::Reverse(candidates.iter().position(|c| c == *name)),
                )
            })
            .map(|name| (*name).clone())
    }

    /// Checks a request's member id, instance id and generation.
    fn check_member(&self, member_id: &str, instance_id: Option<&str>, generation: i32) -> i16 {
        if let Some(instance) = instance_id {
            if self
                .instances
                .get(instance)
                .is_some_and(|current| current != member_id)
            {
                return code(ResponseError::FencedInstanceId);
            }
        }
        if !self.members.contains_key(member_id) {
            return code(ResponseError::UnknownMemberId);
        }
        if generation != self.generation {
            return code(ResponseError::IllegalGeneration);
        }
        NONE
    }

    pub fn sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol: (Option<&str>, Option<&str>),
        assignments: Vec<(String, Bytes)>,
        now: Instant,
    ) -> Reply<SyncOutcome> {
        let error = self.check_member(member_id, instance_id, generation);
        if error != NONE {
            return Reply::Now(SyncOutcome::error(error));
        }
        let (protocol_type, protocol_name) = protocol;
        if protocol_type.is_some_and(|t| Some(t) != self.protocol_type.as_deref())
            || protocol_name.is_some_and(|n| Some(n) != self.protocol.as_deref())
        {
            return Reply::Now(SyncOutcome::error(code(
                ResponseError::InconsistentGroupProtocol,
            )));
        }
        match self.state {
            GroupState::Empty | GroupState::PreparingRebalance => {
                Reply::Now(SyncOutcome::error(code(ResponseError::RebalanceInProgress)))
            }
            GroupState::Stable => Reply::Now(self.sync_outcome(member_id)),
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                let member = self.members.get_mut(member_id).expect("checked member");
                member.last_heard = now;
                member.sync_waiters.retain(|w| !w.is_closed());
                member.sync_waiters.push(tx);
                if self.leader.as_deref() == Some(member_id) {
                    for (id, assignment) in assignments {
                        if let Some(m) = self.members.get_mut(&id) {
                            m.assignment = assignment;
                        }
                    }
                    self.state = GroupState::Stable;
                    let ids: Vec<String> = self.members.keys().cloned().collect();
                    for id in ids {
                        let outcome = self.sync_outcome(&id);
                        let m = self.members.get_mut(&id).expect("member listed");
                        if !m.sync_waiters.is_empty() {
                            m.last_heard = now;
                            m.answer_sync(&outcome);
                        }
                    }
                }
                Reply::Later(rx)
            }
        }
    }

    fn sync_outcome(&self, member_id: &str) -> SyncOutcome {
        SyncOutcome {
            error: NONE,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            assignment: self
                .members
                .get(member_id)
                .map(|m| m.assignment.clone())
                .unwrap_or_default(),
        }
    }

    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> i16 {
        let error = self.check_member(member_id, instance_id, generation);
        if error != NONE {
            return error;
        }
        self.members
            .get_mut(member_id)
            .expect("checked member")
            .last_heard = now;
        match self.state {
            GroupState::PreparingRebalance => code(ResponseError::RebalanceInProgress),
            _ => NONE,
        }
    }

    /// Removes one member (LeaveGroup), named by member id or, for static members, by
    /// instance id.
    pub fn leave(&mut self, member_id: &str, instance_id: Option<&str>, now: Instant) -> i16 {
        let target = match instance_id {
            Some(instance) => match self.instances.get(instance) {
                None => return code(ResponseError::UnknownMemberId),
                Some(current) if !member_id.is_empty() && current != member_id => {
                    return code(ResponseError::FencedInstanceId)
                }
                Some(current) => current.clone(),
            },
            None => member_id.to_string(),
        };
        if self.pending.remove(&target).is_some() {
            self.complete_join_if_ready(now);
            return NONE;
        }
        if !self.members.contains_key(&target) {
            return code(ResponseError::UnknownMemberId);
        }
        self.remove(&target, now);
        NONE
    }

    fn forget(&mut self, member_id: &str) {
        if let Some(mut member) = self.members.remove(member_id) {
            member.dismiss(code(ResponseError::UnknownMemberId), member_id);
            if let Some(instance) = member.instance_id {
                if self.instances.get(&instance).map(String::as_str) == Some(member_id) {
                    self.instances.remove(&instance);
                }
            }
        }
    }

    fn remove(&mut self, member_id: &str, now: Instant) {
        self.forget(member_id);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => self.prepare_rebalance(now),
            _ => {}
        }
        self.complete_join_if_ready(now);
    }

    /// Expires members whose session timed out and pending ids never used, and ends the
    /// join phase when its time has come. Called periodically.
    pub fn tick(&mut self, now: Instant) {
        self.pending.retain(|_, deadline| *deadline > now);
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| !m.waiting() && now.duration_since(m.last_heard) > m.session_timeout)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            tracing::info!(member = %id, "group member's session expired");
            self.remove(&id, now);
        }
        self.complete_join_if_ready(now);
    }

    /// Whether an offset commit from this member may proceed (Kafka's rules: members of
    /// the current generation, or anyone while the group has no members).
    pub fn check_commit(&self, member_id: &str, instance_id: Option<&str>, generation: i32) -> i16 {
        if generation >= 0 || !member_id.is_empty() || instance_id.is_some() {
            let error = self.check_member(member_id, instance_id, generation);
            if error != NONE {
                return error;
            }
            if self.state == GroupState::CompletingRebalance {
                return code(ResponseError::RebalanceInProgress);
            }
            NONE
        } else if self.members.is_empty() {
            NONE
        } else {
            code(ResponseError::UnknownMemberId)
        }
    }

    /// Answers every waiting request with `error` (the coordinator moved away).
    pub fn abandon(&mut self, error: i16) {
        for (id, member) in self.members.iter_mut() {
            member.dismiss(error, id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn limits() -> GroupLimits {
        GroupLimits {
            min_session_timeout: Duration::from_secs(6),
            max_session_timeout: Duration::from_secs(1800),
            initial_rebalance_delay: Duration::from_secs(3),
            max_size: 1000,
        }
    }

    fn request(member_id: &str, instance: Option<&str>) -> JoinRequest {
        JoinRequest {
            member_id: member_id.into(),
            instance_id: instance.map(String::from),
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(30),
            protocol_type: "consumer".into(),
            protocols: vec![
                ("range".into(), Bytes::from_static(b"r")),
                ("roundrobin".into(), Bytes::from_static(b"rr")),
            ],
            require_known_member_id: true,
        }
    }

    fn now_or_panic<T: std::fmt::Debug>(reply: Reply<T>) -> T {
        match reply {
            Reply::Now(v) => v,
            Reply::Later(_) => panic!("expected an immediate answer"),
        }
    }

    fn answered<T>(reply: &mut Reply<T>) -> Option<T> {
        match reply {
            Reply::Now(_) => panic!("expected to wait"),
            Reply::Later(rx) => rx.try_recv().ok(),
        }
    }

    /// Joins a new dynamic member: MEMBER_ID_REQUIRED, then the real join.
    fn join_new(g: &mut Group, now: Instant) -> (String, Reply<JoinOutcome>) {
        let first = now_or_panic(g.join(request("", None), now));
        assert_eq!(first.error, ResponseError::MemberIdRequired.code());
        let id = first.member_id;
        let reply = g.join(request(&id, None), now);
        (id, reply)
    }

    #[test]
    fn a_full_group_refuses_newcomers_but_not_its_members_or_returning_static_ones() {
        let mut g = Group::new(GroupLimits {
            max_size: 2,
            ..limits()
        });
        let t0 = Instant::now();
        let (a, _ra) = join_new(&mut g, t0);
        let static_join = g.join(request("", Some("i1")), t0);
        assert!(
            matches!(static_join, Reply::Later(_)),
            "joins as the second"
        );
        let full = now_or_panic(g.join(request("", None), t0));
        assert_eq!(full.error, ResponseError::GroupMaxSizeReached.code());
        let full = now_or_panic(g.join(request("", Some("i2")), t0));
        assert_eq!(full.error, ResponseError::GroupMaxSizeReached.code());
        // A restarted static member takes its old place; a member rejoins as before.
        assert!(matches!(
            g.join(request("", Some("i1")), t0),
            Reply::Later(_)
        ));
        assert!(matches!(g.join(request(&a, None), t0), Reply::Later(_)));
        assert_eq!(g.members().len(), 2);
    }

    #[test]
    fn first_members_wait_out_the_initial_delay_then_one_generation_starts() {
        let mut g = Group::new(limits());
        let t0 = Instant::now();
        let (a, mut ra) = join_new(&mut g, t0);
        let (b, mut rb) = join_new(&mut g, t0 + SECOND);
        g.tick(t0 + 2 * SECOND);
        assert!(
            answered(&mut ra).is_none(),
            "still inside the initial delay"
        );
        g.tick(t0 + 5 * SECOND);
        let ja = answered(&mut ra).expect("join complete");
        let jb = answered(&mut rb).expect("join complete");
        assert_eq!((ja.generation, jb.generation), (1, 1));
        assert_eq!(ja.protocol_name.as_deref(), Some("range"));
        assert_eq!(ja.leader, a);
        assert_eq!(ja.members.len(), 2, "the leader sees every member");
        assert!(jb.members.is_empty());
        assert_eq!(g.state(), GroupState::CompletingRebalance);

        // The follower waits in SyncGroup until the leader brings the assignment.
        let mut sb = g.sync(&b, None, 1, (None, None), vec![], t0 + 5 * SECOND);
        assert!(answered(&mut sb).is_none());
        let assignments = vec![
            (a.clone(), Bytes::from_static(b"A")),
            (b.clone(), Bytes::from_static(b"B")),
        ];
        let mut sa = g.sync(
            &a,
            None,
            1,
            (Some("consumer"), Some("range")),
            assignments,
            t0 + 5 * SECOND,
        );
        assert_eq!(
            answered(&mut sa).unwrap().assignment,
            Bytes::from_static(b"A")
        );
        assert_eq!(
            answered(&mut sb).unwrap().assignment,
            Bytes::from_static(b"B")
        );
        assert_eq!(g.state(), GroupState::Stable);
        assert_eq!(g.heartbeat(&b, None, 1, t0 + 6 * SECOND), 0);
    }

    /// A stable group of members `a` and `b`, generation 1.
    fn stable_pair(t0: Instant) -> (Group, String, String) {
        let mut g = Group::new(limits());
        let (a, _ra) = join_new(&mut g, t0);
        let (b, _rb) = join_new(&mut g, t0);
        g.tick(t0 + 4 * SECOND);
        let _ = g.sync(&b, None, 1, (None, None), vec![], t0 + 4 * SECOND);
        let _ = g.sync(&a, None, 1, (None, None), vec![], t0 + 4 * SECOND);
        assert_eq!(g.state(), GroupState::Stable);
        (g, a, b)
    }

    #[test]
    fn a_newcomer_starts_a_rebalance_that_heartbeats_announce() {
        let t0 = Instant::now();
        let (mut g, a, b) = stable_pair(t0);
        let t = t0 + 5 * SECOND;
        let (c, mut rc) = join_new(&mut g, t);
        assert_eq!(g.state(), GroupState::PreparingRebalance);
        assert_eq!(
            g.heartbeat(&a, None, 1, t),
            ResponseError::RebalanceInProgress.code()
        );
        let mut ra = g.join(request(&a, None), t);
        assert!(answered(&mut rc).is_none(), "b has not rejoined");
        let mut rb = g.join(request(&b, None), t);
        for r in [&mut ra, &mut rb, &mut rc] {
            assert_eq!(answered(r).unwrap().generation, 2);
        }
        assert_eq!(g.members().len(), 3);
        assert_eq!(
            g.heartbeat(&c, None, 1, t),
            ResponseError::IllegalGeneration.code()
        );
    }

    #[test]
    fn a_retried_sync_group_gets_the_assignment_as_the_first_does() {
        let t0 = Instant::now();
        let mut g = Group::new(limits());
        let (a, _ra) = join_new(&mut g, t0);
        let (b, _rb) = join_new(&mut g, t0);
        g.tick(t0 + 4 * SECOND);
        let mut first = g.sync(&b, None, 1, (None, None), vec![], t0 + 4 * SECOND);
        let mut retried = g.sync(&b, None, 1, (None, None), vec![], t0 + 5 * SECOND);
        let assignments = vec![(b.clone(), Bytes::from_static(b"B"))];
        let _sa = g.sync(&a, None, 1, (None, None), assignments, t0 + 5 * SECOND);
        for reply in [&mut first, &mut retried] {
            let outcome = answered(reply).expect("answered");
            assert_eq!(
                (outcome.error, outcome.assignment),
                (0, Bytes::from_static(b"B"))
            );
        }
    }

    #[test]
    fn a_member_whose_join_nobody_waits_for_does_not_lead() {
        let t0 = Instant::now();
        let (mut g, a, b) = stable_pair(t0);
        let t = t0 + 5 * SECOND;
        let (_c, mut rc) = join_new(&mut g, t);
        // The leader rejoins, but its client gives up on the answer (its wait timed out, or
        // its connection closed).
        drop(g.join(request(&a, None), t));
        let mut rb = g.join(request(&b, None), t);
        // Everyone rejoined, as Kafka counts it: the generation starts, led by b, the
        // longest-standing member still waiting.
        let jb = answered(&mut rb).expect("join complete");
        let jc = answered(&mut rc).expect("join complete");
        assert_eq!((jb.generation, jc.generation), (2, 2));
        assert_eq!((jb.leader.as_str(), jb.members.len()), (b.as_str(), 3));
        assert_eq!(jc.leader, b);
        // a is still a member: rejoining with its id gets it the generation it missed.
        let again = now_or_panic(g.join(request(&a, None), t + SECOND));
        assert_eq!((again.error, again.generation), (0, 2));
        assert_eq!(again.leader, b);
    }

    #[test]
    fn members_that_do_not_rejoin_or_heartbeat_are_removed() {
        let t0 = Instant::now();
        let (mut g, a, b) = stable_pair(t0);
        // b stops heartbeating; a keeps going.
        assert_eq!(g.heartbeat(&a, None, 1, t0 + 10 * SECOND), 0);
        g.tick(t0 + 15 * SECOND);
        assert_eq!(
            g.state(),
            GroupState::PreparingRebalance,
            "b's session expired"
        );
        assert_eq!(
            g.heartbeat(&b, None, 1, t0 + 15 * SECOND),
            ResponseError::UnknownMemberId.code()
        );
        let mut ra = g.join(request(&a, None), t0 + 15 * SECOND);
        let j = answered(&mut ra).unwrap();
        assert_eq!((j.generation, j.members.len()), (2, 1));
        // a leaves: the group is empty and its generation moves on.
        let _ = g.sync(&a, None, 2, (None, None), vec![], t0 + 15 * SECOND);
        assert_eq!(g.leave(&a, None, t0 + 16 * SECOND), 0);
        assert_eq!(g.state(), GroupState::Empty);
        assert_eq!(g.generation(), 3);
        assert_eq!(
            g.leave(&a, None, t0 + 16 * SECOND),
            ResponseError::UnknownMemberId.code()
        );
    }

    #[test]
    fn requests_with_the_wrong_member_or_generation_get_kafkas_errors() {
        let t0 = Instant::now();
        let (mut g, a, _) = stable_pair(t0);
        let err = |r: Reply<SyncOutcome>| now_or_panic(r).error;
        assert_eq!(
            err(g.sync("nobody", None, 1, (None, None), vec![], t0)),
            ResponseError::UnknownMemberId.code()
        );
        assert_eq!(
            err(g.sync(&a, None, 7, (None, None), vec![], t0)),
            ResponseError::IllegalGeneration.code()
        );
        assert_eq!(
            err(g.sync(&a, None, 1, (Some("connect"), None), vec![], t0)),
            ResponseError::InconsistentGroupProtocol.code()
        );
        assert_eq!(
            g.check_commit(&a, None, 0),
            ResponseError::IllegalGeneration.code()
        );
        assert_eq!(
            g.check_commit("", None, -1),
            ResponseError::UnknownMemberId.code(),
            "outsiders may not commit for a live group"
        );
        assert_eq!(g.check_commit(&a, None, 1), 0);
        let mut short = request("", None);
        short.session_timeout = Duration::from_secs(1);
        assert_eq!(
            now_or_panic(g.join(short, t0)).error,
            ResponseError::InvalidSessionTimeout.code()
        );
        let mut other = request("", None);
        other.protocols = vec![("sticky-only".into(), Bytes::new())];
        assert_eq!(
            now_or_panic(g.join(other, t0)).error,
            ResponseError::InconsistentGroupProtocol.code()
        );
        assert_eq!(
            now_or_panic(g.join(request("made-up", None), t0)).error,
            ResponseError::UnknownMemberId.code()
        );
    }

    #[test]
    fn a_static_member_restarting_keeps_its_assignment_without_a_rebalance() {
        let t0 = Instant::now();
        let mut g = Group::new(limits());
        let mut ra = g.join(request("", Some("pod-0")), t0);
        g.tick(t0 + 4 * SECOND);
        let first = answered(&mut ra).unwrap();
        let old = first.member_id.clone();
        let _ = g.sync(
            &old,
            Some("pod-0"),
            1,
            (None, None),
            vec![(old.clone(), Bytes::from_static(b"P0"))],
            t0 + 4 * SECOND,
        );
        assert_eq!(g.state(), GroupState::Stable);

        let again = now_or_panic(g.join(request("", Some("pod-0")), t0 + 5 * SECOND));
        assert_eq!((again.error, again.generation), (0, 1), "no new generation");
        assert_ne!(again.member_id, old);
        let s = now_or_panic(g.sync(
            &again.member_id,
            Some("pod-0"),
            1,
            (None, None),
            vec![],
            t0 + 5 * SECOND,
        ));
        assert_eq!(s.assignment, Bytes::from_static(b"P0"));
        assert_eq!(
            g.heartbeat(&old, Some("pod-0"), 1, t0 + 5 * SECOND),
            ResponseError::FencedInstanceId.code()
        );
        assert_eq!(g.leave("", Some("pod-0"), t0 + 6 * SECOND), 0);
        assert_eq!(g.state(), GroupState::Empty);
    }

    #[test]
    fn simple_consumers_commit_to_empty_groups() {
        let g = Group::new(limits());
        assert_eq!(g.check_commit("", None, -1), 0);
    }
}
