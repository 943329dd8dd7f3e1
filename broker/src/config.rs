//! Broker configuration: defaults, overridden by a TOML file (`--config`), overridden by
//! `STRAND_*` environment variables, overridden by command-line flags.
//!
//! Every setting is one field of [`Settings`], which is both the clap definition (flag and
//! environment variable) and the serde definition (file key). Its default is a constant in
//! [`defaults`], which both `--help` ([`command`]) and [`Config::resolve`] read. A new
//! setting is a field, a constant with its line in [`documented_defaults`], its checks in
//! `resolve`, and a row in `docs/configuration.md` (a test compares that table with
//! `--help`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser};
use serde::{Deserialize, Serialize};

use crate::unsafe_modes::UnsafeMode;

/// Strand: a Kafka-compatible distributed log. Every Kafka client works against it.
///
/// Each setting can also be given as an environment variable (shown below) or as a key in
/// the --config file (the flag name without dashes' prefix, e.g. `node-id = 1`). Flags
/// override environment variables, which override the file, which overrides defaults.
#[derive(Debug, Default, Clone, Parser, Serialize, Deserialize)]
#[command(name = "strand", version, about, long_about = None)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Settings {
    /// TOML file with settings (keys are the flag names, e.g. `listen = "0.0.0.0:9092"`).
    #[arg(long, env = "STRAND_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Print the Kafka APIs and versions this build implements, as a Markdown table, and
    /// exit.
    #[arg(long)]
    #[serde(skip)]
    pub supported_apis: bool,

    /// This node's id: its Kafka broker id and Raft node id
    #[arg(long, env = "STRAND_NODE_ID")]
    pub node_id: Option<u64>,

    /// Directory for all data (created if missing)
    #[arg(long, env = "STRAND_DATA_DIR")]
    #[serde(skip_serializing)]
    pub data_dir: Option<PathBuf>,

    /// Address the Kafka listener binds
    #[arg(long, env = "STRAND_LISTEN")]
    pub listen: Option<SocketAddr>,

    /// host:port clients are told to connect to [default: the listen address].
    #[arg(long, env = "STRAND_ADVERTISED_ADDR")]
    pub advertised_addr: Option<String>,

    /// Address the node-to-node Raft listener binds [default: Kafka port + 10000 on the
    /// listen host].
    #[arg(long, env = "STRAND_RAFT_LISTEN")]
    pub raft_listen: Option<SocketAddr>,

    /// The nodes that form the cluster the first time it starts, as `id@raft-host:port`
    /// separated by commas (e.g. `1@10.0.0.1:19092,2@10.0.0.2:19092,3@10.0.0.3:19092`).
    /// Every node of a new cluster gets the same list; it must include this node. Ignored
    /// once the node has data [default: this node alone].
    #[arg(long, env = "STRAND_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,

    /// Join a running cluster instead of forming one: the Raft addresses (`host:port`,
    /// comma-separated) of one or more of its nodes. Peers reach this node at its
    /// --raft-listen address. Harmless once the node has joined.
    #[arg(long, env = "STRAND_JOIN")]
    pub join: Option<String>,

    /// Address the Prometheus metrics endpoint binds; "off" disables it
    /// [default: Kafka port + 1000 on the listen host, e.g. 127.0.0.1:10092].
    #[arg(long, env = "STRAND_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,

    /// Create a topic when a client asks for one that does not exist (Metadata, Produce)
    /// (Kafka: auto.create.topics.enable)
    #[arg(long, env = "STRAND_AUTO_CREATE_TOPICS")]
    pub auto_create_topics: Option<bool>,

    /// Partitions of a topic created without a count (Kafka: num.partitions)
    #[arg(long, env = "STRAND_DEFAULT_PARTITIONS")]
    pub default_partitions: Option<i32>,

    /// Replicas of a topic created without a replication factor
    /// (Kafka: default.replication.factor) [default: 3 if the initial cluster has three or
    /// more nodes, else 1].
    #[arg(long, env = "STRAND_DEFAULT_REPLICATION_FACTOR")]
    pub default_replication_factor: Option<i16>,

    /// Largest record batch a topic accepts unless its max.message.bytes says otherwise
    /// (Kafka: message.max.bytes)
    #[arg(long, env = "STRAND_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<i32>,

    /// Largest request frame accepted; larger ones close the connection
    /// (Kafka: socket.request.max.bytes)
    #[arg(long, env = "STRAND_MAX_REQUEST_BYTES")]
    pub max_request_bytes: Option<usize>,

    /// Most bytes a compressed record batch may inflate to when Produce reads its records,
    /// at most 64 MiB; a batch inflating to more is refused with MESSAGE_TOO_LARGE (Kafka
    /// has no such bound)
    #[arg(long, env = "STRAND_MAX_INFLATED_BATCH_BYTES")]
    pub max_inflated_batch_bytes: Option<usize>,

    /// Bytes of request frames being read, over all connections; a connection whose frame
    /// does not fit waits until others are read (Kafka: queued.max.request.bytes)
    #[arg(long, env = "STRAND_QUEUED_MAX_REQUEST_BYTES")]
    pub queued_max_request_bytes: Option<usize>,

    /// Client connections the node keeps open; at the limit it accepts no more until one
    /// closes (Kafka: max.connections)
    #[arg(long, env = "STRAND_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Client connections from one IP address; more are closed at once
    /// (Kafka: max.connections.per.ip)
    #[arg(long, env = "STRAND_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<usize>,

    /// How long a client connection may stay idle, with nothing to read and nothing being
    /// answered, before the node closes it (Kafka: connections.max.idle.ms)
    #[arg(long, env = "STRAND_CONNECTIONS_MAX_IDLE_MS")]
    pub connections_max_idle_ms: Option<u64>,

    /// How long the rest of a request may take to arrive once its first bytes have; a
    /// slower one closes its connection (Kafka has no such bound)
    #[arg(long, env = "STRAND_FRAME_READ_TIMEOUT_MS")]
    pub frame_read_timeout_ms: Option<u64>,

    /// Most record bytes in one fetch response, whatever the consumer's fetch.max.bytes
    /// (Kafka: the broker's fetch.max.bytes, 55 MiB there); a first batch larger than this
    /// still goes out whole. Above 32 MiB, glibc gives a librdkafka consumer's receive
    /// buffer fresh pages for every response, which costs it far more than the extra round
    /// trips of smaller responses
    #[arg(long, env = "STRAND_FETCH_MAX_BYTES")]
    pub fetch_max_bytes: Option<usize>,

    /// Memory the node may hold, across its connections, for fetch read-ahead: the next
    /// response of a consumer catching up, read from disk while it parses the last one; 0
    /// turns it off
    #[arg(long, env = "STRAND_FETCH_READ_AHEAD_BYTES")]
    pub fetch_read_ahead_bytes: Option<usize>,

    /// Direct I/O for the database's flushes, compactions and reads: true or false
    /// [default: used where the data directory's file system takes it].
    #[arg(long, env = "STRAND_DIRECT_IO")]
    pub direct_io: Option<bool>,

    /// Cluster id reported to clients
    #[arg(long, env = "STRAND_CLUSTER_ID")]
    pub cluster_id: Option<String>,

    /// How long a partition remembers an idempotent producer after its last batch, one
    /// day by default (Kafka: producer.id.expiration.ms)
    #[arg(long, env = "STRAND_PRODUCER_ID_EXPIRATION_MS")]
    pub producer_id_expiration_ms: Option<u64>,

    /// Raft leader heartbeat period in milliseconds; all groups' heartbeats leave together
    #[arg(long, env = "STRAND_RAFT_HEARTBEAT_MS")]
    pub raft_heartbeat_ms: Option<u64>,

    /// Minimum Raft election timeout in milliseconds; the maximum is twice this. A follower
    /// of a live leader waits the maximum (openraft's leader lease) plus a random timeout
    /// before it stands, so failover takes about three times this
    #[arg(long, env = "STRAND_RAFT_ELECTION_TIMEOUT_MS")]
    pub raft_election_timeout_ms: Option<u64>,

    /// How often each node hands the partitions it leads back to their preferred replica
    /// (the first listed), when that replica is alive and caught up; 0 turns it off
    /// (Kafka: auto.leader.rebalance.enable, leader.imbalance.check.interval.seconds)
    #[arg(long, env = "STRAND_LEADER_BALANCE_INTERVAL_MS")]
    pub leader_balance_interval_ms: Option<u64>,

    /// Shortest session timeout a consumer group member may ask for
    /// (Kafka: group.min.session.timeout.ms)
    #[arg(long, env = "STRAND_GROUP_MIN_SESSION_TIMEOUT_MS")]
    pub group_min_session_timeout_ms: Option<u64>,

    /// Longest session timeout a consumer group member may ask for
    /// (Kafka: group.max.session.timeout.ms)
    #[arg(long, env = "STRAND_GROUP_MAX_SESSION_TIMEOUT_MS")]
    pub group_max_session_timeout_ms: Option<u64>,

    /// How long the first rebalance of an empty group waits for more members to join
    /// (Kafka: group.initial.rebalance.delay.ms)
    #[arg(long, env = "STRAND_GROUP_INITIAL_REBALANCE_DELAY_MS")]
    pub group_initial_rebalance_delay_ms: Option<u64>,

    /// Members a consumer group may have; more get GROUP_MAX_SIZE_REACHED
    /// (Kafka: group.max.size)
    #[arg(long, env = "STRAND_GROUP_MAX_SIZE")]
    pub group_max_size: Option<usize>,

    /// Consumer groups, with members or committed offsets, the cluster keeps; a new one
    /// beyond it gets POLICY_VIOLATION (Kafka has no such bound)
    #[arg(long, env = "STRAND_MAX_GROUPS")]
    pub max_groups: Option<usize>,

    /// Partition replicas a node may hold; creating topics or partitions that would put
    /// more on any node gets POLICY_VIOLATION (KIP-578's max.broker.partitions)
    #[arg(long, env = "STRAND_MAX_BROKER_PARTITIONS")]
    pub max_broker_partitions: Option<usize>,

    /// How long a group without members keeps its committed offsets after the last commit,
    /// seven days by default (Kafka: offsets.retention.minutes)
    #[arg(long, env = "STRAND_OFFSETS_RETENTION_MINUTES")]
    pub offsets_retention_minutes: Option<u64>,

    /// How long a partition keeps records before deleting them, for topics that do not set
    /// retention.ms; -1 keeps them forever (Kafka: log.retention.ms, log.retention.hours=168)
    #[arg(long, env = "STRAND_LOG_RETENTION_MS", allow_negative_numbers = true)]
    pub log_retention_ms: Option<i64>,

    /// Bytes of record batches a partition keeps before deleting its oldest, for topics
    /// that do not set retention.bytes; -1 sets no limit (Kafka: log.retention.bytes)
    #[arg(
        long,
        env = "STRAND_LOG_RETENTION_BYTES",
        allow_negative_numbers = true
    )]
    pub log_retention_bytes: Option<i64>,

    /// How often leaders look for records past their topic's retention
    /// (Kafka: log.retention.check.interval.ms)
    #[arg(long, env = "STRAND_LOG_RETENTION_CHECK_INTERVAL_MS")]
    pub log_retention_check_interval_ms: Option<u64>,

    /// How often leaders of compacted topics look for partitions to clean
    /// (Kafka: log.cleaner.backoff.ms)
    #[arg(long, env = "STRAND_LOG_CLEANER_BACKOFF_MS")]
    pub log_cleaner_backoff_ms: Option<u64>,

    /// How far behind the node's clock a record's create time may be, for topics that do
    /// not set message.timestamp.before.max.ms (Kafka: log.message.timestamp.before.max.ms)
    #[arg(long, env = "STRAND_LOG_MESSAGE_TIMESTAMP_BEFORE_MAX_MS")]
    pub log_message_timestamp_before_max_ms: Option<i64>,

    /// How far ahead of the node's clock a record's create time may be, for topics that do
    /// not set message.timestamp.after.max.ms (Kafka: log.message.timestamp.after.max.ms)
    #[arg(long, env = "STRAND_LOG_MESSAGE_TIMESTAMP_AFTER_MAX_MS")]
    pub log_message_timestamp_after_max_ms: Option<i64>,

    /// Log filter, in tracing's EnvFilter syntax (RUST_LOG also works)
    #[arg(long, env = "STRAND_LOG")]
    pub log: Option<String>,

    /// Deliberately break a guarantee, so the Jepsen self-check can show it notices. Only
    /// in builds with the `unsafe-modes` feature; never in production.
    #[cfg(feature = "unsafe-modes")]
    #[arg(long, env = "STRAND_UNSAFE_MODE", value_enum)]
    #[serde(skip)]
    pub unsafe_mode: Option<UnsafeMode>,
}

impl Settings {
    /// Parses the command line and environment, with `--help` showing each default.
    pub fn from_args() -> Settings {
        let matches = command().get_matches();
        Settings::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }

    /// Fills every unset field of `self` from `lower`. The settings merge through their
    /// serde form (nulls are unset), so a new setting needs no line here; the fields serde
    /// does not write (`config`, `supported_apis`, `data_dir`, which need not be UTF-8, and
    /// `unsafe_mode`) are merged by hand.
    fn or(self, lower: Settings) -> Settings {
        let upper = serde_json::to_value(&self).expect("settings serialize");
        let mut merged = serde_json::to_value(&lower).expect("settings serialize");
        if let (Some(merged), Some(upper)) = (merged.as_object_mut(), upper.as_object()) {
            for (key, value) in upper.iter().filter(|(_, v)| !v.is_null()) {
                merged.insert(key.clone(), value.clone());
            }
        }
        Settings {
            config: self.config.or(lower.config),
            supported_apis: self.supported_apis,
            data_dir: self.data_dir.or(lower.data_dir),
            #[cfg(feature = "unsafe-modes")]
            unsafe_mode: self.unsafe_mode.or(lower.unsafe_mode),
            ..serde_json::from_value(merged).expect("merged settings deserialize")
        }
    }
}

/// The value of every setting that is not given, named after the setting.
pub mod defaults {
    pub const NODE_ID: u64 = 1;
    pub const DATA_DIR: &str = "data";
    pub const LISTEN: &str = "127.0.0.1:9092";
    /// The Raft listener's port, above the Kafka port, when not given.
    pub const RAFT_PORT_OFFSET: u16 = 10_000;
    /// The metrics endpoint's port, above the Kafka port, when not given.
    pub const METRICS_PORT_OFFSET: u16 = 1_000;
    pub const AUTO_CREATE_TOPICS: bool = true;
    pub const DEFAULT_PARTITIONS: i32 = 1;
    /// Kafka's message.max.bytes.
    pub const MAX_MESSAGE_BYTES: i32 = 1_048_588;
    /// Kafka's socket.request.max.bytes.
    pub const MAX_REQUEST_BYTES: usize = 104_857_600;
    /// Also the most: the log cleaner reads batches up to it on every replica.
    pub const MAX_INFLATED_BATCH_BYTES: usize = strand_protocol::records::MAX_INFLATED_BATCH_BYTES;
    pub const QUEUED_MAX_REQUEST_BYTES: usize = 268_435_456;
    /// No limit, as Kafka (Int.MaxValue).
    pub const MAX_CONNECTIONS: usize = 2_147_483_647;
    pub const MAX_CONNECTIONS_PER_IP: usize = 2_147_483_647;
    /// Ten minutes, as Kafka.
    pub const CONNECTIONS_MAX_IDLE_MS: u64 = 600_000;
    pub const FRAME_READ_TIMEOUT_MS: u64 = 60_000;
    pub const FETCH_MAX_BYTES: usize = 33_554_432;
    pub const FETCH_READ_AHEAD_BYTES: usize = 268_435_456;
    pub const CLUSTER_ID: &str = "strand-cluster";
    /// One day, as Kafka's producer.id.expiration.ms.
    pub const PRODUCER_ID_EXPIRATION_MS: u64 = 86_400_000;
    pub const RAFT_HEARTBEAT_MS: u64 = 400;
    pub const RAFT_ELECTION_TIMEOUT_MS: u64 = 500;
    pub const LEADER_BALANCE_INTERVAL_MS: u64 = 30_000;
    pub const GROUP_MIN_SESSION_TIMEOUT_MS: u64 = 6_000;
    pub const GROUP_MAX_SESSION_TIMEOUT_MS: u64 = 1_800_000;
    pub const GROUP_INITIAL_REBALANCE_DELAY_MS: u64 = 3_000;
    /// Kafka's is unbounded; a thousand consumers is more than any one group needs.
    pub const GROUP_MAX_SIZE: usize = 1_000;
    pub const MAX_GROUPS: usize = 100_000;
    /// Kafka's long-standing guidance for one broker.
    pub const MAX_BROKER_PARTITIONS: usize = 4_000;
    /// Seven days, as Kafka's offsets.retention.minutes.
    pub const OFFSETS_RETENTION_MINUTES: u64 = 10_080;
    /// Seven days, as Kafka's log.retention.hours=168.
    pub const LOG_RETENTION_MS: i64 = 604_800_000;
    pub const LOG_RETENTION_BYTES: i64 = -1;
    /// Five minutes, as Kafka.
    pub const LOG_RETENTION_CHECK_INTERVAL_MS: u64 = 300_000;
    pub const LOG_CLEANER_BACKOFF_MS: u64 = 15_000;
    /// No bound, as Kafka.
    pub const LOG_MESSAGE_TIMESTAMP_BEFORE_MAX_MS: i64 = i64::MAX;
    /// One hour, as Kafka 4.
    pub const LOG_MESSAGE_TIMESTAMP_AFTER_MAX_MS: i64 = 3_600_000;
    pub const LOG: &str = "info,openraft=warn";
}

/// The defaults `--help` shows, by flag; settings whose default is derived from others say
/// so in their own help.
pub fn documented_defaults() -> Vec<(&'static str, String)> {
    use defaults::*;
    vec![
        ("node-id", NODE_ID.to_string()),
        ("data-dir", format!("./{DATA_DIR}")),
        ("listen", LISTEN.to_string()),
        ("auto-create-topics", AUTO_CREATE_TOPICS.to_string()),
        ("default-partitions", DEFAULT_PARTITIONS.to_string()),
        ("max-message-bytes", MAX_MESSAGE_BYTES.to_string()),
        ("max-request-bytes", MAX_REQUEST_BYTES.to_string()),
        (
            "max-inflated-batch-bytes",
            MAX_INFLATED_BATCH_BYTES.to_string(),
        ),
        (
            "queued-max-request-bytes",
            QUEUED_MAX_REQUEST_BYTES.to_string(),
        ),
        ("max-connections", MAX_CONNECTIONS.to_string()),
        ("max-connections-per-ip", MAX_CONNECTIONS_PER_IP.to_string()),
        (
            "connections-max-idle-ms",
            CONNECTIONS_MAX_IDLE_MS.to_string(),
        ),
        ("frame-read-timeout-ms", FRAME_READ_TIMEOUT_MS.to_string()),
        ("fetch-max-bytes", FETCH_MAX_BYTES.to_string()),
        ("fetch-read-ahead-bytes", FETCH_READ_AHEAD_BYTES.to_string()),
        ("cluster-id", CLUSTER_ID.to_string()),
        (
            "producer-id-expiration-ms",
            PRODUCER_ID_EXPIRATION_MS.to_string(),
        ),
        ("raft-heartbeat-ms", RAFT_HEARTBEAT_MS.to_string()),
        (
            "raft-election-timeout-ms",
            RAFT_ELECTION_TIMEOUT_MS.to_string(),
        ),
        (
            "leader-balance-interval-ms",
            LEADER_BALANCE_INTERVAL_MS.to_string(),
        ),
        (
            "group-min-session-timeout-ms",
            GROUP_MIN_SESSION_TIMEOUT_MS.to_string(),
        ),
        (
            "group-max-session-timeout-ms",
            GROUP_MAX_SESSION_TIMEOUT_MS.to_string(),
        ),
        (
            "group-initial-rebalance-delay-ms",
            GROUP_INITIAL_REBALANCE_DELAY_MS.to_string(),
        ),
        ("group-max-size", GROUP_MAX_SIZE.to_string()),
        ("max-groups", MAX_GROUPS.to_string()),
        ("max-broker-partitions", MAX_BROKER_PARTITIONS.to_string()),
        (
            "offsets-retention-minutes",
            OFFSETS_RETENTION_MINUTES.to_string(),
        ),
        ("log-retention-ms", LOG_RETENTION_MS.to_string()),
        ("log-retention-bytes", LOG_RETENTION_BYTES.to_string()),
        (
            "log-retention-check-interval-ms",
            LOG_RETENTION_CHECK_INTERVAL_MS.to_string(),
        ),
        ("log-cleaner-backoff-ms", LOG_CLEANER_BACKOFF_MS.to_string()),
        (
            "log-message-timestamp-before-max-ms",
            LOG_MESSAGE_TIMESTAMP_BEFORE_MAX_MS.to_string(),
        ),
        (
            "log-message-timestamp-after-max-ms",
            LOG_MESSAGE_TIMESTAMP_AFTER_MAX_MS.to_string(),
        ),
        ("log", LOG.to_string()),
    ]
}

/// The clap command with each documented default appended to its setting's help.
pub fn command() -> clap::Command {
    let mut command = Settings::command();
    for (flag, default) in documented_defaults() {
        let id = flag.replace('-', "_");
        command = command.mut_arg(id, |arg| {
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            arg.help(format!("{help} [default: {default}]"))
        });
    }
    command
}

/// The resolved configuration the broker runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub node_id: u64,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub advertised_host: String,
    pub advertised_port: u16,
    pub raft_listen: SocketAddr,
    /// The address peers reach this node's Raft listener at: its own entry in the initial
    /// cluster, else the listen address.
    pub raft_advertised: String,
    /// The cluster's first members: node id and Raft address.
    pub initial_cluster: Vec<(u64, String)>,
    /// Raft addresses of running nodes to join through; empty when forming a cluster.
    pub join: Vec<String>,
    pub metrics_listen: Option<SocketAddr>,
    pub auto_create_topics: bool,
    pub default_partitions: i32,
    pub default_replication_factor: i16,
    pub max_message_bytes: i32,
    pub max_request_bytes: usize,
    pub max_inflated_batch_bytes: usize,
    pub queued_max_request_bytes: usize,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub connections_max_idle: Duration,
    pub frame_read_timeout: Duration,
    pub fetch_max_bytes: usize,
    /// 0: no fetch read-ahead.
    pub fetch_read_ahead_bytes: usize,
    /// None: probe the file system.
    pub direct_io: Option<bool>,
    pub cluster_id: String,
    pub producer_id_expiration: Duration,
    pub raft_heartbeat: Duration,
    pub raft_election_timeout: Duration,
    /// None when leader balancing is off.
    pub leader_balance_interval: Option<Duration>,
    pub group_min_session_timeout: Duration,
    pub group_max_session_timeout: Duration,
    pub group_initial_rebalance_delay: Duration,
    pub group_max_size: usize,
    pub max_groups: usize,
    pub max_broker_partitions: usize,
    pub offsets_retention: Duration,
    /// Topics' retention.ms and retention.bytes where they set none; -1 is no limit.
    pub log_retention_ms: i64,
    pub log_retention_bytes: i64,
    pub log_retention_check_interval: Duration,
    pub log_cleaner_backoff: Duration,
    /// Topics' message.timestamp.before.max.ms and after.max.ms where they set none.
    pub log_message_timestamp_before_max_ms: i64,
    pub log_message_timestamp_after_max_ms: i64,
    pub log: String,
    /// Always `Off` in a normal build.
    pub unsafe_mode: UnsafeMode,
}

/// A configuration problem, worded so the user knows what to change.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    ParseFile { path: PathBuf, message: String },
    #[error("{setting} = {value:?} is invalid: {fix}")]
    Invalid {
        setting: &'static str,
        value: String,
        fix: &'static str,
    },
}

fn invalid(setting: &'static str, value: impl ToString, fix: &'static str) -> ConfigError {
    ConfigError::Invalid {
        setting,
        value: value.to_string(),
        fix,
    }
}

impl Config {
    /// Resolves command-line/environment settings over the file they name over defaults.
    pub fn resolve(cli: Settings) -> Result<Config, ConfigError> {
        let file = match &cli.config {
            Some(path) => read_file(path)?,
            None => Settings::default(),
        };
        let s = cli.or(file);

        let listen = s
            .listen
            .unwrap_or_else(|| defaults::LISTEN.parse().expect("valid default"));
        let (advertised_host, advertised_port) = match &s.advertised_addr {
            Some(addr) => parse_host_port(addr).ok_or_else(|| {
                invalid(
                    "advertised-addr",
                    addr,
                    "give host:port, e.g. broker1.example.com:9092",
                )
            })?,
            None => (listen.ip().to_string(), listen.port()),
        };
        if advertised_host == "0.0.0.0" || advertised_host == "::" {
            return Err(invalid(
                "advertised-addr",
                format!("{advertised_host}:{advertised_port}"),
                "clients cannot connect to a wildcard address; set --advertised-addr to a \
                 host name or IP clients can reach",
            ));
        }
        let offset_port = |delta: u16| -> Result<SocketAddr, ConfigError> {
            let port = listen.port().checked_add(delta).ok_or_else(|| {
                invalid(
                    "listen",
                    listen,
                    "the port is too high to derive the Raft and metrics ports from; set \
                     --raft-listen and --metrics-listen explicitly",
                )
            })?;
            Ok(SocketAddr::new(listen.ip(), port))
        };
        let raft_listen = match s.raft_listen {
            Some(addr) => addr,
            None => offset_port(defaults::RAFT_PORT_OFFSET)?,
        };
        let metrics_listen = match s.metrics_listen.as_deref() {
            Some("off") | Some("none") | Some("") => None,
            Some(addr) => Some(addr.parse().map_err(|_| {
                invalid(
                    "metrics-listen",
                    addr,
                    "give ip:port (e.g. 127.0.0.1:10092) or \"off\"",
                )
            })?),
            None => Some(offset_port(defaults::METRICS_PORT_OFFSET)?),
        };

        let node_id = s.node_id.unwrap_or(defaults::NODE_ID);
        let join = match &s.join {
            None => Vec::new(),
            Some(list) => parse_join(list)?,
        };
        if !join.is_empty() && s.initial_cluster.is_some() {
            return Err(invalid(
                "join",
                s.join.clone().unwrap_or_default(),
                "give either --initial-cluster (to form a new cluster) or --join (to add this \
                 node to a running one), not both",
            ));
        }
        let initial_cluster = match &s.initial_cluster {
            None if !join.is_empty() => Vec::new(),
            None => vec![(node_id, raft_listen.to_string())],
            Some(list) => parse_initial_cluster(list)?,
        };
        if join.is_empty() && !initial_cluster.iter().any(|(id, _)| *id == node_id) {
            return Err(invalid(
                "initial-cluster",
                s.initial_cluster.clone().unwrap_or_default(),
                "the list must include this node's own id (--node-id)",
            ));
        }

        let raft_advertised = initial_cluster
            .iter()
            .find(|(id, _)| *id == node_id)
            .map(|(_, addr)| addr.clone())
            .unwrap_or_else(|| raft_listen.to_string());

        let default_partitions = s.default_partitions.unwrap_or(defaults::DEFAULT_PARTITIONS);
        if default_partitions < 1 {
            return Err(invalid(
                "default-partitions",
                default_partitions,
                "a topic needs at least one partition",
            ));
        }
        // Three replicas once there are three nodes to put them on, as Kafka clusters run.
        let default_replication_factor = s.default_replication_factor.unwrap_or(
            if initial_cluster.len() >= 3 || !join.is_empty() {
                3
            } else {
                1
            },
        );
        if default_replication_factor < 1 {
            return Err(invalid(
                "default-replication-factor",
                default_replication_factor,
                "use 1 for a single node, 3 for a three-node cluster",
            ));
        }
        let max_message_bytes = s.max_message_bytes.unwrap_or(defaults::MAX_MESSAGE_BYTES);
        if max_message_bytes < 64 {
            return Err(invalid(
                "max-message-bytes",
                max_message_bytes,
                "must hold at least one record batch header; Kafka's default is 1048588",
            ));
        }
        let max_request_bytes = s.max_request_bytes.unwrap_or(defaults::MAX_REQUEST_BYTES);
        if max_request_bytes < 1024 {
            return Err(invalid(
                "max-request-bytes",
                max_request_bytes,
                "use at least 1024; Kafka's default is 104857600",
            ));
        }
        let max_inflated_batch_bytes = s
            .max_inflated_batch_bytes
            .unwrap_or(defaults::MAX_INFLATED_BATCH_BYTES);
        if !(1024..=defaults::MAX_INFLATED_BATCH_BYTES).contains(&max_inflated_batch_bytes) {
            return Err(invalid(
                "max-inflated-batch-bytes",
                max_inflated_batch_bytes,
                "use from 1024 to 67108864 (the log cleaner reads batches up to that size)",
            ));
        }
        let queued_max_request_bytes = s
            .queued_max_request_bytes
            .unwrap_or(defaults::QUEUED_MAX_REQUEST_BYTES);
        if queued_max_request_bytes < max_request_bytes {
            return Err(invalid(
                "queued-max-request-bytes",
                queued_max_request_bytes,
                "must hold at least one request of max-request-bytes",
            ));
        }
        let max_connections = s.max_connections.unwrap_or(defaults::MAX_CONNECTIONS);
        let max_connections_per_ip = s
            .max_connections_per_ip
            .unwrap_or(defaults::MAX_CONNECTIONS_PER_IP);
        for (flag, value) in [
            ("max-connections", max_connections),
            ("max-connections-per-ip", max_connections_per_ip),
        ] {
            if value < 1 {
                return Err(invalid(flag, value, "allow at least one connection"));
            }
        }
        let connections_max_idle_ms = s
            .connections_max_idle_ms
            .unwrap_or(defaults::CONNECTIONS_MAX_IDLE_MS);
        let frame_read_timeout_ms = s
            .frame_read_timeout_ms
            .unwrap_or(defaults::FRAME_READ_TIMEOUT_MS);
        for (flag, value) in [
            ("connections-max-idle-ms", connections_max_idle_ms),
            ("frame-read-timeout-ms", frame_read_timeout_ms),
        ] {
            if value < 100 {
                return Err(invalid(flag, value, "give at least 100 milliseconds"));
            }
        }
        let fetch_max_bytes = s.fetch_max_bytes.unwrap_or(defaults::FETCH_MAX_BYTES);
        if fetch_max_bytes < 1024 {
            return Err(invalid(
                "fetch-max-bytes",
                fetch_max_bytes,
                "use at least 1024",
            ));
        }
        let raft_heartbeat_ms = s.raft_heartbeat_ms.unwrap_or(defaults::RAFT_HEARTBEAT_MS);
        let raft_election_timeout_ms = s
            .raft_election_timeout_ms
            .unwrap_or(defaults::RAFT_ELECTION_TIMEOUT_MS);
        // A follower of a live leader stands only after a silence of the leader lease (the
        // maximum timeout, twice the minimum) plus a random timeout: at least three times
        // the minimum. The heartbeat must still come more often than the minimum.
        if raft_heartbeat_ms == 0 || raft_election_timeout_ms <= raft_heartbeat_ms {
            return Err(invalid(
                "raft-election-timeout-ms",
                raft_election_timeout_ms,
                "must be more than raft-heartbeat-ms (which must be above 0), or followers \
                 start elections while the leader is healthy",
            ));
        }
        let group_min_session_timeout_ms = s
            .group_min_session_timeout_ms
            .unwrap_or(defaults::GROUP_MIN_SESSION_TIMEOUT_MS);
        let group_max_session_timeout_ms = s
            .group_max_session_timeout_ms
            .unwrap_or(defaults::GROUP_MAX_SESSION_TIMEOUT_MS);
        if group_min_session_timeout_ms > group_max_session_timeout_ms {
            return Err(invalid(
                "group-min-session-timeout-ms",
                group_min_session_timeout_ms,
                "must not be more than group-max-session-timeout-ms",
            ));
        }
        let group_max_size = s.group_max_size.unwrap_or(defaults::GROUP_MAX_SIZE);
        let max_groups = s.max_groups.unwrap_or(defaults::MAX_GROUPS);
        let max_broker_partitions = s
            .max_broker_partitions
            .unwrap_or(defaults::MAX_BROKER_PARTITIONS);
        for (flag, value) in [
            ("group-max-size", group_max_size),
            ("max-groups", max_groups),
            ("max-broker-partitions", max_broker_partitions),
        ] {
            if value < 1 {
                return Err(invalid(flag, value, "allow at least 1"));
            }
        }
        let log_retention_ms = s.log_retention_ms.unwrap_or(defaults::LOG_RETENTION_MS);
        if log_retention_ms < -1 {
            return Err(invalid(
                "log-retention-ms",
                log_retention_ms,
                "give a number of milliseconds, or -1 to keep records forever",
            ));
        }
        let log_retention_bytes = s
            .log_retention_bytes
            .unwrap_or(defaults::LOG_RETENTION_BYTES);
        if log_retention_bytes < -1 {
            return Err(invalid(
                "log-retention-bytes",
                log_retention_bytes,
                "give a number of bytes, or -1 for no size limit",
            ));
        }
        let log_retention_check_interval_ms = s
            .log_retention_check_interval_ms
            .unwrap_or(defaults::LOG_RETENTION_CHECK_INTERVAL_MS);
        if log_retention_check_interval_ms == 0 {
            return Err(invalid(
                "log-retention-check-interval-ms",
                0,
                "give a number of milliseconds above 0",
            ));
        }
        let log_cleaner_backoff_ms = s
            .log_cleaner_backoff_ms
            .unwrap_or(defaults::LOG_CLEANER_BACKOFF_MS);
        if log_cleaner_backoff_ms == 0 {
            return Err(invalid(
                "log-cleaner-backoff-ms",
                0,
                "give a number of milliseconds above 0",
            ));
        }
        let timestamp_bound = |flag: &'static str, value: Option<i64>, default: i64| match value {
            Some(ms) if ms < 0 => Err(invalid(
                flag,
                ms,
                "give a number of milliseconds, 0 or more",
            )),
            _ => Ok(value.unwrap_or(default)),
        };
        let log_message_timestamp_before_max_ms = timestamp_bound(
            "log-message-timestamp-before-max-ms",
            s.log_message_timestamp_before_max_ms,
            defaults::LOG_MESSAGE_TIMESTAMP_BEFORE_MAX_MS,
        )?;
        let log_message_timestamp_after_max_ms = timestamp_bound(
            "log-message-timestamp-after-max-ms",
            s.log_message_timestamp_after_max_ms,
            defaults::LOG_MESSAGE_TIMESTAMP_AFTER_MAX_MS,
        )?;
        Ok(Config {
            log_cleaner_backoff: Duration::from_millis(log_cleaner_backoff_ms),
            log_message_timestamp_before_max_ms,
            log_message_timestamp_after_max_ms,
            log_retention_ms,
            log_retention_bytes,
            log_retention_check_interval: Duration::from_millis(log_retention_check_interval_ms),
            group_min_session_timeout: Duration::from_millis(group_min_session_timeout_ms),
            group_max_session_timeout: Duration::from_millis(group_max_session_timeout_ms),
            group_initial_rebalance_delay: Duration::from_millis(
                s.group_initial_rebalance_delay_ms
                    .unwrap_or(defaults::GROUP_INITIAL_REBALANCE_DELAY_MS),
            ),
            group_max_size,
            max_groups,
            max_broker_partitions,
            offsets_retention: Duration::from_secs(
                60 * s
                    .offsets_retention_minutes
                    .unwrap_or(defaults::OFFSETS_RETENTION_MINUTES),
            ),
            node_id,
            data_dir: s
                .data_dir
                .unwrap_or_else(|| PathBuf::from(defaults::DATA_DIR)),
            listen,
            advertised_host,
            advertised_port,
            raft_listen,
            raft_advertised,
            initial_cluster,
            join,
            metrics_listen,
            auto_create_topics: s.auto_create_topics.unwrap_or(defaults::AUTO_CREATE_TOPICS),
            default_partitions,
            default_replication_factor,
            max_message_bytes,
            max_request_bytes,
            max_inflated_batch_bytes,
            queued_max_request_bytes,
            max_connections,
            max_connections_per_ip,
            connections_max_idle: Duration::from_millis(connections_max_idle_ms),
            frame_read_timeout: Duration::from_millis(frame_read_timeout_ms),
            fetch_max_bytes,
            fetch_read_ahead_bytes: s
                .fetch_read_ahead_bytes
                .unwrap_or(defaults::FETCH_READ_AHEAD_BYTES),
            direct_io: s.direct_io,
            cluster_id: s.cluster_id.unwrap_or_else(|| defaults::CLUSTER_ID.into()),
            producer_id_expiration: Duration::from_millis(
                s.producer_id_expiration_ms
                    .unwrap_or(defaults::PRODUCER_ID_EXPIRATION_MS),
            ),
            raft_heartbeat: Duration::from_millis(raft_heartbeat_ms),
            raft_election_timeout: Duration::from_millis(raft_election_timeout_ms),
            leader_balance_interval: match s
                .leader_balance_interval_ms
                .unwrap_or(defaults::LEADER_BALANCE_INTERVAL_MS)
            {
                0 => None,
                ms => Some(Duration::from_millis(ms)),
            },
            log: s.log.unwrap_or_else(|| defaults::LOG.into()),
            #[cfg(feature = "unsafe-modes")]
            unsafe_mode: s.unsafe_mode.unwrap_or_default(),
            #[cfg(not(feature = "unsafe-modes"))]
            unsafe_mode: UnsafeMode::Off,
        })
    }
}

fn read_file(path: &Path) -> Result<Settings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::ParseFile {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn parse_join(list: &str) -> Result<Vec<String>, ConfigError> {
    list.split(',')
        .map(|addr| {
            let addr = addr.trim();
            parse_host_port(addr)
                .map(|_| addr.to_string())
                .ok_or_else(|| {
                    invalid(
                        "join",
                        list,
                        "give the Raft addresses of running nodes as host:port, comma-separated \
                     (e.g. 10.0.0.1:19092,10.0.0.2:19092)",
                    )
                })
        })
        .collect()
}

fn parse_initial_cluster(list: &str) -> Result<Vec<(u64, String)>, ConfigError> {
    let bad = || {
        invalid(
            "initial-cluster",
            list,
            "write id@host:port pairs separated by commas, e.g. 1@10.0.0.1:19092,2@10.0.0.2:19092",
        )
    };
    let mut nodes = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addr) = item.split_once('@').ok_or_else(bad)?;
        let id: u64 = id.trim().parse().map_err(|_| bad())?;
        parse_host_port(addr.trim()).ok_or_else(bad)?;
        if nodes.iter().any(|(other, _)| *other == id) {
            return Err(bad());
        }
        nodes.push((id, addr.trim().to_string()));
    }
    if nodes.is_empty() {
        return Err(bad());
    }
    Ok(nodes)
}

fn parse_host_port(addr: &str) -> Option<(String, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((host.to_string(), port.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Settings {
        Settings::try_parse_from(std::iter::once("strand").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn help_shows_each_documented_default() {
        let help = command().render_long_help().to_string();
        for (flag, default) in documented_defaults() {
            let at = help
                .find(&format!("--{flag} "))
                .unwrap_or_else(|| panic!("--{flag} is not in --help"));
            let next = help[at + 2..]
                .find("\n  -")
                .map_or(help.len(), |n| at + 2 + n);
            assert!(
                help[at..next].contains(&format!("[default: {default}]")),
                "--{flag}: {}",
                &help[at..next]
            );
        }
    }

    /// docs/configuration.md has one row per flag of `--help`, with its environment
    /// variable, file key and (where `--help` states one) its default.
    #[test]
    fn the_docs_configuration_table_matches_help() {
        let table = crate::doc_tests::marked_section("docs/configuration.md", "config-table");
        let rows: Vec<Vec<String>> = table
            .lines()
            .filter(|l| l.starts_with("| `--"))
            .map(|l| {
                l.split(" | ")
                    .map(|c| c.trim_matches(['|', ' ', '`']).to_string())
                    .collect()
            })
            .collect();
        let defaults: std::collections::HashMap<_, _> = documented_defaults().into_iter().collect();
        let command = command();
        let args: Vec<_> = command
            .get_arguments()
            .filter(|a| !matches!(a.get_id().as_str(), "help" | "version" | "unsafe_mode"))
            .collect();
        for arg in &args {
            let flag = arg.get_long().expect("every setting has a long flag");
            let row = rows
                .iter()
                .find(|r| r[0] == format!("--{flag}"))
                .unwrap_or_else(|| panic!("docs/configuration.md has no row for --{flag}"));
            let env = arg
                .get_env()
                .map_or("—".into(), |e| e.to_string_lossy().into_owned());
            assert_eq!(row[1], env, "--{flag}: environment variable");
            let file_key = if matches!(flag, "config" | "supported-apis") {
                "—"
            } else {
                flag
            };
            assert_eq!(row[2], file_key, "--{flag}: file key");
            if let Some(default) = defaults.get(flag) {
                assert_eq!(&row[3], default, "--{flag}: default");
            }
        }
        assert_eq!(
            rows.len(),
            args.len(),
            "docs/configuration.md lists flags --help does not"
        );
    }

    #[test]
    fn a_data_dir_need_not_be_utf8() {
        use std::os::unix::ffi::OsStrExt;
        let dir = std::ffi::OsStr::from_bytes(b"/tmp/strand-\xff");
        let cli = Settings::try_parse_from([
            std::ffi::OsStr::new("strand"),
            std::ffi::OsStr::new("--data-dir"),
            dir,
        ])
        .unwrap();
        assert_eq!(Config::resolve(cli).unwrap().data_dir.as_os_str(), dir);
    }

    #[test]
    fn defaults_serve_a_laptop() {
        let c = Config::resolve(Settings::default()).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:9092");
        assert_eq!(
            (c.advertised_host.as_str(), c.advertised_port),
            ("127.0.0.1", 9092)
        );
        assert_eq!(c.raft_listen.to_string(), "127.0.0.1:19092");
        assert_eq!(c.metrics_listen.unwrap().to_string(), "127.0.0.1:10092");
        assert_eq!(c.data_dir, PathBuf::from("data"));
        assert!(c.auto_create_topics);
        assert_eq!(c.direct_io, None, "probed at open");
    }

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("strand.toml");
        std::fs::write(
            &file,
            "node-id = 7\nlisten = \"127.0.0.1:9500\"\ndefault-partitions = 3\ndirect-io = false\n",
        )
        .unwrap();
        let c = Config::resolve(cli(&[
            "--config",
            file.to_str().unwrap(),
            "--default-partitions",
            "5",
        ]))
        .unwrap();
        assert_eq!(c.node_id, 7);
        assert_eq!(c.listen.port(), 9500);
        assert_eq!(c.default_partitions, 5);
        assert_eq!(c.direct_io, Some(false));
    }

    #[test]
    fn a_joining_node_forms_nothing_and_replicates_thrice() {
        let c = Config::resolve(cli(&[
            "--node-id",
            "4",
            "--join",
            "10.0.0.1:19092, 10.0.0.2:19092",
        ]))
        .unwrap();
        assert_eq!(c.join, ["10.0.0.1:19092", "10.0.0.2:19092"]);
        assert!(c.initial_cluster.is_empty());
        assert_eq!(c.default_replication_factor, 3);
        assert_eq!(c.raft_advertised, "127.0.0.1:19092");

        let both = Config::resolve(cli(&[
            "--join",
            "10.0.0.1:19092",
            "--initial-cluster",
            "1@10.0.0.1:19092",
        ]));
        assert!(both.unwrap_err().to_string().contains("not both"));
        let garbled = Config::resolve(cli(&["--join", "10.0.0.1"]));
        assert!(garbled.unwrap_err().to_string().contains("host:port"));
    }

    #[test]
    fn mistakes_name_the_setting_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "nodeid = 7\n").unwrap();
        let err = Config::resolve(cli(&["--config", file.to_str().unwrap()]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("nodeid") && err.contains("node-id"), "{err}");

        let err = Config::resolve(cli(&["--listen", "0.0.0.0:9092"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("--advertised-addr"), "{err}");

        let err = Config::resolve(cli(&["--default-partitions", "0"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("default-partitions"), "{err}");

        let err = Config::resolve(cli(&["--fetch-max-bytes", "100"]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("fetch-max-bytes") && err.contains("1024"),
            "{err}"
        );

        let err = Config::resolve(cli(&["--initial-cluster", "2@h:1,3@h:2"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("must include this node"), "{err}");
        let err = Config::resolve(cli(&["--initial-cluster", "1-h:1"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("id@host:port"), "{err}");
    }

    #[test]
    fn an_initial_cluster_lists_every_first_member() {
        let c = Config::resolve(cli(&[
            "--node-id",
            "2",
            "--initial-cluster",
            "1@127.0.0.1:19092, 2@127.0.0.1:19093,3@127.0.0.1:19094",
        ]))
        .unwrap();
        assert_eq!(c.initial_cluster.len(), 3);
        assert_eq!(c.initial_cluster[1], (2, "127.0.0.1:19093".to_string()));
    }

    /// The unsafe modes exist for the Jepsen self-check only: a normal build has no way
    /// to switch one on, not by flag, environment or file.
    #[cfg(not(feature = "unsafe-modes"))]
    #[test]
    fn a_normal_build_cannot_be_made_unsafe() {
        let flag = Settings::try_parse_from(["strand", "--unsafe-mode", "ack-before-commit"]);
        assert!(flag.is_err());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("unsafe.toml");
        std::fs::write(&file, "unsafe-mode = \"ack-before-commit\"\n").unwrap();
        assert!(Config::resolve(cli(&["--config", file.to_str().unwrap()])).is_err());
        std::env::set_var("STRAND_UNSAFE_MODE", "ack-before-commit");
        let config = Config::resolve(cli(&[]));
        std::env::remove_var("STRAND_UNSAFE_MODE");
        assert_eq!(config.unwrap().unsafe_mode, UnsafeMode::Off);
    }
}
