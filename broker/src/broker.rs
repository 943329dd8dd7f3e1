//! The broker's shared context, and starting a node.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use kafka_protocol::messages::BrokerId;
use kafka_protocol::ResponseError;
use openraft::BasicNode;
use strand_raft::{
    BrokerInfo, NodeIdentity, PartitionReplica, RaftNode, RaftTuning, TopicInfo, Transport,
};
use strand_storage::{Store, StoreOptions};
use tokio::net::TcpListener;

use crate::cluster;
use crate::groups::{self, Coordinator, GroupLimits};
use crate::handlers::ReadAheadBudget;
use crate::limits::{ConnectionLimits, RequestMemory};
use crate::metrics::Metrics;
use crate::producer_ids::{self, ProducerIds};
use crate::unsafe_modes::UnsafeMode;
use crate::Config;
use crate::{cleaner, features, retention};

/// Everything a request handler needs, shared by all connections.
pub struct Broker {
    pub config: Config,
    pub node: Arc<RaftNode>,
    pub metrics: Metrics,
    pub producer_ids: ProducerIds,
    pub groups: Coordinator,
    /// What fetch read-ahead may hold across the node's connections.
    pub read_ahead: Arc<ReadAheadBudget>,
    pub connection_limits: Arc<ConnectionLimits>,
    pub request_memory: RequestMemory,
    /// Turns at inflating compressed batches to validate them, one per core: bounds the
    /// memory and threads that takes.
    pub inflating: Arc<tokio::sync::Semaphore>,
}

/// Where a partition's requests go, as far as this node knows.
pub enum PartitionRoute {
    /// This node has a replica.
    Local(Arc<PartitionReplica>),
    /// The partition exists but has no replica here.
    Remote,
    /// No such partition.
    Unknown,
}

impl Broker {
    /// Opens the data directory, starts the Raft node and its peer listener, registers this
    /// broker with the controller group (waiting for it to have a quorum) and opens every
    /// local partition replica.
    pub async fn start(config: Config) -> anyhow::Result<Arc<Broker>> {
        let raft_listener = TcpListener::bind(config.raft_listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen for Raft peers on {}: is another node using it? Pass \
                 --raft-listen to use another address",
                    config.raft_listen
                )
            })?;
        let db_path = config.data_dir.join("db");
        let mut store_options = StoreOptions::new(&db_path);
        store_options.sync_wal = !config.unsafe_mode.is(UnsafeMode::SkipFsync);
        store_options.direct_io = config.direct_io;
        let store = Store::open(&store_options).with_context(|| {
            format!(
                "cannot open the data directory {}: check that it is writable and that no \
                 other strand process is using it (or pass --data-dir)",
                db_path.display()
            )
        })?;
        let identity = NodeIdentity {
            id: config.node_id,
            raft_addr: config.raft_advertised.clone(),
        };
        let tuning = RaftTuning {
            heartbeat_interval: config.raft_heartbeat,
            election_timeout: (
                config.raft_election_timeout,
                config.raft_election_timeout * 2,
            ),
            leader_balance_interval: config.leader_balance_interval,
            purge_unread: config.unsafe_mode.is(UnsafeMode::PurgeUnread),
            compact_by_hash: config.unsafe_mode.is(UnsafeMode::CompactByHash),
        };
        let voters: BTreeMap<u64, BasicNode> = config
            .initial_cluster
            .iter()
            .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
            .collect();
        let bootstrap = config.join.is_empty().then_some(voters);
        let node = RaftNode::start(identity, store, tuning, Transport::new(), bootstrap)
            .await
            .context("cannot start the Raft node")?;
        node.serve_peers(raft_listener);
        if !config.join.is_empty() {
            let started = Instant::now();
            while let Err(e) = node.join(&config.join).await {
                tracing::info!(waited = ?started.elapsed(), reason = %e, "waiting to join the cluster");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        let me = BrokerInfo {
            id: config.node_id,
            host: config.advertised_host.clone(),
            port: config.advertised_port,
            raft_addr: config.raft_advertised.clone(),
            rack: None,
        };
        // A node cannot serve before the controller group has a quorum: wait for one.
        let started = Instant::now();
        while let Err(e) = cluster::register_broker(&node, me.clone()).await {
            tracing::info!(
                waited = ?started.elapsed(),
                reason = %e,
                "waiting for a quorum of the controller group"
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        node.reconcile(&node.controller().metadata())
            .await
            .context("cannot open the partition replicas")?;
        tokio::spawn(cluster::reconcile_loop(node.clone()));
        let groups = Coordinator::new(
            GroupLimits {
                min_session_timeout: config.group_min_session_timeout,
                max_session_timeout: config.group_max_session_timeout,
                initial_rebalance_delay: config.group_initial_rebalance_delay,
                max_size: config.group_max_size,
            },
            config.max_groups,
            config.offsets_retention,
        );
        let broker = Arc::new(Broker {
            read_ahead: Arc::new(ReadAheadBudget::new(config.fetch_read_ahead_bytes)),
            connection_limits: Arc::new(ConnectionLimits::new(
                config.max_connections,
                config.max_connections_per_ip,
            )),
            request_memory: RequestMemory::new(config.queued_max_request_bytes),
            inflating: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            )),
            config,
            node,
            metrics: Metrics::default(),
            producer_ids: ProducerIds::default(),
            groups,
        });
        tokio::spawn(producer_ids::expiry_loop(broker.clone()));
        tokio::spawn(features::finalize_loop(broker.clone()));
        tokio::spawn(retention::retention_loop(broker.clone()));
        tokio::spawn(cleaner::cleaner_loop(broker.clone()));
        tokio::spawn(groups::run(broker.clone()));
        Ok(broker)
    }

    /// The broker clients should treat as the controller: the controller group's leader
    /// (this broker while none is known, so admin clients never see -1).
    pub fn controller_id(&self) -> BrokerId {
        let leader = self.node.controller().replica.leadership().leader;
        BrokerId(leader.unwrap_or(self.node.id()) as i32)
    }

    /// The leader of partition `index` of `topic` and its epoch, as far as this node knows,
    /// for NOT_LEADER_OR_FOLLOWER answers (KIP-951) when the leader is another node.
    pub fn leader_hint(&self, topic: &TopicInfo, index: i32) -> Option<(u64, i32)> {
        let group = usize::try_from(index)
            .ok()
            .and_then(|i| topic.partitions.get(i))?
            .group;
        let leader = self.node.leader_of(group)?;
        (leader.node != self.node.id())
            .then(|| (leader.node, i32::try_from(leader.term).unwrap_or(i32::MAX)))
    }

    /// The topic named `name`, if it exists.
    pub fn topic(&self, name: &str) -> Option<Arc<TopicInfo>> {
        self.node.controller().metadata().topics.get(name).cloned()
    }

    /// The topic with id `id` (KIP-516); the nil id names none.
    pub fn topic_by_id(&self, id: uuid::Uuid) -> Option<Arc<TopicInfo>> {
        if id.is_nil() {
            return None;
        }
        let metadata = self.node.controller().metadata();
        metadata.topic_by_id(id.as_bytes()).cloned()
    }

    /// Where requests for partition `index` of `topic` go.
    pub fn route(&self, topic: &TopicInfo, index: i32) -> PartitionRoute {
        let Some(info) = usize::try_from(index)
            .ok()
            .and_then(|i| topic.partitions.get(i))
        else {
            return PartitionRoute::Unknown;
        };
        match self.node.partition(info.group) {
            Some(replica) => PartitionRoute::Local(replica),
            None => PartitionRoute::Remote,
        }
    }

    /// The replica of a partition this node leads and serves from, or the Kafka error
    /// for why it cannot serve it.
    pub fn serving_replica(
        &self,
        topic: &TopicInfo,
        index: i32,
    ) -> Result<Arc<PartitionReplica>, ResponseError> {
        match self.route(topic, index) {
            PartitionRoute::Local(replica) if replica.replica.leadership().serving => Ok(replica),
            PartitionRoute::Local(_) | PartitionRoute::Remote => {
                Err(ResponseError::NotLeaderOrFollower)
            }
            PartitionRoute::Unknown => Err(ResponseError::UnknownTopicOrPartition),
        }
    }
}
