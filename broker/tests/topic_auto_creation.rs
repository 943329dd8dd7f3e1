//! Metadata and Produce create unknown topics with the default partition count, unless
//! auto-creation is off: then the topic stays unknown to both. Kafka's internal
//! `__consumer_offsets` is listed but never created.

mod common;

use common::{create_topic, fetch, metadata_at, produce, record_batch, topic_entry, Node};
use kafka_protocol::messages::{ApiKey, BrokerId, MetadataRequest, RequestKind, ResponseKind};
use kafka_protocol::records::Compression;

const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const INVALID_TOPIC_EXCEPTION: i16 = 17;
const TOPIC_ALREADY_EXISTS: i16 = 36;

#[test]
fn metadata_and_produce_auto_create_with_the_default_partition_count() {
    let node = Node::start_with(&["--default-partitions", "3"]);
    let mut c = node.try_connect().unwrap();
    let r = metadata_at(&mut c, 1, "auto-by-metadata");
    let created = topic_entry(&r, "auto-by-metadata");
    assert_eq!((created.error_code, created.partitions.len()), (0, 3));
    let batch = record_batch(&[("k", "v")], Compression::None, None);
    assert_eq!(produce(&mut c, "auto-by-produce", 1, batch, -1), (0, 0));
    let r = metadata_at(&mut c, 1, "auto-by-produce");
    let created = topic_entry(&r, "auto-by-produce");
    assert_eq!((created.error_code, created.partitions.len()), (0, 3));
}

#[test]
fn without_auto_creation_unknown_topics_stay_unknown() {
    let node = Node::start_with(&["--auto-create-topics", "false"]);
    let mut c = node.try_connect().unwrap();
    let batch = record_batch(&[("k", "v")], Compression::None, None);
    assert_eq!(
        produce(&mut c, "nope", 0, batch, -1).0,
        UNKNOWN_TOPIC_OR_PARTITION
    );
    let r = metadata_at(&mut c, 1, "nope");
    assert_eq!(
        topic_entry(&r, "nope").error_code,
        UNKNOWN_TOPIC_OR_PARTITION
    );
}

/// `__consumer_offsets` is listed as Kafka lists it (internal, one partition led by the
/// group coordinator) so that clients and tools find it, but it is no topic to create,
/// write or read: the offsets live in the controller group.
#[test]
fn consumer_offsets_is_listed_as_internal_and_its_name_is_reserved() {
    let node = Node::start();
    let mut c = node.try_connect().unwrap();
    let all = MetadataRequest::default().with_topics(None);
    let ResponseKind::Metadata(r) = c.call(ApiKey::Metadata, 12, RequestKind::Metadata(all)) else {
        unreachable!()
    };
    let listed = topic_entry(&r, "__consumer_offsets");
    assert!(listed.is_internal);
    assert!(!listed.topic_id.is_nil());
    let me = BrokerId(node.node_id());
    assert_eq!(listed.partitions.len(), 1);
    assert_eq!(
        (
            listed.partitions[0].leader_id,
            &listed.partitions[0].replica_nodes
        ),
        (me, &vec![me])
    );

    assert_eq!(
        create_topic(&mut c, "__consumer_offsets", 1, &[]),
        TOPIC_ALREADY_EXISTS
    );
    let batch = record_batch(&[("k", "v")], Compression::None, None);
    assert_eq!(
        produce(&mut c, "__consumer_offsets", 0, batch, -1).0,
        INVALID_TOPIC_EXCEPTION
    );
    assert_eq!(
        fetch(&mut c, "__consumer_offsets", 0, 0).0,
        UNKNOWN_TOPIC_OR_PARTITION
    );
    // Named, it is the same entry: nothing above created a topic of that name.
    let r = metadata_at(&mut c, 12, "__consumer_offsets");
    let named = topic_entry(&r, "__consumer_offsets");
    assert_eq!(named, listed);
}
