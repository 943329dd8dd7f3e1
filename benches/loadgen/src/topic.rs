//! Topic creation through the admin API, then a wait until every partition has a leader,
//! so the timed part of a run never includes the cluster settling a new topic.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::executor::block_on;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

/// How long to wait, once every partition has a leader, for every replica to be in sync.
/// A new follower may lag for a while; past this the run goes ahead, with a warning.
const IN_SYNC_GRACE: Duration = Duration::from_secs(60);

/// Creates `topic` unless it exists, waits until all `partitions` have leaders and all
/// their replicas in sync (a cluster still creating 3,000 replicas would otherwise be
/// measured), and returns how long that took. An existing topic with another partition
/// count or other configs is used as it is (with a warning for the count), since a
/// benchmark may point at data written earlier.
pub fn ensure(
    config: &ClientConfig,
    topic: &str,
    partitions: i32,
    replication_factor: i32,
    configs: &[(String, String)],
    timeout: Duration,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let admin: AdminClient<DefaultClientContext> =
        config.create().context("creating the admin client")?;
    let options = AdminOptions::new()
        .operation_timeout(Some(timeout))
        .request_timeout(Some(timeout));
    let new_topic = configs.iter().fold(
        NewTopic::new(
            topic,
            partitions,
            TopicReplication::Fixed(replication_factor),
        ),
        |new_topic, (key, value)| new_topic.set(key, value),
    );
    let results = block_on(admin.create_topics([&new_topic], &options))
        .with_context(|| format!("CreateTopics for {topic}"))?;
    for result in results {
        match result {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => bail!("creating topic {name} failed: {code}"),
        }
    }
    let deadline = started + timeout;
    let mut led_at = None;
    loop {
        let state = partition_state(&admin, topic);
        let now = Instant::now();
        match state {
            Ok(Partitions { count, in_sync }) if count >= partitions as usize => {
                if count > partitions as usize {
                    eprintln!("loadgen: topic {topic} already has {count} partitions; using them");
                }
                if in_sync {
                    break;
                }
                if now >= *led_at.get_or_insert(now + IN_SYNC_GRACE) {
                    eprintln!(
                        "loadgen: topic {topic}: some replicas still out of sync after {IN_SYNC_GRACE:?}; going ahead"
                    );
                    break;
                }
            }
            _ if now >= deadline => bail!(
                "topic {topic}: not every partition had a leader after {timeout:?} ({state:?})"
            ),
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(started.elapsed().as_secs_f64())
}

#[derive(Debug)]
struct Partitions {
    count: usize,
    /// Every partition's in-sync replicas are all its replicas.
    in_sync: bool,
}

/// The partitions of `topic`, once every one of them has a leader.
fn partition_state(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
) -> anyhow::Result<Partitions> {
    let metadata = admin
        .inner()
        .fetch_metadata(Some(topic), Duration::from_secs(5))?;
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
        bail!("topic not in metadata yet");
    };
    if let Some(error) = found.error() {
        bail!("metadata error {error:?}");
    }
    if found.partitions().iter().any(|p| p.leader() < 0) {
        bail!("some partitions have no leader yet");
    }
    Ok(Partitions {
        count: found.partitions().len(),
        in_sync: found
            .partitions()
            .iter()
            .all(|p| p.isr().len() >= p.replicas().len()),
    })
}

/// The partition ids of `topic`, for consumers that assign every partition.
pub fn partitions(config: &ClientConfig, topic: &str) -> anyhow::Result<Vec<i32>> {
    let admin: AdminClient<DefaultClientContext> = config.create()?;
    let metadata = admin
        .inner()
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .with_context(|| format!("metadata for {topic}"))?;
    let found = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .with_context(|| format!("topic {topic} not found"))?;
    let ids: Vec<i32> = found.partitions().iter().map(|p| p.id()).collect();
    if ids.is_empty() {
        bail!("topic {topic} has no partitions (does it exist?)");
    }
    Ok(ids)
}
