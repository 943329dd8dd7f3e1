"""Producing with every codec and acks setting through every client, and reading back
exactly what was produced, in per-key order."""

import subprocess
import time
from collections import defaultdict

import pytest
from confluent_kafka import OFFSET_END
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from clients import consume_confluent, create_topic, produce_confluent

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
KEYS = 64


def keyed_messages(tag: str, count: int):
    return [
        (f"key-{i % KEYS}".encode(), f"{tag}|{i:08d}|".encode().ljust(120, b"."))
        for i in range(count)
    ]


def assert_per_key_order(records):
    """Each key lives in one partition and its sequence numbers rise with the offset."""
    by_key = defaultdict(list)
    for partition, offset, key, value, *_ in sorted(records, key=lambda r: (r[0], r[1])):
        by_key[key].append((partition, int(value.split(b"|")[1])))
    for key, seen in by_key.items():
        assert len({p for p, _ in seen}) == 1, f"{key} spread over partitions"
        sequence = [s for _, s in seen]
        assert sequence == sorted(sequence), f"{key} out of order"


@pytest.mark.parametrize("codec", CODECS)
def test_confluent_kafka_round_trip(broker, codec):
    topic = f"cf-{codec}"
    create_topic(broker.bootstrap, topic, partitions=4)
    messages = keyed_messages(codec, 20_000)
    placed = produce_confluent(
        broker.bootstrap, topic, messages, **{"compression.type": codec, "acks": "all"}
    )
    records = consume_confluent(broker.bootstrap, topic, range(4), len(messages))
    assert len(records) == len(messages)
    stored = {(p, o): (k, v) for p, o, k, v, _ in records}
    for (key, value), where in zip(messages, placed):
        assert stored[where] == (key, value), f"record at {where} differs"
    assert_per_key_order(records)


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_confluent_kafka_acks_settings(broker, acks):
    topic = f"acks-{acks}"
    create_topic(broker.bootstrap, topic, partitions=2)
    messages = keyed_messages(f"acks{acks}", 2_000)
    produce_confluent(broker.bootstrap, topic, messages, acks=acks, **{"compression.type": "lz4"})
    records = consume_confluent(broker.bootstrap, topic, range(2), len(messages))
    assert sorted(v for *_, v, _ in records) == sorted(v for _, v in messages)


@pytest.mark.parametrize("codec", [None, "gzip", "snappy", "lz4", "zstd"])
def test_kafka_python_round_trip(broker, codec):
    topic = f"kp-{codec or 'none'}"
    create_topic(broker.bootstrap, topic, partitions=3)
    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap, compression_type=codec, acks="all", linger_ms=5
    )
    messages = keyed_messages(f"kp{codec}", 3_000)
    futures = [producer.send(topic, key=k, value=v) for k, v in messages]
    producer.flush(60)
    placed = [(f.get(30).partition, f.get(30).offset) for f in futures]
    producer.close()

    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap, group_id=None, auto_offset_reset="earliest",
        enable_auto_commit=False, consumer_timeout_ms=10_000,
    )
    consumer.assign([TopicPartition(topic, p) for p in range(3)])
    consumer.seek_to_beginning()
    records = []
    for m in consumer:
        records.append((m.partition, m.offset, m.key, m.value))
        if len(records) == len(messages):
            break
    consumer.close()
    stored = {(p, o): (k, v) for p, o, k, v in records}
    assert [stored.get(w) for w in placed] == messages
    assert_per_key_order(records)


@pytest.mark.parametrize("acks", [0, 1])
def test_kafka_python_other_acks(broker, acks):
    topic = f"kp-acks-{acks}"
    create_topic(broker.bootstrap, topic)
    # Idempotence requires acks=all, so these settings turn it off.
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks=acks, enable_idempotence=False)
    for i in range(500):
        producer.send(topic, value=f"a{acks}-{i}".encode())
    producer.flush(30)
    producer.close()
    records = consume_confluent(broker.bootstrap, topic, [0], 500)
    assert sorted(r[3] for r in records) == sorted(f"a{acks}-{i}".encode() for i in range(500))


@pytest.mark.parametrize("codec", CODECS)
def test_kcat_round_trip(broker, codec):
    topic = f"kcat-{codec}"
    create_topic(broker.bootstrap, topic, partitions=2)
    lines = [f"key-{i % 16}\t{codec}|{i:06d}|kcat" for i in range(4_000)]
    subprocess.run(
        ["kcat", "-b", broker.bootstrap, "-P", "-t", topic, "-K", "\t", "-z", codec,
         "-X", "acks=all"],
        input="\n".join(lines) + "\n", text=True, check=True, timeout=60,
    )
    out = subprocess.run(
        ["kcat", "-b", broker.bootstrap, "-C", "-t", topic, "-o", "beginning", "-e",
         "-f", "%p\t%o\t%k\t%s\n"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout
    records = []
    for line in out.splitlines():
        p, o, k, v = line.split("\t")
        records.append((int(p), int(o), k.encode(), v.encode()))
    assert sorted(r[3] for r in records) == sorted(l.split("\t")[1].encode() for l in lines)
    assert_per_key_order(records)


def test_consuming_from_latest_sees_only_new_records(broker):
    topic = "from-latest"
    create_topic(broker.bootstrap, topic)
    produce_confluent(broker.bootstrap, topic, [(None, b"old")] * 10)
    from confluent_kafka import Consumer, TopicPartition as Tp

    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "latest", "enable.auto.commit": False})
    c.assign([Tp(topic, 0, OFFSET_END)])
    c.consume(1, timeout=1)  # let the consumer resolve "latest" before new data arrives
    produce_confluent(broker.bootstrap, topic, [(None, b"new")] * 5)
    got = []
    for _ in range(40):
        got += [m for m in c.consume(10, timeout=0.25) if not m.error()]
        if len(got) >= 5:
            break
    c.close()
    assert [m.value() for m in got] == [b"new"] * 5
    assert [m.offset() for m in got] == [10, 11, 12, 13, 14]


def test_a_consumer_catching_up_gets_every_record_once_in_order_partly_read_ahead(broker):
    """librdkafka catching up on a 24 MB backlog with room for two partitions per fetch:
    the node reads each next response ahead while the client parses the last one
    (--fetch-read-ahead-bytes). Whatever was read ahead, the consumer must get every record
    exactly once, at its offset, in per-key order."""
    topic = "catch-up"
    create_topic(broker.bootstrap, topic, partitions=4)
    messages = [
        (f"key-{i % KEYS}".encode(), f"catch|{i:08d}|".encode().ljust(4000, b"."))
        for i in range(6000)
    ]
    acked = produce_confluent(broker.bootstrap, topic, messages, **{"batch.size": 262144})
    served_before = broker.metric("strand_fetch_read_ahead_served_bytes_total")
    got = consume_confluent(broker.bootstrap, topic, range(4), len(messages), **{
        "max.partition.fetch.bytes": 1 << 20,
        "fetch.max.bytes": 2 << 20,
    })
    assert len(got) == len(messages), f"{len(got) - len(messages)} records more than produced"
    by_position = {(p, o): (k, v) for p, o, k, v, _ in got}
    assert len(by_position) == len(got), "a record came twice"
    for (key, value), position in zip(messages, acked):
        assert by_position[position] == (key, value), f"record at {position}"
    assert_per_key_order(got)
    served = broker.metric("strand_fetch_read_ahead_served_bytes_total") - served_before
    assert served > 0, "nothing was served from the read-ahead: the test did not exercise it"


def test_create_times_too_far_ahead_are_refused_and_a_topic_may_allow_them(broker):
    """Kafka 4's log.message.timestamp.after.max.ms (one hour): a record stamped two hours
    ahead gets INVALID_TIMESTAMP, unless its topic's message.timestamp.after.max.ms
    allows it; the records around it are stored."""
    from confluent_kafka import KafkaError, Producer

    ahead = int(time.time() * 1000) + 2 * 3_600_000
    create_topic(broker.bootstrap, "strict-times")
    create_topic(broker.bootstrap, "lenient-times", **{"message.timestamp.after.max.ms": str(3 * 3_600_000)})
    outcome = {}

    def delivered(err, msg):
        outcome[(msg.topic(), msg.value())] = err.code() if err else msg.offset()

    # One record per request (no batching), so the refused one takes nothing else with it.
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0, "max.in.flight": 1,
                  "enable.idempotence": False, "retries": 0})
    for topic in ("strict-times", "lenient-times"):
        p.produce(topic, value=b"now", on_delivery=delivered)
        p.flush(30)
        p.produce(topic, value=b"ahead", timestamp=ahead, on_delivery=delivered)
        p.flush(30)
        p.produce(topic, value=b"after", on_delivery=delivered)
        p.flush(30)
    assert outcome == {
        ("strict-times", b"now"): 0,
        ("strict-times", b"ahead"): KafkaError.INVALID_TIMESTAMP,
        ("strict-times", b"after"): 1,
        ("lenient-times", b"now"): 0,
        ("lenient-times", b"ahead"): 1,
        ("lenient-times", b"after"): 2,
    }
