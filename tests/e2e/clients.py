"""Helpers that drive the real clients the tests use."""

import threading
import time
from collections import defaultdict

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


def consume_confluent(bootstrap, topic, partitions, expected, start=OFFSET_BEGINNING, timeout=60,
                      **config):
    """Reads `expected` messages from `partitions` starting at `start`; returns a list of
    (partition, offset, key, value, timestamp)."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "e2e-assign-only",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            **config,
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


# Kafka's minimum session timeout is 6 s; the tests use it so dead members leave quickly.
SESSION_MS = 6000
FAST_GROUPS = ("--group-initial-rebalance-delay-ms", "200")


def produce_numbers(bootstrap, topic, count, start=0, partitions=6):
    """Produces the numbers start..start+count, key and value alike, round-robin over
    `partitions`."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    for i in range(start, start + count):
        p.produce(topic, key=str(i).encode(), value=str(i).encode(), partition=i % partitions)
        if i % 1000 == 0:
            p.poll(0)
    assert p.flush(60) == 0


def consumer(bootstrap, group, **extra):
    return Consumer({
        "bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
        "session.timeout.ms": SESSION_MS, "heartbeat.interval.ms": 500,
        "enable.auto.commit": False, **extra,
    })


class Reader(threading.Thread):
    """Polls one consumer, committing after each message, until stopped."""

    def __init__(self, bootstrap, topic, group, **extra):
        super().__init__(daemon=True)
        self.c = consumer(bootstrap, group, **extra)
        # librdkafka's assignment() blocks while another thread polls: track it from the
        # rebalance callbacks, which run inside poll.
        self.owned, self.lock = set(), threading.Lock()
        self.c.subscribe([topic], on_assign=self._assigned, on_revoke=self._revoked,
                         on_lost=self._revoked)
        self.values, self.stop, self.errors = [], threading.Event(), []

    def _assigned(self, _consumer, partitions):
        with self.lock:
            self.owned |= {p.partition for p in partitions}

    def _revoked(self, _consumer, partitions):
        with self.lock:
            self.owned -= {p.partition for p in partitions}

    def run(self):
        while not self.stop.is_set():
            m = self.c.poll(0.2)
            if m is None:
                continue
            if m.error():
                self.errors.append(m.error())
                continue
            self.values.append(int(m.value()))
            try:
                self.c.commit(m, asynchronous=False)
            except Exception as e:  # a rebalance may revoke the partition meanwhile
                self.errors.append(e)
        self.c.close()

    def assignment(self):
        with self.lock:
            return set(self.owned)


def wait_until(what, check, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"gave up waiting for {what}")


class IdempotentWriter(threading.Thread):
    """Produces numbered values per key ("k3:000000042") through librdkafka's idempotent
    producer, flat out, retrying as the client does by default, and notes where and when
    each acknowledgement arrived."""

    def __init__(self, bootstrap, topic, keys=8):
        super().__init__(daemon=True)
        self.topic, self.keys = topic, keys
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                                  "linger.ms": 2, "message.timeout.ms": 60_000})
        self.stopping = threading.Event()
        self.acked, self.errors, self.ack_times = {}, [], []

    def on_delivery(self, err, msg):
        if err is None:
            self.acked[msg.value()] = (msg.partition(), msg.offset())
            self.ack_times.append((time.monotonic(), msg.partition()))
        else:
            self.errors.append(err)

    def run(self):
        i = 0
        while not self.stopping.is_set():
            key = i % self.keys
            try:
                self.producer.produce(self.topic, key=f"k{key}".encode(),
                                      value=f"k{key}:{i:09d}".encode(), on_delivery=self.on_delivery)
                i += 1
            except BufferError:
                pass
            self.producer.poll(0 if i % 100 else 0.001)

    def wait_until_acked_everywhere(self, partitions, timeout=30):
        """Waits for an acknowledgement from every partition, so a fault injected next meets
        a producer that is already writing (a slow start must not pass for an outage)."""
        deadline = time.monotonic() + timeout
        while {p for _, p in list(self.ack_times)} != set(range(partitions)):
            assert time.monotonic() < deadline, f"not every partition acknowledged in {timeout}s"
            time.sleep(0.05)

    def finish(self):
        """Stops producing and waits for every acknowledgement; none may have failed."""
        self.stopping.set()
        self.join(10)
        assert self.producer.flush(90) == 0, "messages left undelivered"
        assert not self.errors, f"delivery errors: {self.errors[:3]}"

    def acked_between(self, start, end, partition):
        return sum(1 for t, p in self.ack_times if start < t < end and p == partition)


def check_acknowledged_exactly_once(bootstrap, topic, writer, partitions):
    """Every record `writer` had acknowledged is stored once, at its offset, nothing else
    is stored, and each key's records are in the order they were sent. Returns the count."""
    records = consume_confluent(bootstrap, topic, range(partitions), len(writer.acked))
    records.sort(key=lambda r: (r[0], r[1]))
    log = {(p, o): v for p, o, _, v, _ in records}
    values = [v for _, _, _, v, _ in records]
    assert len(values) == len(set(values)), "a record is stored twice"
    assert len(values) == len(writer.acked), "stored records that were never acknowledged"
    lost = [(v, w) for v, w in writer.acked.items() if log.get(w) != v]
    assert not lost, f"{len(lost)} acknowledged records lost or moved, e.g. {lost[:3]}"
    by_key = defaultdict(list)
    for v in values:
        key, seq = v.decode().split(":")
        by_key[key].append(int(seq))
    for key, seqs in by_key.items():
        assert seqs == sorted(seqs), f"{key} reordered"
    return len(values)
