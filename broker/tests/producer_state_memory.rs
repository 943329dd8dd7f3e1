//! A partition's idempotent-producer state stays within its documented memory bound:
//! 100,000 producers, each writing one batch to one partition, grow the broker's resident
//! memory by well under 1 KiB per producer (README: "about 300 bytes per producer").

mod common;

use common::{batch_from, produce_request, Node};
use kafka_protocol::messages::*;

const PRODUCERS: i64 = 100_000;
const PIPELINE: usize = 500;

#[test]
fn a_hundred_thousand_producers_stay_within_the_memory_bound() {
    // The batches carry 2023's times, which producers keep until the node finalizes
    // strand.version 1 a few seconds in: with the default expiration (a day), those
    // producers would expire at the first check, a minute in, if the test ran that long.
    let node = Node::start_with(&["--producer-id-expiration-ms", "3153600000000"]);
    let mut c = node.try_connect().unwrap();
    // Warm up: create the topic and let the first allocations settle.
    let ResponseKind::Produce(r) = c.call(
        ApiKey::Produce,
        9,
        produce_request("many", batch_from("warm", None)),
    ) else {
        unreachable!()
    };
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    // The node takes only producer ids it handed out.
    let ids = producer_ids(&mut c);
    let before = node.rss_bytes();

    for chunk in ids.chunks(PIPELINE) {
        for id in chunk {
            let records = batch_from("x", Some((*id, 0, 0)));
            c.send(ApiKey::Produce, 9, &produce_request("many", records));
        }
        for id in chunk {
            let ResponseKind::Produce(r) = c.receive(ApiKey::Produce, 9) else {
                unreachable!()
            };
            let p = &r.responses[0].partition_responses[0];
            assert_eq!(p.error_code, 0, "producer {id}");
        }
    }
    let after = node.rss_bytes();
    let per_producer = after.saturating_sub(before) / PRODUCERS as u64;
    println!("resident memory {before} -> {after} bytes: {per_producer} bytes per producer");
    assert!(
        per_producer < 1024,
        "{per_producer} bytes of resident memory per producer; the documented bound is 1 KiB"
    );

    let request =
        RequestKind::DescribeProducers(DescribeProducersRequest::default().with_topics(vec![
        describe_producers_request::TopicRequest::default()
            .with_name(common::name("many"))
            .with_partition_indexes(vec![0]),
    ]));
    let ResponseKind::DescribeProducers(r) = c.call(ApiKey::DescribeProducers, 0, request) else {
        unreachable!()
    };
    assert_eq!(
        r.topics[0].partitions[0].active_producers.len(),
        PRODUCERS as usize
    );
}

/// `PRODUCERS` distinct ids from InitProducerId, asked for `PIPELINE` at a time.
fn producer_ids(c: &mut common::Client) -> Vec<i64> {
    let request = RequestKind::InitProducerId(
        InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000),
    );
    let mut ids = Vec::with_capacity(PRODUCERS as usize);
    while ids.len() < PRODUCERS as usize {
        let n = PIPELINE.min(PRODUCERS as usize - ids.len());
        for _ in 0..n {
            c.send(ApiKey::InitProducerId, 0, &request);
        }
        for _ in 0..n {
            let ResponseKind::InitProducerId(r) = c.receive(ApiKey::InitProducerId, 0) else {
                unreachable!()
            };
            assert_eq!(r.error_code, 0);
            ids.push(r.producer_id.0);
        }
    }
    ids
}
