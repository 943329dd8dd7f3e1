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

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("process status").is_none()
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
        Client::connect_to(self.port)
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
    /// A connection to the node serving Kafka on local `port`.
    pub fn connect_to(port: u16) -> std::io::Result<Client> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let conn = Connection::connect(addr, Duration::from_secs(30), "integration")?;
        Ok(Client { conn })
    }

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
        self.try_send(key, version, body)
            .unwrap_or_else(|e| panic!("{key:?} v{version}: {}", failure(&e)));
    }

    pub fn try_send(
        &mut self,
        key: ApiKey,
        version: i16,
        body: &RequestKind,
    ) -> std::io::Result<()> {
        self.conn.send(key, version, body)
    }

    pub fn try_receive(&mut self, key: ApiKey, version: i16) -> std::io::Result<ResponseKind> {
        self.conn.receive(key, version).map(|(_, r)| r)
    }

    /// Reads the next answer (of a request sent with `send`).
    pub fn receive(&mut self, key: ApiKey, version: i16) -> ResponseKind {
        self.receive_with_correlation(key, version).1
    }

    /// Reads the next answer with the correlation id it carries.
    pub fn receive_with_correlation(&mut self, key: ApiKey, version: i16) -> (i32, ResponseKind) {
        self.conn
            .receive(key, version)
            .unwrap_or_else(|e| panic!("{key:?} v{version}: {}", failure(&e)))
    }

    /// The raw socket, for bytes no encoder would write.
    pub fn stream(&mut self) -> &mut TcpStream {
        self.conn.stream()
    }

    /// Writes `bytes` as they are, framed or not.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream()
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("writing raw bytes: {e}"));
    }

    /// Whether the broker closes this connection within `wait` (reading nothing from it).
    pub fn is_closed_by_peer(&mut self, wait: Duration) -> bool {
        use std::io::ErrorKind::{ConnectionReset, TimedOut, WouldBlock};
        let stream = self.stream();
        let timeout = stream.read_timeout().unwrap();
        stream.set_read_timeout(Some(wait)).unwrap();
        let closed = match stream.read(&mut [0u8; 1]) {
            Ok(n) => n == 0,
            Err(e) if e.kind() == ConnectionReset => true,
            Err(e) if matches!(e.kind(), WouldBlock | TimedOut) => false,
            Err(e) => panic!("reading from the connection: {e}"),
        };
        stream.set_read_timeout(timeout).unwrap();
        closed
    }
}

pub fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// A v2 record batch of one record, optionally from an idempotent producer
/// (`(producer id, epoch, sequence)`).
pub fn batch_from(value: &str, producer: Option<(i64, i16, i32)>) -> Bytes {
    encode_batch(
        [(None, Bytes::from(value.to_string()))],
        Compression::None,
        producer,
    )
}

/// A v2 record batch of `records` (key, value) as a producer sends it: base offset 0,
/// timestamps rising by one from 1_700_000_000_000, compressed with `compression`,
/// optionally from an idempotent producer (`(producer id, epoch, first sequence)`).
pub fn record_batch(
    records: &[(&str, &str)],
    compression: Compression,
    producer: Option<(i64, i16, i32)>,
) -> Bytes {
    let records = records.iter().map(|(key, value)| {
        (
            Some(Bytes::from(key.to_string())),
            Bytes::from(value.to_string()),
        )
    });
    encode_batch(records, compression, producer)
}

/// [`record_batch`] of records whose key may be missing.
pub fn encode_batch(
    records: impl IntoIterator<Item = (Option<Bytes>, Bytes)>,
    compression: Compression,
    producer: Option<(i64, i16, i32)>,
) -> Bytes {
    let (producer_id, producer_epoch, base_sequence) = producer.unwrap_or((-1, -1, -1));
    let records: Vec<Record> = (0..)
        .zip(records)
        .map(|(i, (key, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch,
            // The encoder keeps records in one batch only while offset minus sequence is
            // the same; it writes the first record's sequence as the batch's.
            sequence: base_sequence.wrapping_add(i as i32),
            timestamp_type: TimestampType::Creation,
            offset: i,
            timestamp: 1_700_000_000_000 + i,
            key,
            value: Some(value),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
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
    metadata_at(c, 12, topic)
}

/// Metadata of one topic at `version`, creating it if it does not exist and the node
/// auto-creates topics (before v4 a request always asked for that).
pub fn metadata_at(c: &mut Client, version: i16, topic: &str) -> MetadataResponse {
    let req = MetadataRequest::default()
        .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
        )
        .with_name(Some(name(topic)))]))
        .with_allow_auto_topic_creation(true);
    let ResponseKind::Metadata(r) = c.call(ApiKey::Metadata, version, RequestKind::Metadata(req))
    else {
        unreachable!()
    };
    r
}

/// The entry for `topic` in a Metadata response; fails the test if there is none.
pub fn topic_entry<'a>(
    r: &'a MetadataResponse,
    topic: &str,
) -> &'a metadata_response::MetadataResponseTopic {
    r.topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
        .unwrap_or_else(|| panic!("no {topic} in the Metadata response: {r:?}"))
}

/// A Produce request (v9) of one batch to partition 0 of `topic`.
pub fn produce_request(topic: &str, records: Bytes) -> RequestKind {
    produce_to(topic, 0, records, -1)
}

/// A Produce request of one batch to one partition, with `acks`.
pub fn produce_to(topic: &str, partition: i32, records: Bytes, acks: i16) -> RequestKind {
    RequestKind::Produce(
        ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![produce_request::TopicProduceData::default()
                .with_name(name(topic))
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(records)),
                ])]),
    )
}

/// Produces one batch to one partition (Produce v7, the first to allow zstd; `acks` other
/// than 0) and returns the partition's error code and base offset.
pub fn produce(
    c: &mut Client,
    topic: &str,
    partition: i32,
    records: Bytes,
    acks: i16,
) -> (i16, i64) {
    let req = produce_to(topic, partition, records, acks);
    let ResponseKind::Produce(r) = c.call(ApiKey::Produce, 7, req) else {
        unreachable!()
    };
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// Fetches one partition from `offset` without waiting (Fetch v10, the first to allow zstd;
/// up to 1 MiB) and returns its error code, high watermark and record bytes.
pub fn fetch(c: &mut Client, topic: &str, partition: i32, offset: i64) -> (i16, i64, Bytes) {
    fetch_at(c, 10, topic, partition, offset)
}

/// [`fetch`] at Fetch `version`.
pub fn fetch_at(
    c: &mut Client,
    version: i16,
    topic: &str,
    partition: i32,
    offset: i64,
) -> (i16, i64, Bytes) {
    let req = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])]);
    let ResponseKind::Fetch(r) = c.call(ApiKey::Fetch, version, RequestKind::Fetch(req)) else {
        unreachable!()
    };
    let p = &r.responses[0].partitions[0];
    (
        p.error_code,
        p.high_watermark,
        p.records.clone().unwrap_or_default(),
    )
}

/// Creates a topic of `partitions` with one replica and `configs` (CreateTopics v2) and
/// returns the error code.
pub fn create_topic(c: &mut Client, topic: &str, partitions: i32, configs: &[(&str, &str)]) -> i16 {
    let configs = configs
        .iter()
        .map(|(key, value)| {
            create_topics_request::CreatableTopicConfig::default()
                .with_name(StrBytes::from_string(key.to_string()))
                .with_value(Some(StrBytes::from_string(value.to_string())))
        })
        .collect();
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![create_topics_request::CreatableTopic::default()
            .with_name(name(topic))
            .with_num_partitions(partitions)
            .with_replication_factor(1)
            .with_configs(configs)]);
    let ResponseKind::CreateTopics(r) =
        c.call(ApiKey::CreateTopics, 2, RequestKind::CreateTopics(req))
    else {
        unreachable!()
    };
    r.topics[0].error_code
}

/// A request frame written by hand, size prefix included: request header v1 (the
/// non-flexible one, client id "raw") and `body` as given, for requests no encoder writes.
pub fn raw_request(api_key: i16, version: i16, correlation_id: i32, body: &[u8]) -> Vec<u8> {
    let mut payload = Vec::new();
    payload.extend_from_slice(&api_key.to_be_bytes());
    payload.extend_from_slice(&version.to_be_bytes());
    payload.extend_from_slice(&correlation_id.to_be_bytes());
    payload.extend_from_slice(&kafka_string("raw"));
    payload.extend_from_slice(body);
    let mut frame = (payload.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&payload);
    frame
}

/// A Kafka STRING: its length as two bytes, then its bytes.
pub fn kafka_string(s: &str) -> Vec<u8> {
    let mut out = (s.len() as i16).to_be_bytes().to_vec();
    out.extend_from_slice(s.as_bytes());
    out
}

/// DeleteRecords of partition 0 of `topic` up to `offset`.
pub fn delete_records_request(topic: &str, offset: i64) -> RequestKind {
    RequestKind::DeleteRecords(
        DeleteRecordsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![delete_records_request::DeleteRecordsTopic::default()
                .with_name(name(topic))
                .with_partitions(vec![
                    delete_records_request::DeleteRecordsPartition::default()
                        .with_partition_index(0)
                        .with_offset(offset),
                ])]),
    )
}

/// InitProducerId v0 for an idempotent producer: error code, producer id, epoch.
pub fn init_producer_id(c: &mut Client) -> (i16, i64, i16) {
    let req = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000);
    let ResponseKind::InitProducerId(r) =
        c.call(ApiKey::InitProducerId, 0, RequestKind::InitProducerId(req))
    else {
        unreachable!()
    };
    (r.error_code, r.producer_id.0, r.producer_epoch)
}
