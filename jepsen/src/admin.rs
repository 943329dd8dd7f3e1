//! The admin requests of the membership nemesis that librdkafka does not offer
//! (AlterPartitionReassignments, ListPartitionReassignments, UnregisterBroker), sent over
//! a plain blocking connection to whichever node answers.

use std::time::Duration;

use anyhow::{bail, Context};
use strand_protocol::kafka_protocol::messages::{
    alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic},
    AlterPartitionReassignmentsRequest, ApiKey, BrokerId, ListPartitionReassignmentsRequest,
    RequestKind, ResponseKind, TopicName, UnregisterBrokerRequest,
};
use strand_protocol::kafka_protocol::protocol::StrBytes;
use strand_protocol::ResponseError;
use strand_wire_client::Connection;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Sends one request to `addr` on a new connection and waits for its answer.
fn call(addr: &str, key: ApiKey, version: i16, body: &RequestKind) -> anyhow::Result<ResponseKind> {
    let mut conn = Connection::connect(addr.parse()?, TIMEOUT, "jepsen-nemesis")?;
    Ok(conn.call(key, version, body)?)
}

/// A Kafka error code as a result, with the broker's message.
fn check(code: i16, message: Option<&StrBytes>) -> anyhow::Result<()> {
    if code == 0 {
        return Ok(());
    }
    let error = ResponseError::try_from_code(code)
        .map_or_else(|| format!("error {code}"), |e| format!("{e:?}"));
    bail!(
        "{error}{}",
        message.map(|m| format!(": {m}")).unwrap_or_default()
    )
}

/// The nodes' Kafka addresses; each request goes to the first that answers it without error.
pub struct Admin {
    nodes: Vec<String>,
}

impl Admin {
    pub fn new(nodes: Vec<String>) -> Admin {
        Admin { nodes }
    }

    fn on_any<T>(&self, mut attempt: impl FnMut(&str) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let mut errors = Vec::new();
        for node in &self.nodes {
            match attempt(node) {
                Ok(answer) => return Ok(answer),
                Err(e) => errors.push(format!("{node}: {e:#}")),
            }
        }
        bail!("{}", errors.join("; "))
    }

    /// Moves `topic`'s `partition` to `replicas` (the first is the preferred leader), or,
    /// with `None`, cancels its move in progress.
    pub fn reassign(
        &self,
        topic: &str,
        partition: i32,
        replicas: Option<&[i32]>,
    ) -> anyhow::Result<()> {
        let request = RequestKind::AlterPartitionReassignments(
            AlterPartitionReassignmentsRequest::default()
                .with_timeout_ms(TIMEOUT.as_millis() as i32)
                .with_topics(vec![ReassignableTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partitions(vec![ReassignablePartition::default()
                        .with_partition_index(partition)
                        .with_replicas(
                            replicas.map(|r| r.iter().copied().map(BrokerId).collect()),
                        )])]),
        );
        self.on_any(|node| {
            let ResponseKind::AlterPartitionReassignments(r) =
                call(node, ApiKey::AlterPartitionReassignments, 0, &request)?
            else {
                bail!("not an AlterPartitionReassignments response");
            };
            check(r.error_code, r.error_message.as_ref())?;
            let p = r
                .responses
                .first()
                .and_then(|t| t.partitions.first())
                .context("no partition in the answer")?;
            check(p.error_code, p.error_message.as_ref())
        })
    }

    /// Whether a move of `topic`'s `partition` is in progress.
    pub fn moving(&self, topic: &str, partition: i32) -> anyhow::Result<bool> {
        let request = RequestKind::ListPartitionReassignments(
            ListPartitionReassignmentsRequest::default()
                .with_timeout_ms(TIMEOUT.as_millis() as i32),
        );
        self.on_any(|node| {
            let ResponseKind::ListPartitionReassignments(r) =
                call(node, ApiKey::ListPartitionReassignments, 0, &request)?
            else {
                bail!("not a ListPartitionReassignments response");
            };
            check(r.error_code, r.error_message.as_ref())?;
            Ok(r.topics.iter().any(|t| {
                t.name.0.as_str() == topic
                    && t.partitions.iter().any(|p| p.partition_index == partition)
            }))
        })
    }

    /// Removes broker `id` from the cluster (it must hold no replica any more).
    pub fn unregister(&self, id: i32) -> anyhow::Result<()> {
        let request = RequestKind::UnregisterBroker(
            UnregisterBrokerRequest::default().with_broker_id(BrokerId(id)),
        );
        self.on_any(|node| {
            let ResponseKind::UnregisterBroker(r) =
                call(node, ApiKey::UnregisterBroker, 0, &request)?
            else {
                bail!("not an UnregisterBroker response");
            };
            check(r.error_code, r.error_message.as_ref())
        })
    }
}
