//! The broker stores a batch as it was sent, with every codec: fetched back, only its base
//! offset and leader epoch differ.

mod common;

use common::{create_topic, fetch, produce, record_batch, Node};
use kafka_protocol::records::Compression;

#[test]
fn batches_come_back_byte_identical() {
    let node = Node::start();
    let mut c = node.try_connect().unwrap();
    for (codec, compression) in [
        ("none", Compression::None),
        ("gzip", Compression::Gzip),
        ("snappy", Compression::Snappy),
        ("lz4", Compression::Lz4),
        ("zstd", Compression::Zstd),
    ] {
        let topic = format!("raw-{codec}");
        assert_eq!(create_topic(&mut c, &topic, 1, &[]), 0, "creating {topic}");
        let first = record_batch(&[("a", "first")], compression, None);
        produce(&mut c, &topic, 0, first, -1);
        let records: Vec<(String, String)> = (0..50)
            .map(|i| (format!("k{i}"), format!("value {i} ").repeat(20)))
            .collect();
        let records: Vec<(&str, &str)> = records
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let sent = record_batch(&records, compression, None);
        let (error, base) = produce(&mut c, &topic, 0, sent.clone(), -1);
        assert_eq!((error, base), (0, 1), "{codec}: Produce");
        // Fetching from the middle of the batch returns the whole batch.
        let (error, high_watermark, fetched) = fetch(&mut c, &topic, 0, base + 25);
        assert_eq!((error, high_watermark), (0, 51), "{codec}: Fetch");
        assert_eq!(
            fetched.len(),
            sent.len(),
            "{codec}: length of what came back"
        );
        let base_offset = i64::from_be_bytes(fetched[0..8].try_into().unwrap());
        assert_eq!(base_offset, base, "{codec}: base offset");
        let leader_epoch = i32::from_be_bytes(fetched[12..16].try_into().unwrap());
        assert!(
            leader_epoch >= 1,
            "{codec}: leader epoch {leader_epoch} not stamped"
        );
        assert!(
            fetched[8..12] == sent[8..12] && fetched[16..] == sent[16..],
            "{codec}: the batch came back changed"
        );
    }
}
