//! Every Kafka API the broker implements, at every version it advertises, against a real
//! `strand` process, with responses decoded by the Kafka crate's client-side decoder. Also
//! the APIs it answers with UNSUPPORTED_VERSION, at every version the codec knows. A
//! response that cannot be encoded at some version shows up here as a closed connection.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use strand_protocol::api_versions::supported_range;

struct Node {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Node {
    fn start() -> Node {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_strand"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--raft-listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--metrics-listen", "off"])
            .arg("--data-dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start strand");
        let node = Node {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(mut c) = node.try_connect() {
                if c.try_call(
                    ApiKey::Metadata,
                    1,
                    &RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![]))),
                )
                .is_ok()
                {
                    return node;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("strand did not start");
    }

    fn try_connect(&self) -> std::io::Result<Client> {
        let stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Client {
            stream,
            correlation: 0,
        })
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Client {
    stream: TcpStream,
    correlation: i32,
}

impl Client {
    fn try_call(
        &mut self,
        key: ApiKey,
        version: i16,
        body: &RequestKind,
    ) -> std::io::Result<ResponseKind> {
        self.correlation += 1;
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("version-sweep")))
            .encode(&mut buf, key.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version)
            .unwrap_or_else(|e| panic!("test bug: cannot encode {key:?} v{version}: {e}"));
        let mut frame = (buf.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&buf);
        self.stream.write_all(&frame)?;
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size)?;
        let mut payload = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut payload)?;
        let mut payload = Bytes::from(payload);
        let header =
            ResponseHeader::decode(&mut payload, key.response_header_version(version)).unwrap();
        assert_eq!(header.correlation_id, self.correlation);
        Ok(ResponseKind::decode(key, &mut payload, version)
            .unwrap_or_else(|e| panic!("cannot decode {key:?} v{version} response: {e}")))
    }

    /// Like `call`, but `None` when the Kafka crate's request encoder cannot produce this
    /// version (its encoders trail its decoders for a few group APIs).
    fn call_if_encodable(
        &mut self,
        key: ApiKey,
        version: i16,
        body: RequestKind,
    ) -> Option<ResponseKind> {
        let mut scratch = BytesMut::new();
        body.encode(&mut scratch, version).ok()?;
        Some(self.call(key, version, body))
    }

    fn call(&mut self, key: ApiKey, version: i16, body: RequestKind) -> ResponseKind {
        self.try_call(key, version, &body).unwrap_or_else(|e| {
            panic!("{key:?} v{version}: connection failed ({e}); the broker could not answer")
        })
    }
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn versions(key: ApiKey) -> std::ops::RangeInclusive<i16> {
    let r = supported_range(key).unwrap();
    // Produce v0-v2 is advertised for librdkafka's sake but refused (see api_versions).
    let min = if key == ApiKey::Produce { 3 } else { r.min };
    min..=r.max
}

fn batch(value: &str) -> Bytes {
    let record = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        sequence: -1,
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

#[test]
fn every_implemented_api_answers_at_every_advertised_version() {
    let node = Node::start();
    let mut c = node.try_connect().unwrap();

    for v in versions(ApiKey::ApiVersions) {
        let mut req = ApiVersionsRequest::default();
        if v >= 3 {
            req = req
                .with_client_software_name(StrBytes::from_static_str("sweep"))
                .with_client_software_version(StrBytes::from_static_str("1"));
        }
        let ResponseKind::ApiVersions(r) =
            c.call(ApiKey::ApiVersions, v, RequestKind::ApiVersions(req))
        else {
            unreachable!()
        };
        assert_eq!(r.error_code, 0, "ApiVersions v{v}");
    }

    for v in versions(ApiKey::Metadata) {
        let mut req = MetadataRequest::default().with_topics(Some(vec![
            metadata_request::MetadataRequestTopic::default().with_name(Some(name("sweep"))),
        ]));
        if v >= 4 {
            req = req.with_allow_auto_topic_creation(true);
        }
        let ResponseKind::Metadata(r) = c.call(ApiKey::Metadata, v, RequestKind::Metadata(req))
        else {
            unreachable!()
        };
        assert_eq!(r.topics.len(), 1, "Metadata v{v}");
        assert_eq!(r.topics[0].error_code, 0, "Metadata v{v}");
        assert_eq!(r.topics[0].partitions[0].leader_id.0, 1, "Metadata v{v}");
        if v >= 1 {
            assert_eq!(r.controller_id.0, 1, "Metadata v{v}");
        }
    }

    let mut expected_offset = 0;
    for v in versions(ApiKey::Produce) {
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![produce_request::TopicProduceData::default()
                .with_name(name("sweep"))
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(batch(&format!("produce v{v}")))),
                ])]);
        let ResponseKind::Produce(r) = c.call(ApiKey::Produce, v, RequestKind::Produce(req)) else {
            unreachable!()
        };
        let p = &r.responses[0].partition_responses[0];
        assert_eq!(
            (p.error_code, p.base_offset),
            (0, expected_offset),
            "Produce v{v}"
        );
        expected_offset += 1;
    }

    for v in versions(ApiKey::Fetch) {
        let req = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_min_bytes(0)
            .with_max_bytes(1 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![fetch_request::FetchTopic::default()
                .with_topic(name("sweep"))
                .with_partitions(vec![fetch_request::FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(3)
                    .with_partition_max_bytes(1 << 20)])]);
        let ResponseKind::Fetch(r) = c.call(ApiKey::Fetch, v, RequestKind::Fetch(req)) else {
            unreachable!()
        };
        let p = &r.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "Fetch v{v}");
        assert_eq!(p.high_watermark, expected_offset, "Fetch v{v}");
        let records = p.records.clone().unwrap_or_default();
        assert!(!records.is_empty(), "Fetch v{v} returned no records");
        assert_eq!(
            i64::from_be_bytes(records[..8].try_into().unwrap()),
            3,
            "Fetch v{v} starts at the requested batch"
        );
    }

    for v in versions(ApiKey::ListOffsets) {
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                .with_name(name("sweep"))
                .with_partitions(vec![
                    list_offsets_request::ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(-1),
                ])]);
        let ResponseKind::ListOffsets(r) =
            c.call(ApiKey::ListOffsets, v, RequestKind::ListOffsets(req))
        else {
            unreachable!()
        };
        let p = &r.topics[0].partitions[0];
        assert_eq!(
            (p.error_code, p.offset),
            (0, expected_offset),
            "ListOffsets v{v}"
        );
    }

    for v in versions(ApiKey::CreateTopics) {
        let req = CreateTopicsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![create_topics_request::CreatableTopic::default()
                .with_name(name(&format!("created-v{v}")))
                .with_num_partitions(2)
                .with_replication_factor(1)]);
        let ResponseKind::CreateTopics(r) =
            c.call(ApiKey::CreateTopics, v, RequestKind::CreateTopics(req))
        else {
            unreachable!()
        };
        assert_eq!(
            r.topics[0].error_code, 0,
            "CreateTopics v{v}: {:?}",
            r.topics[0].error_message
        );
    }

    for v in versions(ApiKey::DeleteTopics) {
        // DeleteTopics v1..=v6 removes what CreateTopics v2..=v7 made.
        let topic = name(&format!("created-v{}", v + 1));
        let req = if v >= 6 {
            DeleteTopicsRequest::default().with_topics(vec![
                delete_topics_request::DeleteTopicState::default().with_name(Some(topic)),
            ])
        } else {
            DeleteTopicsRequest::default().with_topic_names(vec![topic])
        }
        .with_timeout_ms(10_000);
        let ResponseKind::DeleteTopics(r) =
            c.call(ApiKey::DeleteTopics, v, RequestKind::DeleteTopics(req))
        else {
            unreachable!()
        };
        assert_eq!(r.responses[0].error_code, 0, "DeleteTopics v{v}");
    }
}

#[test]
fn unimplemented_group_and_producer_apis_say_unsupported_at_every_version() {
    let node = Node::start();
    let mut c = node.try_connect().unwrap();
    let group = || GroupId(StrBytes::from_static_str("g"));
    let unsupported = 35;
    let all = |key: ApiKey| key.valid_versions().min..=key.valid_versions().max;

    for v in all(ApiKey::FindCoordinator) {
        let req = if v >= 4 {
            FindCoordinatorRequest::default()
                .with_coordinator_keys(vec![StrBytes::from_static_str("g")])
        } else {
            FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g"))
        };
        let Some(ResponseKind::FindCoordinator(r)) = c.call_if_encodable(
            ApiKey::FindCoordinator,
            v,
            RequestKind::FindCoordinator(req),
        ) else {
            continue;
        };
        let code = if v >= 4 {
            r.coordinators[0].error_code
        } else {
            r.error_code
        };
        assert_eq!(code, unsupported, "FindCoordinator v{v}");
    }
    for v in all(ApiKey::JoinGroup) {
        let req = JoinGroupRequest::default()
            .with_group_id(group())
            .with_session_timeout_ms(10_000)
            .with_protocol_type(StrBytes::from_static_str("consumer"));
        let Some(ResponseKind::JoinGroup(r)) =
            c.call_if_encodable(ApiKey::JoinGroup, v, RequestKind::JoinGroup(req))
        else {
            continue;
        };
        assert_eq!(r.error_code, unsupported, "JoinGroup v{v}");
    }
    for v in all(ApiKey::SyncGroup) {
        let Some(ResponseKind::SyncGroup(r)) = c.call_if_encodable(
            ApiKey::SyncGroup,
            v,
            RequestKind::SyncGroup(SyncGroupRequest::default().with_group_id(group())),
        ) else {
            continue;
        };
        assert_eq!(r.error_code, unsupported, "SyncGroup v{v}");
    }
    for v in all(ApiKey::Heartbeat) {
        let Some(ResponseKind::Heartbeat(r)) = c.call_if_encodable(
            ApiKey::Heartbeat,
            v,
            RequestKind::Heartbeat(HeartbeatRequest::default().with_group_id(group())),
        ) else {
            continue;
        };
        assert_eq!(r.error_code, unsupported, "Heartbeat v{v}");
    }
    for v in all(ApiKey::LeaveGroup) {
        let req = if v >= 3 {
            LeaveGroupRequest::default()
                .with_group_id(group())
                .with_members(vec![leave_group_request::MemberIdentity::default()])
        } else {
            LeaveGroupRequest::default().with_group_id(group())
        };
        let Some(ResponseKind::LeaveGroup(r)) =
            c.call_if_encodable(ApiKey::LeaveGroup, v, RequestKind::LeaveGroup(req))
        else {
            continue;
        };
        assert_eq!(r.error_code, unsupported, "LeaveGroup v{v}");
    }
    // The crate's request encoder stops at OffsetCommit v9 (v10 names topics by id).
    for v in 2..=9 {
        let topic = offset_commit_request::OffsetCommitRequestTopic::default().with_name(name("t"));
        let req = OffsetCommitRequest::default()
            .with_group_id(group())
            .with_topics(vec![topic.with_partitions(vec![
                offset_commit_request::OffsetCommitRequestPartition::default(),
            ])]);
        let Some(ResponseKind::OffsetCommit(r)) =
            c.call_if_encodable(ApiKey::OffsetCommit, v, RequestKind::OffsetCommit(req))
        else {
            continue;
        };
        assert_eq!(
            r.topics[0].partitions[0].error_code, unsupported,
            "OffsetCommit v{v}"
        );
    }
    for v in all(ApiKey::OffsetFetch) {
        let req = if v >= 8 {
            OffsetFetchRequest::default().with_groups(vec![
                offset_fetch_request::OffsetFetchRequestGroup::default().with_group_id(group()),
            ])
        } else {
            OffsetFetchRequest::default()
                .with_group_id(group())
                .with_topics(Some(vec![
                    offset_fetch_request::OffsetFetchRequestTopic::default()
                        .with_name(name("t"))
                        .with_partition_indexes(vec![0]),
                ]))
        };
        let Some(ResponseKind::OffsetFetch(r)) =
            c.call_if_encodable(ApiKey::OffsetFetch, v, RequestKind::OffsetFetch(req))
        else {
            continue;
        };
        let code = match v {
            8.. => r.groups[0].error_code,
            2.. => r.error_code,
            _ => r.topics[0].partitions[0].error_code,
        };
        assert_eq!(code, unsupported, "OffsetFetch v{v}");
    }
    for v in all(ApiKey::DescribeGroups) {
        let Some(ResponseKind::DescribeGroups(r)) = c.call_if_encodable(
            ApiKey::DescribeGroups,
            v,
            RequestKind::DescribeGroups(
                DescribeGroupsRequest::default().with_groups(vec![group()]),
            ),
        ) else {
            continue;
        };
        assert_eq!(r.groups[0].error_code, unsupported, "DescribeGroups v{v}");
    }
    for v in all(ApiKey::ListGroups) {
        let Some(ResponseKind::ListGroups(r)) = c.call_if_encodable(
            ApiKey::ListGroups,
            v,
            RequestKind::ListGroups(ListGroupsRequest::default()),
        ) else {
            continue;
        };
        assert_eq!(r.error_code, unsupported, "ListGroups v{v}");
    }
    for v in all(ApiKey::DeleteGroups) {
        let Some(ResponseKind::DeleteGroups(r)) = c.call_if_encodable(
            ApiKey::DeleteGroups,
            v,
            RequestKind::DeleteGroups(
                DeleteGroupsRequest::default().with_groups_names(vec![group()]),
            ),
        ) else {
            continue;
        };
        assert_eq!(r.results[0].error_code, unsupported, "DeleteGroups v{v}");
    }
    for v in all(ApiKey::InitProducerId) {
        let Some(ResponseKind::InitProducerId(r)) = c.call_if_encodable(
            ApiKey::InitProducerId,
            v,
            RequestKind::InitProducerId(
                InitProducerIdRequest::default().with_transaction_timeout_ms(60_000),
            ),
        ) else {
            continue;
        };
        assert_eq!(r.error_code, unsupported, "InitProducerId v{v}");
    }
}
