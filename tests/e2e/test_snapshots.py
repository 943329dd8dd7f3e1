"""Raft logs purged below deleted records, and replicas that need the purged entries
catching up by snapshot: a follower that was down while the log was purged, and a
partition moved to a node that never had it. Each then serves exactly the records the
others serve."""

import time

from confluent_kafka import Consumer, Producer, TopicPartition as ConfluentPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import TopicPartition
from kafka.admin import KafkaAdminClient

from clients import wait_until

RECORDS = 300
DELETED = 250


def produce_one_batch_each(bootstrap, topic, count):
    """Each record in its own request, so the partition's Raft log has one entry each."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
    acked = []
    for i in range(count):
        p.produce(topic, key=b"k%d" % i, value=b"value-%d" % i,
                  on_delivery=lambda err, m: acked.append(None if err else m.offset()))
        p.flush(10)
    assert acked == list(range(count))


def delete_records(bootstrap, topic, before):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    [(_, done)] = admin.delete_records([ConfluentPartition(topic, 0, before)]).items()
    assert done.result(10).low_watermark == before


def read_from_start(bootstrap, topic):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{topic}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        c.subscribe([topic])
        got = []
        deadline = time.monotonic() + 30
        while len(got) < RECORDS - DELETED and time.monotonic() < deadline:
            got += [(m.offset(), m.value()) for m in c.consume(100, 0.5) if m.error() is None]
        return got
    finally:
        c.close()


EXPECTED = [(o, b"value-%d" % o) for o in range(DELETED, RECORDS)]


def purged(node):
    return node.metric("strand_raft_purged_entries")


def snapshots(node):
    return node.metric("strand_raft_snapshots_installed_total")


def move(cluster, topic, replicas):
    reassigner = KafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    try:
        moving = TopicPartition(topic, 0)
        assert reassigner.alter_partition_reassignments({moving: replicas}) == {moving: None}
        wait_until(f"the move to {replicas} completes",
                   lambda: not reassigner.list_partition_reassignments(), timeout=60)
    finally:
        reassigner.close()


def test_a_follower_down_while_the_log_was_purged_catches_up_by_snapshot(cluster):
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    admin.create_topics([NewTopic("behind", 1, replica_assignment=[[1, 2, 3]])])[
        "behind"].result(30)
    lagging = cluster.node(3)
    lagging.kill9()
    before = purged(cluster.node(1))
    produce_one_batch_each(cluster.node(1).bootstrap, "behind", RECORDS)
    delete_records(cluster.node(1).bootstrap, "behind", DELETED)
    # Every entry below the one holding offset 250 goes from the two live replicas.
    for node in (1, 2):
        wait_until(f"node {node} purges the partition's log",
                   lambda: purged(cluster.node(node)) >= before + DELETED, timeout=30)

    lagging.start()
    wait_until("node 3 receives a snapshot", lambda: snapshots(lagging) >= 1, timeout=60)
    # Node 3 alone then serves the partition, from what the snapshot brought.
    move(cluster, "behind", [3])
    assert read_from_start(cluster.bootstrap, "behind") == EXPECTED


def test_a_partition_moved_to_a_new_node_arrives_by_snapshot(cluster):
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    admin.create_topics([NewTopic("moving", 1, replica_assignment=[[1]])])["moving"].result(30)
    produce_one_batch_each(cluster.node(1).bootstrap, "moving", RECORDS)
    before = purged(cluster.node(1))
    delete_records(cluster.node(1).bootstrap, "moving", DELETED)
    wait_until("node 1 purges the partition's log",
               lambda: purged(cluster.node(1)) >= before + DELETED, timeout=30)
    received = snapshots(cluster.node(2))

    move(cluster, "moving", [2])
    assert snapshots(cluster.node(2)) >= received + 1
    assert read_from_start(cluster.bootstrap, "moving") == EXPECTED
