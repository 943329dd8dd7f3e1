"""kill -9 at any moment loses no acknowledged record, moves none, and invents none."""

import random
import threading
import time

from confluent_kafka import Producer

from clients import consume_confluent, create_topic

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

    # Whatever the log holds must be readable in full and contiguous from offset 0.
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "durability"})
    ends = [c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(PARTITIONS)]
    c.close()
    records = consume_confluent(broker.bootstrap, topic, range(PARTITIONS), sum(ends))
    log = {(p, o): v for p, o, _, v, _ in records}
    assert len(log) == sum(ends)
    for p in range(PARTITIONS):
        assert sorted(o for (q, o) in log if q == p) == list(range(ends[p])), f"partition {p} has gaps"

    lost = [(v, where) for v, where in acked.items() if log.get(where) != v]
    assert not lost, f"{len(lost)} acknowledged records lost or moved, e.g. {lost[:3]}"
    values = list(log.values())
    assert len(values) == len(set(values)), "a record appears twice"
    invented = [v for v in values if v not in sent]
    assert not invented, f"records nobody produced: {invented[:3]}"
    print(f"{len(acked)} acknowledged, {len(values)} stored, {len(sent)} attempted")
