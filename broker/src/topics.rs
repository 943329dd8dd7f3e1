//! Topic names and topic-level configuration, validated as Kafka validates them.

use std::collections::BTreeMap;

use strand_raft::{PartitionInfo, TopicInfo, CONTROLLER_GROUP};

use crate::config::Config;
use crate::Broker;

/// Kafka's internal topic of committed offsets. Strand keeps the offsets in its controller
/// group, not as records, but describes this topic as Kafka does, because clients and tools
/// look for it (regex consumers skip it as internal, `kafka-topics --list` shows it). Its
/// name is reserved.
pub const CONSUMER_OFFSETS: &str = "__consumer_offsets";

/// `__consumer_offsets`' id: Kafka draws one per cluster; any fixed id no topic has will do.
const CONSUMER_OFFSETS_ID: u128 = 0x5f5f_636f_6e73_756d_6572_5f6f_6666_7365;

/// `__consumer_offsets` as Metadata, DescribeTopicPartitions and DescribeConfigs describe
/// it: one partition, the controller group, led by the group coordinator and replicated on
/// the controller's voters. Only for describing: Produce and Fetch do not serve it
/// (OffsetCommit and OffsetFetch do), so it must never be routed to.
pub fn consumer_offsets(broker: &Broker) -> TopicInfo {
    let voters = broker.node.controller().replica.voters();
    TopicInfo {
        name: CONSUMER_OFFSETS.to_string(),
        id: CONSUMER_OFFSETS_ID.to_be_bytes(),
        partitions: vec![PartitionInfo {
            group: CONTROLLER_GROUP,
            replicas: voters.clone(),
            initial: voters,
        }],
        configs: BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]),
    }
}

/// Why a topic name is not legal.
pub fn name_problem(name: &str) -> Option<&'static str> {
    if name == CONSUMER_OFFSETS {
        return Some("__consumer_offsets is Kafka's internal topic of committed offsets");
    }
    if name.is_empty() {
        return Some("topic name is empty");
    }
    if name == "." || name == ".." {
        return Some("topic name cannot be \".\" or \"..\"");
    }
    if name.len() > 249 {
        return Some("topic name is longer than 249 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Some("topic names may contain only ASCII letters, digits, '.', '_' and '-'");
    }
    None
}

/// Topic configs Kafka defines. Strand stores all of them and reports them back; the ones
/// it acts on are read through [`TopicSettings`].
const KNOWN_CONFIGS: &[&str] = &[
    "cleanup.policy",
    "compression.type",
    "delete.retention.ms",
    "file.delete.delay.ms",
    "flush.messages",
    "flush.ms",
    "follower.replication.throttled.replicas",
    "index.interval.bytes",
    "leader.replication.throttled.replicas",
    "local.retention.bytes",
    "local.retention.ms",
    "max.compaction.lag.ms",
    "max.message.bytes",
    "message.downconversion.enable",
    "message.format.version",
    "message.timestamp.after.max.ms",
    "message.timestamp.before.max.ms",
    "message.timestamp.difference.max.ms",
    "message.timestamp.type",
    "min.cleanable.dirty.ratio",
    "min.compaction.lag.ms",
    "min.insync.replicas",
    "preallocate",
    "remote.storage.enable",
    "retention.bytes",
    "retention.ms",
    "segment.bytes",
    "segment.index.bytes",
    "segment.jitter.ms",
    "segment.ms",
    "unclean.leader.election.enable",
];

/// Checks a topic config entry; the error says what is wrong.
pub fn config_problem(key: &str, value: &str) -> Option<String> {
    if !KNOWN_CONFIGS.contains(&key) {
        return Some(format!("unknown topic config '{key}'"));
    }
    let integer = |min: i64| match value.parse::<i64>() {
        Ok(v) if v >= min => None,
        _ => Some(format!(
            "{key} must be an integer of at least {min}, not '{value}'"
        )),
    };
    let boolean = || match value {
        "true" | "false" => None,
        _ => Some(format!("{key} must be true or false, not '{value}'")),
    };
    match key {
        "max.message.bytes"
        | "segment.jitter.ms"
        | "index.interval.bytes"
        | "flush.ms"
        | "delete.retention.ms"
        | "min.compaction.lag.ms"
        | "file.delete.delay.ms"
        | "message.timestamp.before.max.ms"
        | "message.timestamp.after.max.ms"
        | "message.timestamp.difference.max.ms" => integer(0),
        "segment.ms" | "flush.messages" | "max.compaction.lag.ms" | "min.insync.replicas" => {
            integer(1)
        }
        "segment.index.bytes" => integer(4),
        // The smallest record there is (Kafka's minimum for segment.bytes).
        "segment.bytes" => integer(14),
        "retention.ms" | "retention.bytes" => integer(-1),
        "local.retention.ms" | "local.retention.bytes" => integer(-2),
        "preallocate"
        | "unclean.leader.election.enable"
        | "message.downconversion.enable"
        | "remote.storage.enable" => boolean(),
        "min.cleanable.dirty.ratio" => match value.parse::<f64>() {
            Ok(v) if (0.0..=1.0).contains(&v) => None,
            _ => Some(format!(
                "min.cleanable.dirty.ratio must be a number from 0 to 1, not '{value}'"
            )),
        },
        "compression.type" => match value {
            "producer" | "uncompressed" | "gzip" | "snappy" | "lz4" | "zstd" => None,
            _ => Some(format!(
                "compression.type must be producer, uncompressed, gzip, snappy, lz4 or zstd, \
                 not '{value}'"
            )),
        },
        "message.timestamp.type" => match value {
            "CreateTime" => None,
            "LogAppendTime" => Some(
                "message.timestamp.type=LogAppendTime is not supported yet; use CreateTime"
                    .to_string(),
            ),
            _ => Some(format!(
                "message.timestamp.type must be CreateTime or LogAppendTime, not '{value}'"
            )),
        },
        "cleanup.policy" => {
            let policies: Vec<&str> = value.split(',').map(str::trim).collect();
            if policies.iter().all(|p| matches!(*p, "delete" | "compact")) {
                None
            } else {
                Some(format!(
                    "cleanup.policy must be delete, compact or compact,delete, not '{value}'"
                ))
            }
        }
        _ => None,
    }
}

/// Kafka's defaults for the topic configs of log compaction (its log.cleaner.* broker
/// settings), which Strand has no node-wide settings for.
pub mod cleaner_defaults {
    pub const DELETE_RETENTION_MS: i64 = 86_400_000;
    pub const MIN_CLEANABLE_DIRTY_RATIO: f64 = 0.5;
    pub const MIN_COMPACTION_LAG_MS: i64 = 0;
    pub const MAX_COMPACTION_LAG_MS: i64 = i64::MAX;
}

/// The topic settings the broker enforces, resolved against the broker's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TopicSettings {
    pub max_message_bytes: i32,
    /// -1: keep records forever.
    pub retention_ms: i64,
    /// -1: no size limit.
    pub retention_bytes: i64,
    /// cleanup.policy includes delete: retention applies.
    pub delete: bool,
    /// cleanup.policy includes compact: the log cleaner keeps each key's last record.
    pub compact: bool,
    pub delete_retention_ms: i64,
    pub min_cleanable_dirty_ratio: f64,
    pub min_compaction_lag_ms: i64,
    pub max_compaction_lag_ms: i64,
    pub timestamp_before_max_ms: i64,
    pub timestamp_after_max_ms: i64,
}

impl TopicSettings {
    pub fn resolve(configs: &BTreeMap<String, String>, broker: &Config) -> Self {
        fn get<T: std::str::FromStr>(configs: &BTreeMap<String, String>, key: &str) -> Option<T> {
            configs.get(key).and_then(|v| v.parse().ok())
        }
        let policy = configs
            .get("cleanup.policy")
            .map_or("delete", String::as_str);
        let has = |p: &str| policy.split(',').any(|x| x.trim() == p);
        TopicSettings {
            max_message_bytes: get(configs, "max.message.bytes")
                .unwrap_or(broker.max_message_bytes),
            retention_ms: get(configs, "retention.ms").unwrap_or(broker.log_retention_ms),
            retention_bytes: get(configs, "retention.bytes").unwrap_or(broker.log_retention_bytes),
            delete: has("delete"),
            compact: has("compact"),
            delete_retention_ms: get(configs, "delete.retention.ms")
                .unwrap_or(cleaner_defaults::DELETE_RETENTION_MS),
            min_cleanable_dirty_ratio: get(configs, "min.cleanable.dirty.ratio")
                .unwrap_or(cleaner_defaults::MIN_CLEANABLE_DIRTY_RATIO),
            min_compaction_lag_ms: get(configs, "min.compaction.lag.ms")
                .unwrap_or(cleaner_defaults::MIN_COMPACTION_LAG_MS),
            max_compaction_lag_ms: get(configs, "max.compaction.lag.ms")
                .unwrap_or(cleaner_defaults::MAX_COMPACTION_LAG_MS),
            timestamp_before_max_ms: get(configs, "message.timestamp.before.max.ms")
                .unwrap_or(broker.log_message_timestamp_before_max_ms),
            timestamp_after_max_ms: get(configs, "message.timestamp.after.max.ms")
                .unwrap_or(broker.log_message_timestamp_after_max_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_kafka_rules() {
        assert_eq!(name_problem("orders.v1_EU-west"), None);
        assert!(name_problem("").is_some());
        assert!(name_problem("..").is_some());
        assert!(name_problem("has space").is_some());
        assert!(name_problem("slash/y").is_some());
        assert!(name_problem(&"x".repeat(250)).is_some());
        assert_eq!(name_problem(&"x".repeat(249)), None);
    }

    #[test]
    fn configs_are_checked_and_resolved() {
        assert_eq!(config_problem("retention.ms", "-1"), None);
        assert!(config_problem("retention.ms", "soon").is_some());
        assert!(config_problem("no.such.config", "1").is_some());
        for (key, bad) in [
            ("retention.bytes", "-2"),
            ("segment.bytes", "10"),
            ("segment.ms", "0"),
            ("delete.retention.ms", "-1"),
            ("min.cleanable.dirty.ratio", "1.5"),
            ("min.insync.replicas", "0"),
            ("compression.type", "brotli"),
            ("preallocate", "yes"),
            ("cleanup.policy", "foo"),
            ("cleanup.policy", "compact,foo"),
            ("cleanup.policy", ""),
        ] {
            assert!(config_problem(key, bad).is_some(), "{key}={bad} accepted");
        }
        for (key, good) in [
            ("segment.bytes", "1048576"),
            ("min.cleanable.dirty.ratio", "0.5"),
            ("compression.type", "zstd"),
            ("local.retention.ms", "-2"),
            ("preallocate", "false"),
            ("cleanup.policy", "compact"),
            ("cleanup.policy", "compact,delete"),
            ("cleanup.policy", "delete, compact"),
        ] {
            assert_eq!(config_problem(key, good), None, "{key}={good} refused");
        }
        let mut broker = Config::resolve(crate::config::Settings::default()).unwrap();
        broker.max_message_bytes = 100;
        broker.log_retention_bytes = 7;
        let mut configs = BTreeMap::new();
        let defaults = TopicSettings::resolve(&configs, &broker);
        assert_eq!(
            (
                defaults.max_message_bytes,
                defaults.retention_ms,
                defaults.retention_bytes
            ),
            (100, crate::config::defaults::LOG_RETENTION_MS, 7)
        );
        configs.insert("max.message.bytes".into(), "5000".into());
        configs.insert("retention.ms".into(), "-1".into());
        configs.insert("retention.bytes".into(), "4096".into());
        let set = TopicSettings::resolve(&configs, &broker);
        assert_eq!(
            (set.max_message_bytes, set.retention_ms, set.retention_bytes),
            (5000, -1, 4096)
        );
        assert_eq!((set.delete, set.compact), (true, false));
        configs.insert("cleanup.policy".into(), "compact".into());
        configs.insert("min.cleanable.dirty.ratio".into(), "0.01".into());
        let set = TopicSettings::resolve(&configs, &broker);
        assert_eq!((set.delete, set.compact), (false, true));
        assert_eq!(set.min_cleanable_dirty_ratio, 0.01);
        assert_eq!(
            set.delete_retention_ms,
            cleaner_defaults::DELETE_RETENTION_MS
        );
        configs.insert("cleanup.policy".into(), "compact,delete".into());
        let set = TopicSettings::resolve(&configs, &broker);
        assert_eq!((set.delete, set.compact), (true, true));
    }
}
