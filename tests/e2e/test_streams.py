"""Kafka Streams' WordCount, from Kafka's own jars, against one Strand node: its repartition
topic is purged with DeleteRecords and its count store's changelog is a compacted topic, and
the counts come out right (processing.guarantee=at_least_once)."""

import collections
import struct
import subprocess

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from clients import wait_until

APP = "wordcount"
LINES = [f"the quick brown fox {i % 7} jumps over the lazy dog {i % 13}" for i in range(300)]


def expected_counts():
    counts = collections.Counter()
    for line in LINES:
        counts.update(w for w in line.lower().split() if w)
    return dict(counts)


class Counts:
    """The latest count per word on the output topic, read as it comes."""

    def __init__(self, bootstrap):
        self.c = Consumer({"bootstrap.servers": bootstrap, "group.id": "wordcount-check",
                           "auto.offset.reset": "earliest"})
        self.c.subscribe(["words-out"])
        self.latest = {}

    def poll(self):
        for m in self.c.consume(1000, 0.5):
            if m.error() is None:
                self.latest[m.key().decode()] = struct.unpack(">q", m.value())[0]
        return self.latest

    def close(self):
        self.c.close()


def test_wordcount_counts_right_on_purged_and_compacted_internal_topics(
        start_broker, java, tmp_path):
    broker = start_broker("--log-cleaner-backoff-ms", "500")
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for f in admin.create_topics([NewTopic("words-in", 2, 1),
                                  NewTopic("words-out", 2, 1)]).values():
        f.result(30)
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    for i, line in enumerate(LINES):
        p.produce("words-in", key=str(i), value=line)
    assert p.flush(30) == 0

    app = java.popen("strand.WordCount", broker.bootstrap, APP, "words-in", "words-out",
                     str(tmp_path / "state"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    counts = Counts(broker.bootstrap)
    try:
        wait_until("WordCount's counts reach what the lines hold",
                   lambda: counts.poll() == expected_counts(), timeout=120)
        topics = admin.list_topics(timeout=10).topics
        [repartition] = [t for t in topics if t.startswith(APP) and t.endswith("-repartition")]
        [changelog] = [t for t in topics if t.startswith(APP) and t.endswith("-changelog")]
        # Streams created its changelog compacted, and deletes what it has read of the
        # repartition topic.
        resource = ConfigResource(ConfigResource.Type.TOPIC, changelog)
        configs = admin.describe_configs([resource])[resource].result(20)
        assert configs["cleanup.policy"].value == "compact"
        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "watermarks"})
        try:
            def repartition_purged():
                return any(c.get_watermark_offsets(TopicPartition(repartition, p), timeout=10)[0] > 0
                           for p in range(2))
            wait_until("Streams deletes the repartition records it has read", repartition_purged,
                       timeout=60)
        finally:
            c.close()
    finally:
        counts.close()
        out = java.stop(app)
    assert "RUNNING" in out, out[-3000:]
    assert "ERROR" not in out, out[-3000:]
