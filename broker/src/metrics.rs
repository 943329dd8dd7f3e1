//! Prometheus metrics: counters kept with atomics and rendered in the text exposition
//! format on `GET /metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use kafka_protocol::messages::ApiKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::Broker;

/// Kafka API keys go up to 92.
const API_SLOTS: usize = 96;

/// Why the broker closed a connection that had done nothing wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// Nothing to read and nothing being answered for connections.max.idle.ms.
    Idle,
    /// A request began and did not arrive whole within frame-read-timeout-ms.
    ReadTimeout,
}

/// A node-wide bound that refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// group.max.size: a newcomer to a full group.
    GroupMaxSize,
    /// max-groups: a group beyond the cluster's number.
    MaxGroups,
    /// max-broker-partitions: partitions beyond what a node may hold.
    MaxBrokerPartitions,
    /// A producer id the cluster never handed out.
    ProducerId,
    /// max-inflated-batch-bytes: a batch inflating beyond it.
    InflatedBatchBytes,
}

impl Refused {
    const ALL: [Refused; 5] = [
        Refused::GroupMaxSize,
        Refused::MaxGroups,
        Refused::MaxBrokerPartitions,
        Refused::ProducerId,
        Refused::InflatedBatchBytes,
    ];

    fn label(self) -> &'static str {
        match self {
            Refused::GroupMaxSize => "group_max_size",
            Refused::MaxGroups => "max_groups",
            Refused::MaxBrokerPartitions => "max_broker_partitions",
            Refused::ProducerId => "producer_id",
            Refused::InflatedBatchBytes => "max_inflated_batch_bytes",
        }
    }
}

#[derive(Debug)]
pub struct Metrics {
    connections_open: AtomicI64,
    connections_total: AtomicU64,
    closed_idle: AtomicU64,
    closed_read_timeout: AtomicU64,
    bad_requests: AtomicU64,
    refused: [AtomicU64; Refused::ALL.len()],
    requests: [AtomicU64; API_SLOTS],
    pub produced_records: AtomicU64,
    pub produced_bytes: AtomicU64,
    pub fetched_bytes: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            connections_open: AtomicI64::new(0),
            connections_total: AtomicU64::new(0),
            closed_idle: AtomicU64::new(0),
            closed_read_timeout: AtomicU64::new(0),
            bad_requests: AtomicU64::new(0),
            refused: std::array::from_fn(|_| AtomicU64::new(0)),
            requests: std::array::from_fn(|_| AtomicU64::new(0)),
            produced_records: AtomicU64::new(0),
            produced_bytes: AtomicU64::new(0),
            fetched_bytes: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    pub fn connection_opened(&self) {
        self.connections_open.fetch_add(1, Relaxed);
        self.connections_total.fetch_add(1, Relaxed);
    }

    pub fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Relaxed);
    }

    pub fn closed(&self, why: Closed) {
        match why {
            Closed::Idle => &self.closed_idle,
            Closed::ReadTimeout => &self.closed_read_timeout,
        }
        .fetch_add(1, Relaxed);
    }

    pub fn refused(&self, by: Refused) {
        self.refused[by as usize].fetch_add(1, Relaxed);
    }

    /// A frame or request that could not be read and closed its connection.
    pub fn bad_request(&self) {
        self.bad_requests.fetch_add(1, Relaxed);
    }

    pub fn request(&self, api: ApiKey) {
        if let Some(slot) = self.requests.get(api as usize) {
            slot.fetch_add(1, Relaxed);
        }
    }

    /// The exposition text for this broker.
    pub fn render(&self, broker: &Broker) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        counter(
            "strand_connections_total",
            "Client connections accepted.",
            self.connections_total.load(Relaxed),
        );
        counter(
            "strand_bad_requests_total",
            "Requests that could not be read and closed their connection.",
            self.bad_requests.load(Relaxed),
        );
        counter(
            "strand_produced_records_total",
            "Records acknowledged to producers.",
            self.produced_records.load(Relaxed),
        );
        counter(
            "strand_produced_bytes_total",
            "Record batch bytes acknowledged to producers.",
            self.produced_bytes.load(Relaxed),
        );
        counter(
            "strand_fetched_bytes_total",
            "Record batch bytes sent to consumers.",
            self.fetched_bytes.load(Relaxed),
        );
        counter(
            "strand_fetch_read_ahead_bytes_total",
            "Record batch bytes read ahead for consumers catching up.",
            broker.read_ahead.read_bytes.load(Relaxed),
        );
        counter(
            "strand_fetch_read_ahead_served_bytes_total",
            "Record batch bytes read ahead and then sent.",
            broker.read_ahead.served_bytes.load(Relaxed),
        );
        let stats = broker.node.store().stats();
        counter(
            "strand_wal_syncs_total",
            "WAL fsyncs by the group-commit flusher.",
            stats.wal_syncs.load(Relaxed),
        );
        counter(
            "strand_wal_synced_appends_total",
            "Raft log appends made durable by those fsyncs.",
            stats.synced_appends.load(Relaxed),
        );
        counter(
            "strand_raft_log_bytes_total",
            "Bytes appended to Raft logs.",
            stats.raft_log_bytes.load(Relaxed),
        );
        counter(
            "strand_state_bytes_total",
            "Bytes written by state machines.",
            stats.state_bytes.load(Relaxed),
        );
        let (snapshots, snapshot_bytes) = broker.node.snapshots_installed();
        counter(
            "strand_raft_snapshots_installed_total",
            "Raft snapshots installed, by replicas behind their leader's purge point.",
            snapshots,
        );
        counter(
            "strand_raft_snapshot_bytes_total",
            "Raft log entry bytes those snapshots carried.",
            snapshot_bytes,
        );
        let (appends, quiet) = broker.node.heartbeat_counts();
        let _ = writeln!(
            out,
            "# HELP strand_raft_heartbeats_total Heartbeats of the Raft groups this node \
             leads, one per group and round: openraft appends, or quiet (one message per \
             peer for every group with nothing to replicate).\n\
             # TYPE strand_raft_heartbeats_total counter\n\
             strand_raft_heartbeats_total{{kind=\"append\"}} {appends}\n\
             strand_raft_heartbeats_total{{kind=\"quiet\"}} {quiet}"
        );
        let _ = writeln!(
            out,
            "# HELP strand_raft_purged_entries Raft log entries purged on this node: the sum \
             of its groups' purge points.\n\
             # TYPE strand_raft_purged_entries gauge\nstrand_raft_purged_entries {}",
            broker.node.purged_entries()
        );
        let _ = writeln!(
            out,
            "# HELP strand_connections_closed_total Client connections the node closed: \
             idle for connections.max.idle.ms, a request not arriving whole within \
             frame-read-timeout-ms (or its memory), or refused at once by \
             max.connections.per.ip.\n\
             # TYPE strand_connections_closed_total counter\n\
             strand_connections_closed_total{{reason=\"idle\"}} {}\n\
             strand_connections_closed_total{{reason=\"read_timeout\"}} {}\n\
             strand_connections_closed_total{{reason=\"limit\"}} {}",
            self.closed_idle.load(Relaxed),
            self.closed_read_timeout.load(Relaxed),
            broker.connection_limits.refused.load(Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP strand_requests_refused_total Requests a node-wide bound refused, by \
             bound (the client got Kafka's error for it).\n\
             # TYPE strand_requests_refused_total counter"
        );
        for by in Refused::ALL {
            let _ = writeln!(
                out,
                "strand_requests_refused_total{{limit=\"{}\"}} {}",
                by.label(),
                self.refused[by as usize].load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP strand_request_memory_bytes Bytes of request frames being read, taken \
             from queued.max.request.bytes.\n\
             # TYPE strand_request_memory_bytes gauge\nstrand_request_memory_bytes {}",
            broker.request_memory.in_use()
        );
        let _ = writeln!(
            out,
            "# HELP strand_connections_open Client connections open now.\n\
             # TYPE strand_connections_open gauge\nstrand_connections_open {}",
            self.connections_open.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP strand_partition_replicas Partition replicas on this node.\n\
             # TYPE strand_partition_replicas gauge\nstrand_partition_replicas {}",
            broker.node.partition_count()
        );
        let _ = writeln!(
            out,
            "# HELP strand_requests_total Requests received, by Kafka API.\n\
             # TYPE strand_requests_total counter"
        );
        for api in ApiKey::iter() {
            let n = self
                .requests
                .get(api as usize)
                .map_or(0, |c| c.load(Relaxed));
            if n > 0 {
                let _ = writeln!(out, "strand_requests_total{{api=\"{api:?}\"}} {n}");
            }
        }
        out
    }
}

/// Serves `GET /metrics` (any other path gets 404) until the process exits.
pub async fn serve(broker: Arc<Broker>, listener: TcpListener) {
    loop {
        let Ok((mut socket, _)) = listener.accept().await else {
            continue;
        };
        let broker = broker.clone();
        tokio::spawn(async move {
            let mut request = vec![0u8; 4096];
            let n = match socket.read(&mut request).await {
                Ok(n) => n,
                Err(_) => return,
            };
            let head = String::from_utf8_lossy(&request[..n]);
            let response = if head.starts_with("GET /metrics") {
                let body = broker.metrics.render(&broker);
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into()
            };
            let _ = socket.write_all(response.as_bytes()).await;
        });
    }
}
