//! Broker configuration: defaults, overridden by a TOML file (`--config`), overridden by
//! `STRAND_*` environment variables, overridden by command-line flags.
//!
//! Every setting is one field of [`Settings`], which is both the clap definition (flag and
//! environment variable) and the serde definition (file key). A new setting is one field
//! here, one default in [`Config::resolve`], and one line in the README's table.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

use crate::unsafe_modes::UnsafeMode;

/// Strand: a Kafka-compatible distributed log. Every Kafka client works against it.
///
/// Each setting can also be given as an environment variable (shown below) or as a key in
/// the --config file (the flag name without dashes' prefix, e.g. `node-id = 1`). Flags
/// override environment variables, which override the file, which overrides defaults.
#[derive(Debug, Default, Clone, Parser, Deserialize)]
#[command(name = "strand", version, about, long_about = None)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Settings {
    /// TOML file with settings (keys are the flag names, e.g. `listen = "0.0.0.0:9092"`).
    #[arg(long, env = "STRAND_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// This node's id: its Kafka broker id and Raft node id [default: 1].
    #[arg(long, env = "STRAND_NODE_ID")]
    pub node_id: Option<u64>,

    /// Directory for all data (created if missing) [default: ./data].
    #[arg(long, env = "STRAND_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Address the Kafka listener binds [default: 127.0.0.1:9092].
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
    /// (Kafka: auto.create.topics.enable) [default: true].
    #[arg(long, env = "STRAND_AUTO_CREATE_TOPICS")]
    pub auto_create_topics: Option<bool>,

    /// Partitions of a topic created without a count (Kafka: num.partitions) [default: 1].
    #[arg(long, env = "STRAND_DEFAULT_PARTITIONS")]
    pub default_partitions: Option<i32>,

    /// Replicas of a topic created without a replication factor
    /// (Kafka: default.replication.factor) [default: 3 if the initial cluster has three or
    /// more nodes, else 1].
    #[arg(long, env = "STRAND_DEFAULT_REPLICATION_FACTOR")]
    pub default_replication_factor: Option<i16>,

    /// Largest record batch a topic accepts unless its max.message.bytes says otherwise
    /// (Kafka: message.max.bytes) [default: 1048588].
    #[arg(long, env = "STRAND_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<i32>,

    /// Largest request frame accepted; larger ones close the connection
    /// (Kafka: socket.request.max.bytes) [default: 104857600].
    #[arg(long, env = "STRAND_MAX_REQUEST_BYTES")]
    pub max_request_bytes: Option<usize>,

    /// Most record bytes in one fetch response, whatever the consumer's fetch.max.bytes
    /// (Kafka: the broker's fetch.max.bytes, 55 MiB there); a first batch larger than this
    /// still goes out whole. Above 32 MiB, glibc gives a librdkafka consumer's receive
    /// buffer fresh pages for every response, which doubled the consumer's kernel time in a
    /// catch-up read [default: 33554432].
    #[arg(long, env = "STRAND_FETCH_MAX_BYTES")]
    pub fetch_max_bytes: Option<usize>,

    /// Memory the node may hold, across its connections, for fetch read-ahead: the next
    /// response of a consumer catching up, read from disk while it parses the last one; 0
    /// turns it off [default: 268435456].
    #[arg(long, env = "STRAND_FETCH_READ_AHEAD_BYTES")]
    pub fetch_read_ahead_bytes: Option<usize>,

    /// Direct I/O for the database's flushes, compactions and reads: true or false
    /// [default: used where the data directory's file system takes it].
    #[arg(long, env = "STRAND_DIRECT_IO")]
    pub direct_io: Option<bool>,

    /// Cluster id reported to clients [default: strand-cluster].
    #[arg(long, env = "STRAND_CLUSTER_ID")]
    pub cluster_id: Option<String>,

    /// How long a partition remembers an idempotent producer after its last batch
    /// (Kafka: producer.id.expiration.ms) [default: 86400000, one day].
    #[arg(long, env = "STRAND_PRODUCER_ID_EXPIRATION_MS")]
    pub producer_id_expiration_ms: Option<u64>,

    /// Raft leader heartbeat period in milliseconds; all groups' heartbeats leave together
    /// [default: 400].
    #[arg(long, env = "STRAND_RAFT_HEARTBEAT_MS")]
    pub raft_heartbeat_ms: Option<u64>,

    /// Minimum Raft election timeout in milliseconds; the maximum is twice this. A follower
    /// of a live leader waits the maximum (openraft's leader lease) plus a random timeout
    /// before it stands, so failover takes about three times this [default: 500].
    #[arg(long, env = "STRAND_RAFT_ELECTION_TIMEOUT_MS")]
    pub raft_election_timeout_ms: Option<u64>,

    /// How often each node hands the partitions it leads back to their preferred replica
    /// (the first listed), when that replica is alive and caught up; 0 turns it off
    /// (Kafka: auto.leader.rebalance.enable, leader.imbalance.check.interval.seconds)
    /// [default: 30000].
    #[arg(long, env = "STRAND_LEADER_BALANCE_INTERVAL_MS")]
    pub leader_balance_interval_ms: Option<u64>,

    /// Shortest session timeout a consumer group member may ask for
    /// (Kafka: group.min.session.timeout.ms) [default: 6000].
    #[arg(long, env = "STRAND_GROUP_MIN_SESSION_TIMEOUT_MS")]
    pub group_min_session_timeout_ms: Option<u64>,

    /// Longest session timeout a consumer group member may ask for
    /// (Kafka: group.max.session.timeout.ms) [default: 1800000].
    #[arg(long, env = "STRAND_GROUP_MAX_SESSION_TIMEOUT_MS")]
    pub group_max_session_timeout_ms: Option<u64>,

    /// How long the first rebalance of an empty group waits for more members to join
    /// (Kafka: group.initial.rebalance.delay.ms) [default: 3000].
    #[arg(long, env = "STRAND_GROUP_INITIAL_REBALANCE_DELAY_MS")]
    pub group_initial_rebalance_delay_ms: Option<u64>,

    /// How long a group without members keeps its committed offsets after the last commit
    /// (Kafka: offsets.retention.minutes) [default: 10080, seven days].
    #[arg(long, env = "STRAND_OFFSETS_RETENTION_MINUTES")]
    pub offsets_retention_minutes: Option<u64>,

    /// Log filter, in tracing's EnvFilter syntax (RUST_LOG also works)
    /// [default: info,openraft=warn].
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
    /// Fills every unset field of `self` from `lower`.
    fn or(self, lower: Settings) -> Settings {
        Settings {
            config: self.config.or(lower.config),
            node_id: self.node_id.or(lower.node_id),
            data_dir: self.data_dir.or(lower.data_dir),
            listen: self.listen.or(lower.listen),
            advertised_addr: self.advertised_addr.or(lower.advertised_addr),
            raft_listen: self.raft_listen.or(lower.raft_listen),
            initial_cluster: self.initial_cluster.or(lower.initial_cluster),
            join: self.join.or(lower.join),
            metrics_listen: self.metrics_listen.or(lower.metrics_listen),
            auto_create_topics: self.auto_create_topics.or(lower.auto_create_topics),
            default_partitions: self.default_partitions.or(lower.default_partitions),
            default_replication_factor: self
                .default_replication_factor
                .or(lower.default_replication_factor),
            max_message_bytes: self.max_message_bytes.or(lower.max_message_bytes),
            max_request_bytes: self.max_request_bytes.or(lower.max_request_bytes),
            fetch_max_bytes: self.fetch_max_bytes.or(lower.fetch_max_bytes),
            fetch_read_ahead_bytes: self.fetch_read_ahead_bytes.or(lower.fetch_read_ahead_bytes),
            direct_io: self.direct_io.or(lower.direct_io),
            cluster_id: self.cluster_id.or(lower.cluster_id),
            producer_id_expiration_ms: self
                .producer_id_expiration_ms
                .or(lower.producer_id_expiration_ms),
            raft_heartbeat_ms: self.raft_heartbeat_ms.or(lower.raft_heartbeat_ms),
            raft_election_timeout_ms: self
                .raft_election_timeout_ms
                .or(lower.raft_election_timeout_ms),
            leader_balance_interval_ms: self
                .leader_balance_interval_ms
                .or(lower.leader_balance_interval_ms),
            group_min_session_timeout_ms: self
                .group_min_session_timeout_ms
                .or(lower.group_min_session_timeout_ms),
            group_max_session_timeout_ms: self
                .group_max_session_timeout_ms
                .or(lower.group_max_session_timeout_ms),
            group_initial_rebalance_delay_ms: self
                .group_initial_rebalance_delay_ms
                .or(lower.group_initial_rebalance_delay_ms),
            offsets_retention_minutes: self
                .offsets_retention_minutes
                .or(lower.offsets_retention_minutes),
            log: self.log.or(lower.log),
            #[cfg(feature = "unsafe-modes")]
            unsafe_mode: self.unsafe_mode.or(lower.unsafe_mode),
        }
    }
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
    pub offsets_retention: Duration,
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
    /// Parses the command line (and environment), reads the config file it names, and
    /// resolves defaults.
    pub fn from_args() -> Result<Config, ConfigError> {
        Config::resolve(Settings::parse())
    }

    /// Resolves command-line/environment settings over the file they name over defaults.
    pub fn resolve(cli: Settings) -> Result<Config, ConfigError> {
        let file = match &cli.config {
            Some(path) => read_file(path)?,
            None => Settings::default(),
        };
        let s = cli.or(file);

        let listen = s
            .listen
            .unwrap_or_else(|| "127.0.0.1:9092".parse().expect("valid default"));
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
            None => offset_port(10000)?,
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
            None => Some(offset_port(1000)?),
        };

        let node_id = s.node_id.unwrap_or(1);
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

        let default_partitions = s.default_partitions.unwrap_or(1);
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
        let max_message_bytes = s.max_message_bytes.unwrap_or(1_048_588);
        if max_message_bytes < 64 {
            return Err(invalid(
                "max-message-bytes",
                max_message_bytes,
                "must hold at least one record batch header; Kafka's default is 1048588",
            ));
        }
        let max_request_bytes = s.max_request_bytes.unwrap_or(104_857_600);
        if max_request_bytes < 1024 {
            return Err(invalid(
                "max-request-bytes",
                max_request_bytes,
                "use at least 1024; Kafka's default is 104857600",
            ));
        }
        let fetch_max_bytes = s.fetch_max_bytes.unwrap_or(33_554_432);
        if fetch_max_bytes < 1024 {
            return Err(invalid(
                "fetch-max-bytes",
                fetch_max_bytes,
                "use at least 1024; the default is 33554432",
            ));
        }
        let raft_heartbeat_ms = s.raft_heartbeat_ms.unwrap_or(400);
        let raft_election_timeout_ms = s.raft_election_timeout_ms.unwrap_or(500);
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
        let group_min_session_timeout_ms = s.group_min_session_timeout_ms.unwrap_or(6000);
        let group_max_session_timeout_ms = s.group_max_session_timeout_ms.unwrap_or(1_800_000);
        if group_min_session_timeout_ms > group_max_session_timeout_ms {
            return Err(invalid(
                "group-min-session-timeout-ms",
                group_min_session_timeout_ms,
                "must not be more than group-max-session-timeout-ms",
            ));
        }
        Ok(Config {
            group_min_session_timeout: Duration::from_millis(group_min_session_timeout_ms),
            group_max_session_timeout: Duration::from_millis(group_max_session_timeout_ms),
            group_initial_rebalance_delay: Duration::from_millis(
                s.group_initial_rebalance_delay_ms.unwrap_or(3000),
            ),
            offsets_retention: Duration::from_secs(
                60 * s.offsets_retention_minutes.unwrap_or(10_080),
            ),
            node_id,
            data_dir: s.data_dir.unwrap_or_else(|| PathBuf::from("data")),
            listen,
            advertised_host,
            advertised_port,
            raft_listen,
            raft_advertised,
            initial_cluster,
            join,
            metrics_listen,
            auto_create_topics: s.auto_create_topics.unwrap_or(true),
            default_partitions,
            default_replication_factor,
            max_message_bytes,
            max_request_bytes,
            fetch_max_bytes,
            fetch_read_ahead_bytes: s.fetch_read_ahead_bytes.unwrap_or(268_435_456),
            direct_io: s.direct_io,
            cluster_id: s.cluster_id.unwrap_or_else(|| "strand-cluster".into()),
            producer_id_expiration: Duration::from_millis(
                s.producer_id_expiration_ms.unwrap_or(86_400_000),
            ),
            raft_heartbeat: Duration::from_millis(raft_heartbeat_ms),
            raft_election_timeout: Duration::from_millis(raft_election_timeout_ms),
            leader_balance_interval: match s.leader_balance_interval_ms.unwrap_or(30_000) {
                0 => None,
                ms => Some(Duration::from_millis(ms)),
            },
            log: s.log.unwrap_or_else(|| "info,openraft=warn".into()),
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
