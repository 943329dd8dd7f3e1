//! Starting a real `strand` process and talking Kafka to it, for the integration tests.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use strand_wire_client::Connection;

pub struct Node {
    pub child: Child,
    pub port: u16,
    /// Where the node serves `GET /metrics`.
    metrics_port: u16,
    id: i32,
    _dir: tempfile::TempDir,
}

/// A port that is free now, below the kernel's ephemeral range (32768 and up by default),
/// so no outgoing connection can take it before the node binds it.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let seed = (std::process::id() as u16) % 8000;
    loop {
        let port = 20_000 + (seed + NEXT.fetch_add(1, Ordering::Relaxed)) % 12_000;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl Node {
    pub fn start() -> Node {
        Node::spawn(&[]).ready()
    }

    /// Starts one node with extra command-line flags.
    pub fn start_with(flags: &[&str]) -> Node {
        let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
        Node::spawn(&flags).ready()
    }

    /// Starts `n` nodes forming one cluster and waits until all serve.
    pub fn start_cluster(n: u64) -> Vec<Node> {
        let raft_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let initial = raft_ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}@127.0.0.1:{p}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let nodes: Vec<Node> = (0..n as usize)
            .map(|i| {
                Node::spawn(&[
                    "--node-id".into(),
                    (i + 1).to_string(),
                    "--initial-cluster".into(),
                    initial.clone(),
                    "--raft-listen".into(),
                    format!("127.0.0.1:{}", raft_ports[i]),
                ])
            })
            .collect();
        let nodes: Vec<Node> = nodes.into_iter().map(Node::ready).collect();
        // A node is ready once it has registered itself; the others' registrations may reach
        // it a moment later. Tests create topics replicated on every node at once (until
        // then such a topic is refused with a retriable LEADER_NOT_AVAILABLE), so wait.
        for node in &nodes {
            let mut c = node.try_connect().unwrap();
            wait_for("every broker registered", Duration::from_secs(30), || {
                let req = MetadataRequest::default().with_topics(Some(vec![]));
                let ResponseKind::Metadata(r) =
                    c.call(ApiKey::Metadata, 12, RequestKind::Metadata(req))
                else {
                    unreachable!()
                };
                (r.brokers.len() as u64 == n).then_some(())
            });
        }
        nodes
    }

    fn spawn(extra: &[String]) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let metrics_port = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_strand"));
        command
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
            .arg("--data-dir")
            .arg(dir.path())
            .args(extra);
        if !extra.iter().any(|a| a == "--raft-listen") {
            command.args(["--raft-listen", &format!("127.0.0.1:{}", free_port())]);
        }
        // The node's log goes to a file beside its data, printed if the test fails.
        let log = std::fs::File::create(dir.path().join("strand.log")).expect("create log");
        let child = command
            .env("RUST_LOG", "info,openraft=warn")
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .expect("start strand");
        let id = extra
            .iter()
            .position(|a| a == "--node-id")
            .and_then(|i| extra.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        Node {
            child,
            port,
            metrics_port,
            id,
            _dir: dir,
        }
    }

    /// This node's broker id.
    pub fn node_id(&self) -> i32 {
        self.id
    }

    fn ready(self) -> Node {
        let node = self;
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(mut c) = node.try_connect() {
                let metadata =
                    RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![])));
                match c.try_call(ApiKey::Metadata, 1, &metadata) {
                    Ok(_) => return node,
                    Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                        panic!("strand answered Metadata with {}", failure(&e))
                    }
                    Err(_) => {}
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("strand did not start");
    }

    /// The value of one series from the node's `GET /metrics`, named as it appears there
    /// (`strand_raft_heartbeats_total{kind="quiet"}`).
    pub fn metric(&self, series: &str) -> u64 {
        let mut stream = TcpStream::connect(("127.0.0.1", self.metrics_port)).unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in the metrics:\n{text}"))
            .trim()
            .parse()
            .unwrap()
    }

    pub fn try_connect(&self) -> std::io::Result<Client> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let conn = Connection::connect(addr, Duration::from_secs(30), "integration")?;
        Ok(Client { conn })
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self._dir.path().join("strand.log"));
            let log = log.unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!(
                "--- last lines of node {} (port {}) ---",
                self.id, self.port
            );
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// Retries `attempt` until it yields a value, failing the test after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut attempt: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = attempt() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "gave up waiting for {what} after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What a failed call says: a request the test could not encode, an answer it could not
/// decode, or a connection the broker closed.
fn failure(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::InvalidInput => format!("test bug: {e}"),
        std::io::ErrorKind::InvalidData => format!("unreadable answer: {e}"),
        _ => format!("connection failed ({e}); the broker could not answer"),
    }
}

/// A raw-protocol connection that fails the test on any error.
pub struct Client {
    conn: Connection,
}

impl Client {
    pub fn try_call(
        &mut self,
        key: ApiKey,
        version: i16,
        body: &RequestKind,
    ) -> std::io::Result<ResponseKind> {
        self.conn.call(key, version, body)
    }

    /// Like `call`, but `None` when the Kafka crate's request encoder cannot produce this
    /// version (its encoders trail its decoders for a few group APIs).
    pub fn call_if_encodable(
        &mut self,
        key: ApiKey,
        version: i16,
        body: RequestKind,
    ) -> Option<ResponseKind> {
        strand_wire_client::encodable(&body, version).then(|| self.call(key, version, body))
    }

    pub fn call(&mut self, key: ApiKey, version: i16, body: RequestKind) -> ResponseKind {
        self.try_call(key, version, &body)
            .unwrap_or_else(|e| panic!("{key:?} v{version}: {}", failure(&e)))
    }

    /// Sends a request without waiting for its answer (pipelining).
    pub fn send(&mut self, key: ApiKey, version: i16, body: &RequestKind) {
        self.conn
            .send(key, version, body)
            .unwrap_or_else(|e| panic!("{key:?} v{version}: {}", failure(&e)));
    }

    /// Reads the next answer (of a request sent with `send`).
    pub fn receive(&mut self, key: ApiKey, version: i16) -> ResponseKind {
        self.conn
            .receive(key, version)
            .unwrap_or_else(|e| panic!("{key:?} v{version}: {}", failure(&e)))
            .1
    }

    /// The raw socket, for bytes no encoder would write.
    pub fn stream(&mut self) -> &mut TcpStream {
        self.conn.stream()
    }
}

pub fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// A v2 record batch of one record, optionally from an idempotent producer
/// (`(producer id, epoch, sequence)`).
pub fn batch_from(value: &str, producer: Option<(i64, i16, i32)>) -> Bytes {
    let (producer_id, producer_epoch, sequence) = producer.unwrap_or((-1, -1, -1));
    let record = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id,
        producer_epoch,
        sequence,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        timestamp: 1_700_000_000_000,
        key: None,
        value: Some(Bytes::from(value.to_string())),
        headers: IndexMap::new(),
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        [&record],
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.freeze()
}

pub fn batch(value: &str) -> Bytes {
    batch_from(value, None)
}

impl Node {
    /// The process's resident memory, from /proc.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        kb * 1024
    }
}

/// Metadata (v12) of one topic, creating it if it does not exist.
pub fn metadata(c: &mut Client, topic: &str) -> MetadataResponse {
    let req = MetadataRequest::default()
        .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
        )
        .with_name(Some(name(topic)))]))
        .with_allow_auto_topic_creation(true);
    let ResponseKind::Metadata(r) = c.call(ApiKey::Metadata, 12, RequestKind::Metadata(req)) else {
        unreachable!()
    };
    r
}

/// A Produce request (v9) of one batch to partition 0 of `topic`.
pub fn produce_request(topic: &str, records: Bytes) -> RequestKind {
    RequestKind::Produce(
        ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![produce_request::TopicProduceData::default()
                .with_name(name(topic))
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(records)),
                ])]),
    )
}
