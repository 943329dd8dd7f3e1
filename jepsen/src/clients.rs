//! The Kafka clients of a run, all librdkafka (the rdkafka crate): the idempotent producer,
//! assigned consumers, consumer group members with a context that logs their rebalances,
//! and metadata lookups of leaders and replicas for the nemesis.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::producer::FutureProducer;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use serde_json::Value;

use crate::recorder::{ClientLog, Recorder};
use crate::workload::TOPIC;

pub(crate) fn client_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("log_level", "3");
    config
}

pub(crate) fn producer(bootstrap: &str) -> anyhow::Result<FutureProducer> {
    Ok(client_config(bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "10000")
        .set("linger.ms", "1")
        .create()?)
}

/// A consumer's context: counts its rebalances, so that a poll operation can end at one,
/// and writes to the client log each rebalance, what librdkafka warns of (an offset reset
/// is a warning) and every seek (validating its position after a leader change, librdkafka
/// moves it without a warning when the new leader's log ends before it).
pub struct ConsumerEvents {
    pub(crate) rebalances: AtomicU64,
    pub(crate) process: Value,
    pub(crate) log: ClientLog,
}

impl ConsumerEvents {
    pub(crate) fn new(process: Value, log: &ClientLog) -> ConsumerEvents {
        ConsumerEvents {
            rebalances: AtomicU64::new(0),
            process,
            log: log.clone(),
        }
    }
}

impl ClientContext for ConsumerEvents {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        if (level as i32) <= RDKafkaLogLevel::Warning as i32 || log_message.starts_with("Seek ") {
            self.log
                .note(&self.process, &format!("{level:?} {fac} {log_message}"));
        }
    }
}

impl ConsumerContext for ConsumerEvents {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.rebalances.fetch_add(1, Ordering::Relaxed);
        // Which partitions, so that a member's re-read or skip can be traced to one.
        let partitions = |list: &TopicPartitionList| -> Vec<i32> {
            list.elements().iter().map(|e| e.partition()).collect()
        };
        let what = match rebalance {
            Rebalance::Assign(list) => format!("rebalance: assigned {:?}", partitions(list)),
            Rebalance::Revoke(list) => format!("rebalance: revoked {:?}", partitions(list)),
            Rebalance::Error(e) => format!("rebalance: error {e}"),
        };
        self.log.note(&self.process, &what);
    }
}

pub(crate) type Reader = BaseConsumer<ConsumerEvents>;

/// What every consumer shares: manual commits, no end-of-partition events, and topic debug
/// logging, from which [`ConsumerEvents`] keeps the seeks.
fn consumer_config(bootstrap: &str, group: &str) -> ClientConfig {
    let mut config = client_config(bootstrap);
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("debug", "topic")
        .set_log_level(RDKafkaLogLevel::Debug);
    config
}

/// A consumer assigned to every key from the start, for `process`.
pub(crate) fn consumer(
    bootstrap: &str,
    keys: i32,
    process: Value,
    history: &Recorder,
) -> anyhow::Result<Reader> {
    let consumer: Reader = consumer_config(bootstrap, "jepsen")
        .create_with_context(ConsumerEvents::new(process, &history.clients))?;
    let mut assignment = TopicPartitionList::new();
    for key in 0..keys {
        assignment.add_partition_offset(TOPIC, key, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    Ok(consumer)
}

/// A member of the consumer group `jepsen-subscribe`, reading from the committed offsets
/// (from the start when there are none) of whatever the group assigns it.
pub(crate) fn subscriber(
    bootstrap: &str,
    process: Value,
    history: &Recorder,
) -> anyhow::Result<Reader> {
    let consumer: Reader = consumer_config(bootstrap, "jepsen-subscribe")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
        .create_with_context(ConsumerEvents::new(process, &history.clients))?;
    consumer.subscribe(&[TOPIC])?;
    Ok(consumer)
}

/// Leaves the group and lets go of a member without closing it: librdkafka can block for
/// ever closing a member while a rebalance is under way (librdkafka issue 4884), which
/// hung a run. The member's threads end with the process.
pub(crate) fn abandon(member: Reader) {
    member.unsubscribe();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && member.assignment().is_ok_and(|a| a.count() > 0) {
        let _ = member.poll(Duration::from_millis(100));
    }
    std::mem::forget(member);
}

/// The node index leading partition `key`, as the cluster reports it.
pub(crate) fn leader_of(client: &BaseConsumer, key: i32) -> Option<usize> {
    let (leader, _) = replicas_of(client, key)?;
    usize::try_from(leader).ok()?.checked_sub(1)
}

/// The leader and the replicas of partition `key`, from fresh metadata.
pub(crate) fn replicas_of(client: &BaseConsumer, key: i32) -> Option<(i32, Vec<i32>)> {
    let metadata = client
        .fetch_metadata(Some(TOPIC), Duration::from_secs(5))
        .ok()?;
    let partition = metadata
        .topics()
        .first()?
        .partitions()
        .iter()
        .find(|p| p.id() == key)?;
    Some((partition.leader(), partition.replicas().to_vec()))
}

/// Retries `attempt` until it succeeds or `limit` has passed (then its last error).
pub(crate) fn retry<T>(
    limit: Duration,
    mut attempt: impl FnMut() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + limit;
    loop {
        match attempt() {
            Ok(answer) => return Ok(answer),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}
