"""Deleting records: DeleteRecords from Kafka's tool and from an admin client, and
retention by time and size, seen through real consumers."""

import json
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   NewTopic)


def wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def create(broker, topic, **configs):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    new = NewTopic(topic, num_partitions=1, replication_factor=1,
                   config={k: str(v) for k, v in configs.items()})
    admin.create_topics([new])[topic].result(10)
    return admin


def produce(broker, topic, count, timestamp=None):
    """Produces `count` records, one batch each, and returns their offsets."""
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 0})
    offsets = []
    for i in range(count):
        extra = {"timestamp": timestamp} if timestamp is not None else {}
        p.produce(topic, value=b"v%d" % i, on_delivery=lambda err, m: offsets.append(m.offset()),
                  **extra)
        p.flush(10)
    assert len(offsets) == count
    return offsets


def watermarks(broker, topic):
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "watermarks"})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    finally:
        c.close()


def consume_all(broker, topic, group, expected):
    """Reads `expected` records with auto.offset.reset=earliest; returns their offsets."""
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        c.subscribe([topic])
        got = []
        deadline = time.monotonic() + 20
        while len(got) < expected and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                got.append(m.offset())
        return got
    finally:
        c.close()


def log_dir_size(java, broker, topic):
    """Partition 0's size as Kafka's kafka-log-dirs tool reports it (DescribeLogDirs)."""
    result = java.run("org.apache.kafka.tools.LogDirsCommand", "--bootstrap-server", broker.bootstrap,
                      "--describe", "--topic-list", topic)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("{")))
    [size] = [p["size"] for b in report["brokers"] for d in b["logDirs"] for p in d["partitions"]
              if p["partition"] == f"{topic}-0"]
    return size


def test_kafka_delete_records_tool_moves_the_start_and_consumers_begin_there(broker, java, tmp_path):
    create(broker, "purged")
    assert produce(broker, "purged", 10) == list(range(10))
    # Ten batches of one record each: their bytes, as Kafka counts a segment's.
    full = log_dir_size(java, broker, "purged")
    assert 10 * 61 < full < 10 * 200, full
    spec = tmp_path / "offsets.json"
    spec.write_text(json.dumps({"version": 1, "partitions": [
        {"topic": "purged", "partition": 0, "offset": 6}]}))
    result = java.run("org.apache.kafka.tools.DeleteRecordsCommand",
                      "--bootstrap-server", broker.bootstrap, "--offset-json-file", str(spec))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "low_watermark: 6" in result.stdout, result.stdout
    assert watermarks(broker, "purged") == (6, 10)
    assert consume_all(broker, "purged", "after-purge", 4) == [6, 7, 8, 9]
    assert log_dir_size(java, broker, "purged") == full * 4 // 10


def test_admin_delete_records_and_a_committed_offset_below_the_start(broker):
    admin = create(broker, "trimmed")
    produce(broker, "trimmed", 10)
    # A group whose committed position the deletion passes resets to the new start.
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "behind"})
    c.commit(offsets=[TopicPartition("trimmed", 0, 2)], asynchronous=False)
    c.close()
    done = admin.delete_records([TopicPartition("trimmed", 0, 8)])
    [(_, future)] = done.items()
    assert future.result(10).low_watermark == 8
    assert watermarks(broker, "trimmed") == (8, 10)
    assert consume_all(broker, "trimmed", "behind", 2) == [8, 9]
    # Beyond the high watermark: OFFSET_OUT_OF_RANGE, and nothing moves.
    [(_, future)] = admin.delete_records([TopicPartition("trimmed", 0, 11)]).items()
    with pytest.raises(KafkaException) as refused:
        future.result(10)
    assert refused.value.args[0].code() == KafkaError.OFFSET_OUT_OF_RANGE
    assert watermarks(broker, "trimmed") == (8, 10)


def test_retention_deletes_old_and_oversized_records_and_follows_config_changes(start_broker):
    broker = start_broker("--log-retention-check-interval-ms", "200")
    now = int(time.time() * 1000)
    admin = create(broker, "aging", **{"retention.ms": 3_600_000})
    produce(broker, "aging", 3, timestamp=now - 7_200_000)
    produce(broker, "aging", 2, timestamp=now)
    create(broker, "forever", **{"retention.ms": -1})
    produce(broker, "forever", 2, timestamp=now - 10 * 86_400_000)
    create(broker, "sized", **{"retention.bytes": 1})
    produce(broker, "sized", 4)

    assert wait_for(lambda: watermarks(broker, "aging") == (3, 5)), watermarks(broker, "aging")
    assert wait_for(lambda: watermarks(broker, "sized") == (3, 4)), watermarks(broker, "sized")
    assert watermarks(broker, "forever") == (0, 2)
    assert consume_all(broker, "aging", "aging-reader", 2) == [3, 4]

    # Shorter retention, set at runtime, takes effect at the next check.
    resource = ConfigResource("topic", "aging", incremental_configs=[
        ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)])
    [(_, future)] = admin.incremental_alter_configs([resource]).items()
    future.result(10)
    assert wait_for(lambda: watermarks(broker, "aging") == (5, 5)), watermarks(broker, "aging")
