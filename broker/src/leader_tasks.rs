//! Work a partition's leader does on a timer and hands to its Raft group: retention
//! ([`crate::retention`]) and the log cleaner ([`crate::cleaner`]). Every replica then
//! applies the proposed command at the same point of its log.

use std::sync::Arc;
use std::time::Duration;

use strand_raft::{Command, PartitionReplica};
use strand_storage::StorageError;

use crate::groups::now_ms;
use crate::topics::TopicSettings;
use crate::Broker;

/// One periodic task of partition leaders.
pub struct LeaderTask {
    /// For the logs.
    pub name: &'static str,
    pub interval: Duration,
    /// Longest one partition's proposal may hold up the others.
    pub propose_timeout: Duration,
    /// Whether a topic's settings call for the task at all.
    pub applies: fn(&TopicSettings) -> bool,
    /// What a partition needs at time `now`, if anything.
    pub decide:
        fn(&PartitionReplica, &TopicSettings, i64) -> Result<Option<Decision>, StorageError>,
}

/// A command for a partition's Raft group.
pub struct Decision {
    pub command: Command,
    /// The command does part of the work (a cleaning pass capped in bytes): once it has
    /// applied, the task decides again for the partition.
    pub partial: bool,
}

impl Decision {
    pub fn whole(command: Command) -> Decision {
        Decision {
            command,
            partial: false,
        }
    }
}

/// The most commands in a row for one partition in a round, when each does part of the work.
const COMMANDS_IN_A_ROW: usize = 16;

/// Every `task.interval`, for each partition this node leads and serves, proposes what
/// `task.decide` asks for, one partition after the other. Topic configs are read afresh
/// each time, so a change made with kafka-configs takes effect at the next round.
pub async fn run(broker: Arc<Broker>, task: LeaderTask) {
    let interval = task.interval;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let metadata = broker.node.controller().metadata();
        for topic in metadata.topics.values() {
            let settings = TopicSettings::resolve(&topic.configs, &broker.config);
            if !(task.applies)(&settings) {
                continue;
            }
            for info in &topic.partitions {
                let Some(partition) = broker.node.partition(info.group) else {
                    continue;
                };
                if !partition.replica.leadership().serving {
                    continue;
                }
                for _ in 0..COMMANDS_IN_A_ROW {
                    match (task.decide)(&partition, &settings, now_ms()) {
                        Ok(Some(Decision { command, partial })) => {
                            let proposed = partition.replica.propose(command);
                            let outcome =
                                tokio::time::timeout(task.propose_timeout, proposed).await;
                            tracing::debug!(task = task.name, topic = %topic.name, group = info.group, ?outcome, "proposed");
                            if !partial || !matches!(outcome, Ok(Ok(_))) {
                                break;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            tracing::warn!(task = task.name, topic = %topic.name, group = info.group, error = %e, "cannot decide");
                            break;
                        }
                    }
                }
            }
        }
    }
}
