"""Helpers that drive the real clients the tests use."""

import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def create_topic(bootstrap: str, name: str, partitions: int = 1, **config):
    # The client must outlive the future, or librdkafka cancels the request.
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config)]
    )[name].result(15)


def produce_confluent(bootstrap, topic, messages, **config):
    """Produces (key, value) pairs; returns their (partition, offset) in order, or raises."""
    results = [None] * len(messages)
    errors = []

    def on_delivery(i):
        def callback(err, msg):
            if err is not None:
                errors.append(err)
            else:
                results[i] = (msg.partition(), msg.offset())
        return callback

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, **config})
    for i, (key, value) in enumerate(messages):
        while True:
            try:
                p.produce(topic, key=key, value=value, on_delivery=on_delivery(i))
                break
            except BufferError:
                p.poll(0.1)
        if i % 1000 == 0:
            p.poll(0)
    remaining = p.flush(60)
    assert remaining == 0, f"{remaining} messages not delivered"
    assert not errors, f"delivery errors: {errors[:5]}"
    return results


def consume_confluent(bootstrap, topic, partitions, expected, start=OFFSET_BEGINNING, timeout=60):
    """Reads `expected` messages from `partitions` starting at `start`; returns a list of
    (partition, offset, key, value, timestamp)."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "e2e-assign-only",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )
    c.assign([TopicPartition(topic, p, start) for p in partitions])
    got = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < expected and time.monotonic() < deadline:
            for msg in c.consume(1000, timeout=0.5):
                if msg.error():
                    raise AssertionError(f"consumer error: {msg.error()}")
                got.append(
                    (msg.partition(), msg.offset(), msg.key(), msg.value(), msg.timestamp()[1])
                )
    finally:
        c.close()
    assert len(got) >= expected, f"consumed {len(got)} of {expected} messages"
    return got
