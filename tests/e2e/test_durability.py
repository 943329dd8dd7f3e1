"""kill -9 at any moment, or a full disk, loses no acknowledged record, moves none, and
invents none."""

import os
import random
import subprocess
import threading
import time

import pytest

from confluent_kafka import Consumer, Producer, TopicPartition

from clients import consume_confluent, create_topic
from conftest import Broker

PARTITIONS = 4


class Writer(threading.Thread):
    """Produces unique values as fast as it can until stopped, recording every ack.

    Retries are off, so a record whose request was lost with the broker fails instead of
    being sent twice: any duplicate in the log would be the broker's doing."""

    def __init__(self, bootstrap, topic, tag):
        super().__init__(daemon=True)
        self.topic, self.tag = topic, tag
        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "acks": "all",
                "linger.ms": 2,
                "retries": 0,
                "enable.idempotence": False,
                "message.timeout.ms": 5_000,
                "compression.type": random.choice(["none", "lz4", "zstd", "gzip", "snappy"]),
            }
        )
        self.stopping = threading.Event()
        self.sent, self.acked = [], {}

    def on_delivery(self, err, msg):
        if err is None:
            self.acked[msg.value()] = (msg.partition(), msg.offset())

    def run(self):
        i = 0
        while not self.stopping.is_set():
            value = f"{self.tag}-{i:07d}".encode()
            key = f"k{i % 32}".encode()
            try:
                self.producer.produce(self.topic, key=key, value=value, on_delivery=self.on_delivery)
                self.sent.append(value)
                i += 1
            except BufferError:
                pass
            self.producer.poll(0 if i % 100 else 0.001)

    def finish(self):
        self.stopping.set()
        self.join(10)
        self.producer.flush(15)


def read_whole_log(bootstrap, topic, partitions):
    """Every record of `topic` as {(partition, offset): value}, asserting that each
    partition reads in full and contiguous from offset 0."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "durability"})
    ends = [c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)]
    c.close()
    records = consume_confluent(bootstrap, topic, range(partitions), sum(ends))
    log = {(p, o): v for p, o, _, v, _ in records}
    assert len(log) == sum(ends)
    for p in range(partitions):
        assert sorted(o for (q, o) in log if q == p) == list(range(ends[p])), f"partition {p} has gaps"
    return log


def assert_acknowledged_kept(acked, log):
    """Every acknowledged value ({value: (partition, offset)}) is in `log` where its
    acknowledgement put it."""
    lost = [(v[:40], where) for v, where in acked.items() if log.get(where) != v]
    assert not lost, f"{len(lost)} acknowledged records lost or moved, e.g. {lost[:3]}"


def test_acknowledged_records_survive_kill9_at_random_moments(start_broker):
    broker = start_broker()
    topic = "durable"
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    acked, sent = {}, set()
    for round_ in range(3):
        writer = Writer(broker.bootstrap, topic, f"r{round_}")
        writer.start()
        time.sleep(random.uniform(1.0, 3.0))
        broker.kill9()
        writer.finish()
        assert writer.acked, "the writer got no acknowledgement before the kill"
        acked.update(writer.acked)
        sent.update(writer.sent)
        broker.start()

    log = read_whole_log(broker.bootstrap, topic, PARTITIONS)
    assert_acknowledged_kept(acked, log)
    values = list(log.values())
    assert len(values) == len(set(values)), "a record appears twice"
    invented = [v for v in values if v not in sent]
    assert not invented, f"records nobody produced: {invented[:3]}"
    print(f"{len(acked)} acknowledged, {len(values)} stored, {len(sent)} attempted")


def test_a_full_disk_stops_the_node_with_a_clear_error_and_loses_nothing(tmp_path):
    """Kafka halts a broker whose last log directory fails; Strand stops the same way
    instead of serving partitions it can no longer write, and after space is freed it
    restarts with every record it acknowledged."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system for the data needs root")
    node = tmp_path / "node"
    data = node / "data"
    data.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(data)], check=True)
    broker = Broker(node)
    try:
        broker.start()
        topic = "fills-the-disk"
        create_topic(broker.bootstrap, topic, partitions=2)
        producer = Producer(
            {
                "bootstrap.servers": broker.bootstrap,
                "acks": "all",
                "retries": 0,
                "enable.idempotence": False,
                "message.timeout.ms": 5_000,
                "linger.ms": 5,
            }
        )
        acked, sent = {}, set()

        def on_delivery(err, msg):
            if err is None:
                acked[msg.value()] = (msg.partition(), msg.offset())

        padding = b"x" * 2000
        deadline = time.monotonic() + 120
        i = 0
        while broker.alive() and time.monotonic() < deadline:
            value = b"%08d-" % i + padding
            try:
                producer.produce(topic, value=value, partition=i % 2, on_delivery=on_delivery)
                sent.add(value)
                i += 1
            except BufferError:
                producer.poll(0.01)
            producer.poll(0)
        producer.flush(15)
        assert not broker.alive(), "the node kept running on a full disk"
        assert broker.proc.returncode != 0
        log = broker.log_path.read_text(errors="replace")
        assert "the disk refused a write" in log and "Free space on" in log, broker.log_tail()
        assert acked, "nothing was acknowledged before the disk filled"

        # Space freed: the node comes back with everything it acknowledged.
        subprocess.run(["mount", "-o", "remount,size=512m", str(data)], check=True)
        broker.start()
        stored = read_whole_log(broker.bootstrap, topic, 2)
        assert_acknowledged_kept(acked, stored)
        assert set(stored.values()) <= sent, "records nobody produced"
        print(f"{len(acked)} acknowledged before the disk filled, {len(stored)} stored")
    finally:
        broker.stop()
        subprocess.run(["umount", "-l", str(data)], check=False)
