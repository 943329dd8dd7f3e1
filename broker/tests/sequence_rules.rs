//! An idempotent producer's sequence rules over the wire: a retry gets its original offset,
//! a gap is refused, a new epoch starts again at sequence 0 and fences the old one, and
//! nothing refused or repeated is stored.

mod common;

use common::{create_topic, fetch, init_producer_id, produce, record_batch, Node};
use kafka_protocol::records::Compression;

const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
const INVALID_PRODUCER_EPOCH: i16 = 47;

#[test]
fn sequence_rules_over_the_wire() {
    let node = Node::start();
    let mut c = node.try_connect().unwrap();
    assert_eq!(create_topic(&mut c, "sequences", 1, &[]), 0);
    let (error, pid, epoch) = init_producer_id(&mut c);
    assert_eq!((error, epoch), (0, 0));
    let (_, other_pid, _) = init_producer_id(&mut c);
    assert_ne!(other_pid, pid, "producer ids are never handed out twice");

    // Two records from `pid` at `epoch`, the first with sequence `sequence`.
    let mut send = |sequence: i32, epoch: i16| {
        let values = [format!("s{sequence}"), format!("s{}", sequence + 1)];
        let records = [("k", values[0].as_str()), ("k", values[1].as_str())];
        let batch = record_batch(&records, Compression::None, Some((pid, epoch, sequence)));
        produce(&mut c, "sequences", 0, batch, -1)
    };
    assert_eq!(send(0, 0), (0, 0));
    assert_eq!(send(0, 0), (0, 0), "a retry gets the original offset");
    assert_eq!(send(2, 0), (0, 2));
    assert_eq!(send(2, 0), (0, 2));
    assert_eq!(
        send(7, 0).0,
        OUT_OF_ORDER_SEQUENCE_NUMBER,
        "a gap is refused"
    );
    assert_eq!(send(0, 1), (0, 4), "a new epoch starts again at 0");
    assert_eq!(
        send(4, 0).0,
        INVALID_PRODUCER_EPOCH,
        "the old epoch is fenced"
    );
    let (error, high_watermark, _) = fetch(&mut c, "sequences", 0, 0);
    assert_eq!(
        (error, high_watermark),
        (0, 6),
        "nothing refused or repeated was stored"
    );
}
