//! Every Kafka API the broker implements, at every version it advertises, against a real
//! `strand` process, with responses decoded by the Kafka crate's client-side decoder: one
//! test per API, named `<api>_answers_at_every_advertised_version`, so that one failure does
//! not hide the rest. A response that cannot be encoded at some version shows up here as a
//! closed connection. `every_supported_api_has_a_version_test` fails when an API is added to
//! the broker's table without its test here.

mod common;

use common::{batch, name, Client, Node};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use strand_broker::handlers::SUPPORTED_APIS;
use strand_protocol::api_versions;
use uuid::Uuid;

/// The versions a request can be sent at: every advertised one, except that Produce v0-v2
/// is advertised for librdkafka's sake but refused (see `handlers::produce::VERSIONS`).
fn versions(key: ApiKey) -> std::ops::RangeInclusive<i16> {
    let r = api_versions::find(SUPPORTED_APIS, key).expect("advertised");
    let min = if key == ApiKey::Produce { 3 } else { r.min };
    min..=r.max
}

/// Every advertised version; the group tests skip those the crate cannot encode.
fn all(key: ApiKey) -> std::ops::RangeInclusive<i16> {
    let r = api_versions::find(SUPPORTED_APIS, key).expect("advertised");
    r.min..=r.max
}

fn start() -> (Node, Client) {
    let node = Node::start();
    let c = node.try_connect().unwrap();
    (node, c)
}

/// Produces `n` one-record batches to partition 0 of topic "sweep" (created on first use)
/// and returns the high watermark.
fn fill_sweep(c: &mut Client, n: i64) -> i64 {
    for i in 0..n {
        let req = common::produce_request("sweep", batch(&format!("record {i}")));
        let ResponseKind::Produce(r) = c.call(ApiKey::Produce, 9, req) else {
            unreachable!()
        };
        let p = &r.responses[0].partition_responses[0];
        assert_eq!((p.error_code, p.base_offset), (0, i), "setup produce");
    }
    n
}

/// The topics DeleteTopics v1..=v6 removes, one per version, named as CreateTopics'
/// test names them.
fn create_topics_for_deletion(c: &mut Client) {
    for v in versions(ApiKey::DeleteTopics) {
        let req = CreateTopicsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![create_topics_request::CreatableTopic::default()
                .with_name(name(&format!("created-v{}", v + 1)))
                .with_num_partitions(2)
                .with_replication_factor(1)]);
        let ResponseKind::CreateTopics(r) =
            c.call(ApiKey::CreateTopics, 7, RequestKind::CreateTopics(req))
        else {
            unreachable!()
        };
        assert_eq!(r.topics[0].error_code, 0, "setup CreateTopics");
    }
}

const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const INVALID_TOPIC_EXCEPTION: i16 = 17;
const UNSUPPORTED_VERSION: i16 = 35;
const INVALID_CONFIG: i16 = 40;
const INVALID_REQUEST: i16 = 42;
const GROUP_ID_NOT_FOUND: i16 = 69;
const UNKNOWN_TOPIC_ID: i16 = 100;

fn group() -> GroupId {
    GroupId(StrBytes::from_static_str("g"))
}

#[test]
fn every_supported_api_has_a_version_test() {
    let source = include_str!("protocol_versions.rs");
    let missing: Vec<String> = SUPPORTED_APIS
        .iter()
        .map(|r| snake_case(&format!("{:?}", r.key)))
        .filter(|api| !source.contains(&format!("fn {api}_answers_at_every_advertised_version()")))
        .collect();
    assert!(
        missing.is_empty(),
        "advertised APIs without a test here: {missing:?}"
    );
}

fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, ch) in name.chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_lowercase());
    }
    out
}

#[test]
fn api_versions_answers_at_every_advertised_version() {
    let (_node, mut c) = start();
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
}

#[test]
fn metadata_answers_at_every_advertised_version() {
    let (_node, mut c) = start();
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
}

#[test]
fn produce_answers_at_every_advertised_version() {
    let (_node, mut c) = start();
    for (expected_offset, v) in (0i64..).zip(versions(ApiKey::Produce)) {
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![named_as(&mut c, v, "sweep").with_partition_data(
                vec![produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(batch(&format!("produce v{v}"))))],
            )]);
        let ResponseKind::Produce(r) = c.call(ApiKey::Produce, v, RequestKind::Produce(req)) else {
            unreachable!()
        };
        let p = &r.responses[0].partition_responses[0];
        assert_eq!(
            (p.error_code, p.base_offset),
            (0, expected_offset),
            "Produce v{v}"
        );
    }
    // Topics are named by id from v13 (KIP-516): an unknown id is refused as such.
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_topic_id(Uuid::from_u128(7))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(batch("lost"))),
            ])]);
    let ResponseKind::Produce(r) = c.call(ApiKey::Produce, 13, RequestKind::Produce(req)) else {
        unreachable!()
    };
    assert_eq!(r.responses[0].topic_id, Uuid::from_u128(7));
    let error = r.responses[0].partition_responses[0].error_code;
    assert_eq!(error, UNKNOWN_TOPIC_ID);
}

/// Topic `topic` (which exists) in a Produce request at version `v`: by name up to v12,
/// by id from v13.
fn named_as(c: &mut Client, v: i16, topic: &str) -> produce_request::TopicProduceData {
    let data = produce_request::TopicProduceData::default();
    if v >= 13 {
        data.with_topic_id(topic_id(c, topic))
    } else {
        data.with_name(name(topic))
    }
}

/// `topic`'s id, from Metadata v12.
fn topic_id(c: &mut Client, topic: &str) -> Uuid {
    let r = common::metadata_at(c, 12, topic);
    assert_eq!(r.topics[0].error_code, 0, "Metadata for {topic}");
    r.topics[0].topic_id
}

#[test]
fn fetch_answers_at_every_advertised_version() {
    let (_node, mut c) = start();
    let expected_offset = fill_sweep(&mut c, 10);
    let id = topic_id(&mut c, "sweep");
    for v in versions(ApiKey::Fetch) {
        let topic = fetch_request::FetchTopic::default();
        // Topics are named by id from v13 (KIP-516).
        let topic = if v >= 13 {
            topic.with_topic_id(id)
        } else {
            topic.with_topic(name("sweep"))
        };
        let req = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_min_bytes(0)
            .with_max_bytes(1 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![topic.with_partitions(vec![
                fetch_request::FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(3)
                    .with_partition_max_bytes(1 << 20),
            ])]);
        let ResponseKind::Fetch(r) = c.call(ApiKey::Fetch, v, RequestKind::Fetch(req)) else {
            unreachable!()
        };
        if v >= 13 {
            assert_eq!(r.responses[0].topic_id, id, "Fetch v{v}");
        } else {
            assert_eq!(r.responses[0].topic, name("sweep"), "Fetch v{v}");
        }
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
    let unknown = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_session_epoch(-1)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic_id(Uuid::from_u128(7))
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_partition_max_bytes(1 << 20)])]);
    for v in [13, versions(ApiKey::Fetch).last().unwrap()] {
        let request = RequestKind::Fetch(unknown.clone());
        let ResponseKind::Fetch(r) = c.call(ApiKey::Fetch, v, request) else {
            unreachable!()
        };
        assert_eq!(r.responses[0].topic_id, Uuid::from_u128(7), "Fetch v{v}");
        let error = r.responses[0].partitions[0].error_code;
        assert_eq!(error, UNKNOWN_TOPIC_ID, "Fetch v{v}");
    }
}

#[test]
fn list_offsets_answers_at_every_advertised_version() {
    let (_node, mut c) = start();
    let end = fill_sweep(&mut c, 10);
    // Each special timestamp from the version that introduced it; unknown ones never.
    let asked: [(i64, i16, i64); 6] = [
        (-1, 0, end),
        (-2, 0, 0),
        // Every record of "sweep" has the same time: the first holds the largest.
        (-3, 7, 0),
        (-4, 8, 0),
        (-5, 9, -1),
        (-7, i16::MAX, -1),
    ];
    for v in versions(ApiKey::ListOffsets) {
        for (timestamp, first, offset) in asked {
            let req = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                    .with_name(name("sweep"))
                    .with_partitions(vec![
                        list_offsets_request::ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_timestamp(timestamp),
                    ])]);
            let ResponseKind::ListOffsets(r) =
                c.call(ApiKey::ListOffsets, v, RequestKind::ListOffsets(req))
            else {
                unreachable!()
            };
            let p = &r.topics[0].partitions[0];
            let expected = if v >= first {
                (0, offset)
            } else {
                (UNSUPPORTED_VERSION, -1)
            };
            assert_eq!(
                (p.error_code, p.offset),
                expected,
                "ListOffsets v{v} at {timestamp}"
            );
        }
    }
}

#[test]
fn create_partitions_answers_at_every_advertised_version() {
    let (_node, mut c) = start();
    assert_eq!(common::create_topic(&mut c, "grown", 1, &[]), 0, "setup");
    let mut count = 1;
    for v in versions(ApiKey::CreatePartitions) {
        let mut answer = |topic: &str, count: i32, validate_only: bool| {
            let req = CreatePartitionsRequest::default()
                .with_timeout_ms(10_000)
                .with_validate_only(validate_only)
                .with_topics(vec![
                    create_partitions_request::CreatePartitionsTopic::default()
                        .with_name(name(topic))
                        .with_count(count)
                        .with_assignments(None),
                ]);
            let ResponseKind::CreatePartitions(r) = c.call(
                ApiKey::CreatePartitions,
                v,
                RequestKind::CreatePartitions(req),
            ) else {
                unreachable!()
            };
            r.results[0].error_code
        };
        assert_eq!(
            answer("grown", count + 2, true),
            0,
            "CreatePartitions v{v}: validate only"
        );
        assert_eq!(
            answer("grown", count + 1, false),
            0,
            "CreatePartitions v{v}"
        );
        count += 1;
        assert_eq!(
            answer("grown", count, false),
            37,
            "CreatePartitions v{v}: INVALID_PARTITIONS for the current count"
        );
        assert_eq!(
            answer("never-created", 3, false),
            3,
            "CreatePartitions v{v}: UNKNOWN_TOPIC_OR_PARTITION"
        );
        let partitions = common::metadata(&mut c, "grown").topics[0].partitions.len();
        assert_eq!(
            partitions, count as usize,
            "CreatePartitions v{v}: metadata"
        );
    }
    // A topic named twice is left alone and answered once, with INVALID_REQUEST.
    let topic = |count: i32| {
        create_partitions_request::CreatePartitionsTopic::default()
            .with_name(name("grown"))
            .with_count(count)
            .with_assignments(None)
    };
    let twice = CreatePartitionsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![topic(count + 1), topic(count + 2)]);
    let ResponseKind::CreatePartitions(r) = c.call(
        ApiKey::CreatePartitions,
        3,
        RequestKind::CreatePartitions(twice),
    ) else {
        unreachable!()
    };
    let answers: Vec<i16> = r.results.iter().map(|r| r.error_code).collect();
    assert_eq!(answers, [42], "INVALID_REQUEST, once");
    let partitions = common::metadata(&mut c, "grown").topics[0].partitions.len();
    assert_eq!(partitions, count as usize, "nothing added");
}

#[test]
fn delete_records_answers_at_every_advertised_version() {
    let (_node, mut c) = start();
    let high_watermark = fill_sweep(&mut c, 10);
    for v in versions(ApiKey::DeleteRecords) {
        let mut answer = |topic: &str, offset: i64| {
            let ResponseKind::DeleteRecords(r) = c.call(
                ApiKey::DeleteRecords,
                v,
                common::delete_records_request(topic, offset),
            ) else {
                unreachable!()
            };
            let p = &r.topics[0].partitions[0];
            (p.error_code, p.low_watermark)
        };
        let start = v as i64 + 1;
        assert_eq!(answer("sweep", start), (0, start), "DeleteRecords v{v}");
        assert_eq!(
            answer("sweep", 0),
            (0, start),
            "DeleteRecords v{v}: an offset below the start changes nothing"
        );
        assert_eq!(
            answer("sweep", high_watermark + 1),
            (1, -1),
            "DeleteRecords v{v}: OFFSET_OUT_OF_RANGE above the high watermark"
        );
        assert_eq!(
            answer("never-created", 1),
            (3, -1),
            "DeleteRecords v{v}: UNKNOWN_TOPIC_OR_PARTITION"
        );
    }
}

#[test]
fn init_producer_id_answers_at_every_advertised_version() {
    let (_node, mut c) = start();
    let mut producer_ids = std::collections::HashSet::new();
    for v in versions(ApiKey::InitProducerId) {
        let req = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000);
        let ResponseKind::InitProducerId(r) =
            c.call(ApiKey::InitProducerId, v, RequestKind::InitProducerId(req))
        else {
            unreachable!()
        };
        assert_eq!(
            (r.error_code, r.producer_epoch),
            (0, 0),
            "InitProducerId v{v}"
        );
        assert!(
            producer_ids.insert(r.producer_id.0),
            "InitProducerId v{v} repeated an id"
        );
    }
}

#[test]
fn describe_producers_answers_at_every_advertised_version() {
    let (_node, mut c) = start();
    fill_sweep(&mut c, 1);
    for v in versions(ApiKey::DescribeProducers) {
        let req = DescribeProducersRequest::default().with_topics(vec![
            describe_producers_request::TopicRequest::default()
                .with_name(name("sweep"))
                .with_partition_indexes(vec![0]),
        ]);
        let ResponseKind::DescribeProducers(r) = c.call(
            ApiKey::DescribeProducers,
            v,
            RequestKind::DescribeProducers(req),
        ) else {
            unreachable!()
        };
        let p = &r.topics[0].partitions[0];
        assert_eq!(p.error_code, 0, "DescribeProducers v{v}");
        assert!(
            p.active_producers.is_empty(),
            "no idempotent producer wrote yet"
        );
    }
}

#[test]
fn offset_for_leader_epoch_answers_at_every_advertised_version() {
    let (_node, mut c) = start();
    let expected_offset = fill_sweep(&mut c, 10);
    for v in versions(ApiKey::OffsetForLeaderEpoch) {
        let req = OffsetForLeaderEpochRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![
                offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                    .with_topic(name("sweep"))
                    .with_partitions(vec![
                        offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                            .with_partition(0)
                            .with_current_leader_epoch(-1)
                            .with_leader_epoch(1),
                    ]),
            ]);
        let ResponseKind::OffsetForLeaderEpoch(r) = c.call(
            ApiKey::OffsetForLeaderEpoch,
            v,
            RequestKind::OffsetForLeaderEpoch(req),
        ) else {
            unreachable!()
        };
        let p = &r.topics[0].partitions[0];
        // A single node that started once leads in term 1 and wrote everything in it.
        assert_eq!(
            (p.error_code, p.leader_epoch, p.end_offset),
            (0, 1, expected_offset),
            "OffsetForLeaderEpoch v{v}"
        );
    }
}

#[test]
fn describe_cluster_answers_at_every_advertised_version() {
    let (node, mut c) = start();
    for v in versions(ApiKey::DescribeCluster) {
        let ResponseKind::DescribeCluster(r) = c.call(
            ApiKey::DescribeCluster,
            v,
            RequestKind::DescribeCluster(DescribeClusterRequest::default().with_endpoint_type(1)),
        ) else {
            unreachable!()
        };
        assert_eq!(
            (r.error_code, r.controller_id.0),
            (0, 1),
            "DescribeCluster v{v}"
        );
        assert_eq!(r.brokers.len(), 1, "DescribeCluster v{v}");
        assert_eq!(r.brokers[0].port, node.port as i32);
    }
}

#[test]
fn elect_leaders_answers_at_every_advertised_version() {
    let (_node, mut c) = start();
    fill_sweep(&mut c, 1);
    for v in versions(ApiKey::ElectLeaders) {
        // One node leads every partition already: a preferred election is not needed.
        let req = ElectLeadersRequest::default()
            .with_timeout_ms(5_000)
            .with_topic_partitions(Some(vec![elect_leaders_request::TopicPartitions::default(
            )
            .with_topic(name("sweep"))
            .with_partitions(vec![0, 99])]));
        let ResponseKind::ElectLeaders(r) =
            c.call(ApiKey::ElectLeaders, v, RequestKind::ElectLeaders(req))
        else {
            unreachable!()
        };
        let codes: Vec<i16> = r.replica_election_results[0]
            .partition_result
            .iter()
            .map(|p| p.error_code)
            .collect();
        assert_eq!(
            codes,
            [84, 3],
            "ElectLeaders v{v}: ELECTION_NOT_NEEDED, UNKNOWN_TOPIC"
        );
    }
}

#[test]
fn describe_configs_answers_at_every_advertised_version() {
    let (_node, mut c) = start();
    fill_sweep(&mut c, 1);
    for v in versions(ApiKey::DescribeConfigs) {
        let result = describe_topic_configs(&mut c, v, "sweep");
        assert_eq!(
            result.error_code, 0,
            "DescribeConfigs v{v}: {:?}",
            result.error_message
        );
        assert!(
            result
                .configs
                .iter()
                .any(|c| c.name.as_str() == "cleanup.policy"),
            "DescribeConfigs v{v}"
        );
    }
}

/// Every config of `topic`, by DescribeConfigs `v`.
fn describe_topic_configs(
    c: &mut Client,
    v: i16,
    topic: &str,
) -> describe_configs_response::DescribeConfigsResult {
    let req = DescribeConfigsRequest::default().with_resources(vec![
        describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_string(topic.to_string()))
            .with_configuration_keys(None),
    ]);
    let ResponseKind::DescribeConfigs(mut r) = c.call(
        ApiKey::DescribeConfigs,
        v,
        RequestKind::DescribeConfigs(req),
    ) else {
        unreachable!()
    };
    r.results.remove(0)
}

#[test]
fn incremental_alter_configs_answers_at_every_advertised_version() {
    let (_node, mut c) = start();
    fill_sweep(&mut c, 1);
    for v in versions(ApiKey::IncrementalAlterConfigs) {
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
            incremental_alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("sweep"))
                .with_configs(vec![
                    incremental_alter_configs_request::AlterableConfig::default()
                        .with_name(StrBytes::from_static_str("retention.ms"))
                        .with_config_operation(0)
                        .with_value(Some(StrBytes::from_static_str("60000"))),
                ]),
        ]);
        let ResponseKind::IncrementalAlterConfigs(r) = c.call(
            ApiKey::IncrementalAlterConfigs,
            v,
            RequestKind::IncrementalAlterConfigs(req),
        ) else {
            unreachable!()
        };
        assert_eq!(r.responses[0].error_code, 0, "IncrementalAlterConfigs v{v}");
    }
}

/// The topic configs DescribeConfigs (v4) reports as set on `topic` (source 1), by name.
fn dynamic_configs(c: &mut Client, topic: &str) -> Vec<(String, String)> {
    describe_topic_configs(c, 4, topic)
        .configs
        .iter()
        .filter(|c| c.config_source == 1)
        .map(|c| {
            (
                c.name.to_string(),
                c.value.as_deref().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn alter_configs_answers_at_every_advertised_version() {
    let (_node, mut c) = start();
    fill_sweep(&mut c, 1);
    // Resource type 2 is a topic, 4 a broker.
    let alter_resource = |c: &mut Client,
                          v: i16,
                          (resource_type, resource): (i8, &str),
                          configs: &[(&str, Option<&str>)],
                          validate_only| {
        let configs = configs
            .iter()
            .map(|(name, value)| {
                alter_configs_request::AlterableConfig::default()
                    .with_name(StrBytes::from_string(name.to_string()))
                    .with_value(value.map(|v| StrBytes::from_string(v.to_string())))
            })
            .collect();
        let req = AlterConfigsRequest::default()
            .with_validate_only(validate_only)
            .with_resources(vec![alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(StrBytes::from_string(resource.to_string()))
                .with_configs(configs)]);
        let ResponseKind::AlterConfigs(r) =
            c.call(ApiKey::AlterConfigs, v, RequestKind::AlterConfigs(req))
        else {
            unreachable!()
        };
        r.responses[0].error_code
    };
    let alter = |c: &mut Client, v, configs: &[(&str, Option<&str>)], validate_only| {
        alter_resource(c, v, (2, "sweep"), configs, validate_only)
    };
    let owned = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    for v in versions(ApiKey::AlterConfigs) {
        let both = [
            ("retention.ms", Some("60000")),
            ("segment.ms", Some("1000")),
        ];
        assert_eq!(alter(&mut c, v, &both, false), 0, "AlterConfigs v{v}");
        let one = [("retention.ms", Some("120000"))];
        assert_eq!(alter(&mut c, v, &one, true), 0, "AlterConfigs v{v}");
        assert_eq!(
            dynamic_configs(&mut c, "sweep"),
            owned(&[("retention.ms", "60000"), ("segment.ms", "1000")]),
            "AlterConfigs v{v}: validate_only changed nothing"
        );
        // A config not named goes back to its default.
        assert_eq!(alter(&mut c, v, &one, false), 0, "AlterConfigs v{v}");
        assert_eq!(
            dynamic_configs(&mut c, "sweep"),
            owned(&[("retention.ms", "120000")]),
            "AlterConfigs v{v}"
        );
        let null = [("retention.ms", None)];
        assert_eq!(alter(&mut c, v, &null, false), INVALID_REQUEST);
        let unknown = [("no.such.config", Some("1"))];
        assert_eq!(alter(&mut c, v, &unknown, false), INVALID_CONFIG);
        let twice = [("retention.ms", Some("1")), ("retention.ms", Some("2"))];
        assert_eq!(alter(&mut c, v, &twice, false), INVALID_REQUEST);
        let bad = [("retention.ms", Some("soon"))];
        assert_eq!(
            alter(&mut c, v, &bad, true),
            INVALID_CONFIG,
            "validate_only"
        );
        let absent = alter_resource(&mut c, v, (2, "absent"), &one, false);
        assert_eq!(absent, UNKNOWN_TOPIC_OR_PARTITION);
        // A broker's settings are static: only its empty set is accepted, for this node.
        assert_eq!(alter_resource(&mut c, v, (4, ""), &[], false), 0);
        assert_eq!(alter_resource(&mut c, v, (4, "1"), &[], false), 0);
        assert_eq!(
            alter_resource(&mut c, v, (4, "2"), &[], false),
            INVALID_REQUEST
        );
        let setting = [("log.retention.ms", Some("1000"))];
        assert_eq!(
            alter_resource(&mut c, v, (4, "1"), &setting, false),
            INVALID_CONFIG
        );
        assert_eq!(
            dynamic_configs(&mut c, "sweep"),
            owned(&[("retention.ms", "120000")])
        );
    }
}

#[test]
fn describe_topic_partitions_answers_at_every_advertised_version() {
    let (_node, mut c) = start();
    fill_sweep(&mut c, 1);
    assert_eq!(common::create_topic(&mut c, "pages", 5, &[]), 0);
    let ask = |c: &mut Client, v: i16, topics: &[&str], cursor: Option<(&str, i32)>, limit| {
        let req = DescribeTopicPartitionsRequest::default()
            .with_topics(
                topics
                    .iter()
                    .map(|t| {
                        describe_topic_partitions_request::TopicRequest::default()
                            .with_name(name(t))
                    })
                    .collect(),
            )
            .with_response_partition_limit(limit)
            .with_cursor(cursor.map(|(topic, partition)| {
                describe_topic_partitions_request::Cursor::default()
                    .with_topic_name(name(topic))
                    .with_partition_index(partition)
            }));
        let ResponseKind::DescribeTopicPartitions(r) = c.call(
            ApiKey::DescribeTopicPartitions,
            v,
            RequestKind::DescribeTopicPartitions(req),
        ) else {
            unreachable!()
        };
        let pages: Vec<(String, i16, Vec<i32>)> = r
            .topics
            .iter()
            .map(|t| {
                let name = t.name.as_ref().map(|n| n.to_string()).unwrap_or_default();
                let indexes = t.partitions.iter().map(|p| p.partition_index).collect();
                assert!(t.partitions.iter().all(|p| p.leader_id.0 == 1), "{name}");
                (name, t.error_code, indexes)
            })
            .collect();
        let next = r
            .next_cursor
            .map(|c| (c.topic_name.to_string(), c.partition_index));
        (pages, next)
    };
    let page =
        |name: &str, error: i16, partitions: &[i32]| (name.to_string(), error, partitions.to_vec());
    for v in versions(ApiKey::DescribeTopicPartitions) {
        // Every topic, Kafka's internal one included, in name order, three partitions to
        // a page.
        let (first, next) = ask(&mut c, v, &[], None, 3);
        assert_eq!(
            first,
            vec![
                page("__consumer_offsets", 0, &[0]),
                page("pages", 0, &[0, 1])
            ],
            "v{v}"
        );
        assert_eq!(next, Some(("pages".to_string(), 2)), "v{v}");
        let (second, next) = ask(&mut c, v, &[], Some(("pages", 2)), 3);
        assert_eq!(second, vec![page("pages", 0, &[2, 3, 4])], "v{v}");
        // A page that ends with a topic names the next one.
        assert_eq!(next, Some(("sweep".to_string(), 0)), "v{v}");
        let (last, next) = ask(&mut c, v, &[], Some(("sweep", 0)), 3);
        assert_eq!(last, vec![page("sweep", 0, &[0])], "v{v}");
        assert_eq!(next, None, "v{v}");
        // Named topics, one unknown and one that cannot exist.
        let (named, _) = ask(&mut c, v, &["sweep", "absent", "no spaces"], None, 3);
        assert_eq!(
            named,
            vec![
                page("absent", UNKNOWN_TOPIC_OR_PARTITION, &[]),
                page("no spaces", INVALID_TOPIC_EXCEPTION, &[]),
                page("sweep", 0, &[0])
            ],
            "v{v}"
        );
        let (astray, _) = ask(&mut c, v, &["sweep"], Some(("pages", 0)), 3);
        assert_eq!(astray, vec![page("sweep", INVALID_REQUEST, &[])], "v{v}");
    }
}

#[test]
fn describe_log_dirs_answers_at_every_advertised_version() {
    let (_node, mut c) = start();
    fill_sweep(&mut c, 1);
    for v in versions(ApiKey::DescribeLogDirs) {
        let ResponseKind::DescribeLogDirs(r) = c.call(
            ApiKey::DescribeLogDirs,
            v,
            RequestKind::DescribeLogDirs(DescribeLogDirsRequest::default().with_topics(None)),
        ) else {
            unreachable!()
        };
        assert_eq!(r.results.len(), 1, "DescribeLogDirs v{v}");
        assert!(
            r.results[0]
                .topics
                .iter()
                .any(|t| t.name.0.as_str() == "sweep"),
            "DescribeLogDirs v{v}"
        );
    }
}

/// Asks at `version` to move partition 0 of "sweep" to a broker that does not exist, which
/// is refused (INVALID_REPLICA_ASSIGNMENT).
fn refused_move(c: &mut Client, version: i16) {
    let req = AlterPartitionReassignmentsRequest::default().with_topics(vec![
        alter_partition_reassignments_request::ReassignableTopic::default()
            .with_name(name("sweep"))
            .with_partitions(vec![
                alter_partition_reassignments_request::ReassignablePartition::default()
                    .with_partition_index(0)
                    .with_replicas(Some(vec![BrokerId(7)])),
            ]),
    ]);
    let ResponseKind::AlterPartitionReassignments(r) = c.call(
        ApiKey::AlterPartitionReassignments,
        version,
        RequestKind::AlterPartitionReassignments(req),
    ) else {
        unreachable!()
    };
    assert_eq!(
        r.responses[0].partitions[0].error_code, 39,
        "AlterPartitionReassignments v{version}: INVALID_REPLICA_ASSIGNMENT"
    );
}

#[test]
fn alter_partition_reassignments_answers_at_every_advertised_version() {
    let (_node, mut c) = start();
    fill_sweep(&mut c, 1);
    for v in versions(ApiKey::AlterPartitionReassignments) {
        refused_move(&mut c, v);
    }
}

#[test]
fn list_partition_reassignments_answers_at_every_advertised_version() {
    let (_node, mut c) = start();
    fill_sweep(&mut c, 1);
    // A refused move leaves nothing to list.
    refused_move(&mut c, 1);
    for v in versions(ApiKey::ListPartitionReassignments) {
        let ResponseKind::ListPartitionReassignments(r) = c.call(
            ApiKey::ListPartitionReassignments,
            v,
            RequestKind::ListPartitionReassignments(ListPartitionReassignmentsRequest::default()),
        ) else {
            unreachable!()
        };
        assert_eq!(
            (r.error_code, r.topics.len()),
            (0, 0),
            "ListPartitionReassignments v{v}"
        );
    }
}

#[test]
fn unregister_broker_answers_at_every_advertised_version() {
    let (_node, mut c) = start();
    fill_sweep(&mut c, 1);
    for v in versions(ApiKey::UnregisterBroker) {
        // The only broker holds every replica: it cannot go.
        let req = UnregisterBrokerRequest::default().with_broker_id(BrokerId(1));
        let ResponseKind::UnregisterBroker(r) = c.call(
            ApiKey::UnregisterBroker,
            v,
            RequestKind::UnregisterBroker(req),
        ) else {
            unreachable!()
        };
        assert_eq!(r.error_code, 42, "UnregisterBroker v{v}: INVALID_REQUEST");
    }
}

#[test]
fn create_topics_answers_at_every_advertised_version() {
    let (_node, mut c) = start();
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
}

#[test]
fn delete_topics_answers_at_every_advertised_version() {
    let (_node, mut c) = start();
    create_topics_for_deletion(&mut c);
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
fn find_coordinator_answers_at_every_advertised_version() {
    let (_node, mut c) = start();
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
        assert_eq!(code, 0, "FindCoordinator v{v}");
    }
}

#[test]
fn join_group_answers_at_every_advertised_version() {
    let (_node, mut c) = start();
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
        // No protocols: nothing the group could agree on.
        assert_eq!(r.error_code, 23, "JoinGroup v{v}");
    }
}

#[test]
fn sync_group_answers_at_every_advertised_version() {
    let (_node, mut c) = start();
    for v in all(ApiKey::SyncGroup) {
        let Some(ResponseKind::SyncGroup(r)) = c.call_if_encodable(
            ApiKey::SyncGroup,
            v,
            RequestKind::SyncGroup(SyncGroupRequest::default().with_group_id(group())),
        ) else {
            continue;
        };
        assert_eq!(r.error_code, 25, "SyncGroup v{v}");
    }
}

#[test]
fn heartbeat_answers_at_every_advertised_version() {
    let (_node, mut c) = start();
    for v in all(ApiKey::Heartbeat) {
        let Some(ResponseKind::Heartbeat(r)) = c.call_if_encodable(
            ApiKey::Heartbeat,
            v,
            RequestKind::Heartbeat(HeartbeatRequest::default().with_group_id(group())),
        ) else {
            continue;
        };
        assert_eq!(r.error_code, 25, "Heartbeat v{v}");
    }
}

#[test]
fn leave_group_answers_at_every_advertised_version() {
    let (_node, mut c) = start();
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
        let code = if v >= 3 {
            r.members[0].error_code
        } else {
            r.error_code
        };
        assert_eq!(code, 25, "LeaveGroup v{v}");
    }
}

#[test]
fn offset_commit_answers_at_every_advertised_version() {
    let (_node, mut c) = start();
    for v in all(ApiKey::OffsetCommit) {
        let topic = offset_commit_request::OffsetCommitRequestTopic::default().with_name(name("t"));
        let req = OffsetCommitRequest::default()
            .with_group_id(group())
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![topic.with_partitions(vec![
                offset_commit_request::OffsetCommitRequestPartition::default(),
            ])]);
        let Some(ResponseKind::OffsetCommit(r)) =
            c.call_if_encodable(ApiKey::OffsetCommit, v, RequestKind::OffsetCommit(req))
        else {
            continue;
        };
        // The topic does not exist.
        assert_eq!(r.topics[0].partitions[0].error_code, 3, "OffsetCommit v{v}");
    }
}

#[test]
fn offset_fetch_answers_at_every_advertised_version() {
    let (_node, mut c) = start();
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
        assert_eq!(code, 0, "OffsetFetch v{v}");
    }
}

#[test]
fn describe_groups_answers_at_every_advertised_version() {
    let (_node, mut c) = start();
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
        // From v6 an unknown group is an error with a message (KIP-1043).
        let described = &r.groups[0];
        let expected = if v >= 6 { GROUP_ID_NOT_FOUND } else { 0 };
        assert_eq!(
            (described.error_code, described.group_state.as_str()),
            (expected, "Dead"),
            "DescribeGroups v{v}"
        );
        if v >= 6 {
            assert!(described.error_message.is_some(), "DescribeGroups v{v}");
        }
    }
}

#[test]
fn list_groups_answers_at_every_advertised_version() {
    let (_node, mut c) = start();
    for v in all(ApiKey::ListGroups) {
        let Some(ResponseKind::ListGroups(r)) = c.call_if_encodable(
            ApiKey::ListGroups,
            v,
            RequestKind::ListGroups(ListGroupsRequest::default()),
        ) else {
            continue;
        };
        assert_eq!(r.error_code, 0, "ListGroups v{v}");
    }
}

#[test]
fn delete_groups_answers_at_every_advertised_version() {
    let (_node, mut c) = start();
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
        assert_eq!(
            r.results[0].error_code, GROUP_ID_NOT_FOUND,
            "DeleteGroups v{v}"
        );
    }
}

#[test]
fn offset_delete_answers_at_every_advertised_version() {
    let (_node, mut c) = start();
    fill_sweep(&mut c, 1);
    for v in all(ApiKey::OffsetDelete) {
        // A standalone commit (no generation) makes the group known by its offsets alone.
        let commit = OffsetCommitRequest::default()
            .with_group_id(group())
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(name("sweep"))
                    .with_partitions(vec![
                        offset_commit_request::OffsetCommitRequestPartition::default()
                            .with_committed_offset(1),
                    ]),
            ]);
        let ResponseKind::OffsetCommit(r) =
            c.call(ApiKey::OffsetCommit, 8, RequestKind::OffsetCommit(commit))
        else {
            unreachable!()
        };
        assert_eq!(r.topics[0].partitions[0].error_code, 0, "setup commit");

        let delete = |group: GroupId| {
            RequestKind::OffsetDelete(
                OffsetDeleteRequest::default()
                    .with_group_id(group)
                    .with_topics(vec![
                        offset_delete_request::OffsetDeleteRequestTopic::default()
                            .with_name(name("sweep"))
                            .with_partitions(vec![
                                offset_delete_request::OffsetDeleteRequestPartition::default()
                                    .with_partition_index(0),
                            ]),
                    ]),
            )
        };
        let ResponseKind::OffsetDelete(r) = c.call(ApiKey::OffsetDelete, v, delete(group())) else {
            unreachable!()
        };
        assert_eq!(
            (r.error_code, r.topics[0].partitions[0].error_code),
            (0, 0),
            "OffsetDelete v{v}"
        );
        let unknown = GroupId(StrBytes::from_static_str("never-seen"));
        let ResponseKind::OffsetDelete(r) = c.call(ApiKey::OffsetDelete, v, delete(unknown)) else {
            unreachable!()
        };
        assert_eq!(r.error_code, GROUP_ID_NOT_FOUND, "OffsetDelete v{v}");
    }
}
