"""Replay from the earliest or latest offset, from any offset, or from a point in time."""

import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec
from kafka import KafkaConsumer
from kafka import TopicPartition as KpTopicPartition

from clients import consume_confluent, create_topic

# An hour ago: well inside the default retention (7 days), which would delete older records.
BASE = (int(time.time()) - 3600) * 1000


def produce_with_timestamps(bootstrap, topic, stamps):
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "acks": "all"})
    for i, ts in enumerate(stamps):
        p.produce(topic, value=f"t{i}".encode(), timestamp=ts)
    assert p.flush(30) == 0


def first_offset_at_or_after(stamps, t):
    return next((i for i, ts in enumerate(stamps) if ts >= t), -1)


def timeline():
    """1,000 records ten milliseconds apart, with one far-future stamp (the maximum) and a
    few that go backwards, so the answer is not simply proportional to the time."""
    stamps = [BASE + i * 10 for i in range(1000)]
    stamps[500] = BASE + 10_000_000
    for i in (600, 601, 602):
        stamps[i] = BASE + 100
    return stamps


def test_offsets_for_times_earliest_latest_and_max(broker):
    topic = "timeline"
    # The far-future stamp is beyond Kafka 4's default of one hour ahead.
    create_topic(broker.bootstrap, topic, **{"message.timestamp.after.max.ms": str(86_400_000)})
    stamps = timeline()
    produce_with_timestamps(broker.bootstrap, topic, stamps)
    targets = [BASE - 1, BASE, BASE + 55, BASE + 4_999, BASE + 5_005, BASE + 9_990,
               BASE + 9_991, BASE + 10_000_000, BASE + 10_000_001]

    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "times"})
    low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    assert (low, high) == (0, 1000)
    for t in targets:
        # librdkafka keeps one entry per partition, so ask one timestamp at a time.
        [tp] = c.offsets_for_times([TopicPartition(topic, 0, t)], timeout=10)
        assert tp.error is None
        assert tp.offset == first_offset_at_or_after(stamps, t), f"timestamp {t}"
    c.close()

    kp = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None)
    tp = KpTopicPartition(topic, 0)
    for t in targets:
        answer = kp.offsets_for_times({tp: t})[tp]
        expected = first_offset_at_or_after(stamps, t)
        if expected == -1:
            assert answer is None, f"timestamp {t}"
        else:
            assert (answer.offset, answer.timestamp) == (expected, stamps[expected]), t
    assert kp.beginning_offsets([tp])[tp] == 0
    assert kp.end_offsets([tp])[tp] == 1000
    kp.close()

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    tp = TopicPartition(topic, 0)
    for spec, expected in [
        (OffsetSpec.max_timestamp(), (500, BASE + 10_000_000)),
        (OffsetSpec.earliest(), (0, None)),
        (OffsetSpec.latest(), (1000, None)),
    ]:
        info = admin.list_offsets({tp: spec})[tp].result(10)
        assert info.offset == expected[0]
        if expected[1] is not None:
            assert info.timestamp == expected[1]


def test_consuming_from_any_offset(broker):
    topic = "replay"
    create_topic(broker.bootstrap, topic)
    produce_with_timestamps(broker.bootstrap, topic, [BASE + i for i in range(300)])
    for start in (0, 1, 150, 299):
        records = consume_confluent(broker.bootstrap, topic, [0], 300 - start, start=start)
        assert [r[1] for r in records] == list(range(start, 300))
        assert records[0][3] == f"t{start}".encode()
