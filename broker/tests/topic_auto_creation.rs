//! Metadata and Produce create unknown topics with the default partition count, unless
//! auto-creation is off: then the topic stays unknown to both.

mod common;

use common::{metadata_at, produce, record_batch, topic_entry, Node};
use kafka_protocol::records::Compression;

const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;

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
