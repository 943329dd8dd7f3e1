"""Log compaction (cleanup.policy=compact): each key's last record stays at its offset, the
records it replaced go, tombstones stay for delete.retention.ms and then go, and every
replica serves the same records after cleaning."""

import hashlib
import time

import pytest

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from clients import wait_until

FAST_CLEANER = ("--log-cleaner-backoff-ms", "200")
KEYS = 40
VERSIONS = 5


def create(bootstrap, topic, replicas, **configs):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    configs = {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.01", **configs}
    admin.create_topics([NewTopic(topic, 1, replica_assignment=[replicas],
                                  config=configs)])[topic].result(30)


def produce(bootstrap, topic, records):
    """Sends (key, value) pairs, a few per request; returns the offset of each."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    offsets = []
    for key, value in records:
        p.produce(topic, key=key, value=value,
                  on_delivery=lambda err, m: offsets.append(None if err else m.offset()))
    assert p.flush(30) == 0
    assert None not in offsets
    return offsets


def read_all(bootstrap, topic):
    """Every record from the log start to the end: (offset, key, value); None while a
    killed leader's partition has no leader the client knows."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "compaction-reader",
                  "enable.auto.commit": False})
    try:
        try:
            low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        except KafkaException:
            return None
        c.assign([TopicPartition(topic, 0, low)])
        got = []
        started = last_read = time.monotonic()
        # The last offsets may have been cleaned away: stop once reads go quiet.
        while (not got or got[-1][0] < high - 1) and time.monotonic() < started + 30:
            if got and time.monotonic() > last_read + 2:
                break
            for m in c.consume(500, 0.5):
                assert m.error() is None, m.error()
                got.append((m.offset(), m.key(), m.value()))
                last_read = time.monotonic()
        offsets = [o for o, _, _ in got]
        assert offsets == sorted(set(offsets)), "offsets out of order or repeated"
        return got
    finally:
        c.close()


def checksum(records):
    return hashlib.sha256(repr(records).encode()).hexdigest()


def versions(keys, rounds):
    return [(b"key-%d" % k, b"v%d-of-key-%d" % (r, k)) for r in range(rounds) for k in keys]


def test_a_compacted_topic_keeps_each_keys_last_record_on_every_replica(start_cluster):
    cluster = start_cluster(*FAST_CLEANER)
    bootstrap = cluster.node(1).bootstrap
    create(bootstrap, "latest", [1, 2, 3])
    written = versions(range(KEYS), VERSIONS)
    offsets = produce(bootstrap, "latest", written)
    # Keys 0-4 are deleted: their tombstones stay (delete.retention.ms is a day).
    offsets += produce(bootstrap, "latest", [(b"key-%d" % k, None) for k in range(5)])
    written += [(b"key-%d" % k, None) for k in range(5)]
    last = {}
    for offset, (key, value) in zip(offsets, written):
        last[key] = (offset, key, value)
    expected = sorted(last.values())

    wait_until("the cleaner leaves each key's last record",
               lambda: read_all(bootstrap, "latest") == expected, timeout=60)
    seen = {checksum(expected)}
    # Each replica in turn leads and serves the partition: all serve the same records.
    for victim in (1, 2):
        cluster.node(victim).kill9()
        wait_until("another replica serves the same records",
                   lambda: read_all(cluster.bootstrap, "latest") == expected, timeout=60)
        cluster.node(victim).start()
    cluster.node(3).kill9()
    wait_until("the restarted replicas serve the same records",
               lambda: read_all(cluster.bootstrap, "latest") == expected, timeout=60)
    seen.add(checksum(read_all(cluster.bootstrap, "latest")))
    assert len(seen) == 1


def test_tombstones_go_after_delete_retention_and_new_writes_stay_whole(start_broker):
    broker = start_broker(*FAST_CLEANER)
    create(broker.bootstrap, "deletes", [1], **{"delete.retention.ms": "5000"})
    produce(broker.bootstrap, "deletes", [(b"gone", b"old"), (b"kept", b"1")])
    [tombstone] = produce(broker.bootstrap, "deletes", [(b"gone", None)])
    wait_until("the deleted key's old value is cleaned away, its tombstone stays",
               lambda: read_all(broker.bootstrap, "deletes")
               == [(1, b"kept", b"1"), (tombstone, b"gone", None)], timeout=30)
    # With nothing new written, a pass runs once the tombstone's horizon has passed.
    wait_until("the tombstone goes once delete.retention.ms has passed",
               lambda: read_all(broker.bootstrap, "deletes") == [(1, b"kept", b"1")], timeout=30)
    [newest] = produce(broker.bootstrap, "deletes", [(b"kept", b"2")])
    wait_until("a new value replaces the old one",
               lambda: read_all(broker.bootstrap, "deletes") == [(newest, b"kept", b"2")],
               timeout=30)
    # Nor may records be deleted from a compact-only topic, as in Kafka.
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    [(_, deleted)] = admin.delete_records([TopicPartition("deletes", 0, 1)]).items()
    with pytest.raises(KafkaException, match="POLICY_VIOLATION"):
        deleted.result(10)
    # A record without a key has no place in a compacted topic.
    p = Producer({"bootstrap.servers": broker.bootstrap})
    errors = []
    p.produce("deletes", value=b"no key", on_delivery=lambda err, m: errors.append(err))
    p.flush(10)
    assert [e.code() for e in errors] == [KafkaError.INVALID_RECORD], errors
    # A consumer from the start moves over the offsets cleaned away.
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "from-start",
                  "auto.offset.reset": "earliest"})
    try:
        c.subscribe(["deletes"])
        got = []
        deadline = time.monotonic() + 20
        while not got and time.monotonic() < deadline:
            got = [m for m in c.consume(10, 0.5) if m.error() is None]
        assert [(m.offset(), m.value()) for m in got] == [(newest, b"2")]
    finally:
        c.close()
