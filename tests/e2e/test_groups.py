"""Consumer groups with real clients: partitions shared and rebalanced, committed offsets
that survive restarts and coordinator loss, cooperative and static membership."""

import signal
import subprocess
import sys
import time

from confluent_kafka import TopicPartition
from kafka import KafkaConsumer

from clients import FAST_GROUPS, Reader, consumer, create_topic, produce_numbers, wait_until

# The member that gets killed reads without committing, so whatever it read is read again
# by the survivors: the test checks that no record is lost, at least once.
CHILD = """
import sys
from confluent_kafka import Consumer
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": sys.argv[2],
              "auto.offset.reset": "earliest", "session.timeout.ms": 6000,
              "heartbeat.interval.ms": 500, "enable.auto.commit": False})
c.subscribe([sys.argv[3]])
while True:
    c.poll(0.2)
"""


def test_consumers_share_partitions_and_rebalance_when_members_come_and_die(start_broker):
    b = start_broker(*FAST_GROUPS)
    create_topic(b.bootstrap, "shared", 6)
    readers = [Reader(b.bootstrap, "shared", "g1") for _ in range(3)]
    for r in readers:
        r.start()
    wait_until("six partitions split three ways",
               lambda: sorted(len(r.assignment()) for r in readers) == [2, 2, 2])
    assert set().union(*(r.assignment() for r in readers)) == set(range(6))
    produce_numbers(b.bootstrap, "shared", 3000)

    # A member that is killed (no LeaveGroup) is removed after its session timeout.
    child = subprocess.Popen([sys.executable, "-c", CHILD, b.bootstrap, "g1", "shared"])
    try:
        wait_until("the fourth member gets partitions",
                   lambda: sum(len(r.assignment()) for r in readers) < 6, timeout=30)
        produce_numbers(b.bootstrap, "shared", 3000, start=3000)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    wait_until("the dead member's partitions come back",
               lambda: sum(len(r.assignment()) for r in readers) == 6, timeout=40)
    owned = [r.assignment() for r in readers]
    assert sum(len(o) for o in owned) == 6 and set().union(*owned) == set(range(6)), owned
    produce_numbers(b.bootstrap, "shared", 3000, start=6000)
    wait_until("every record consumed",
               lambda: set().union(*(set(r.values) for r in readers)) >= set(range(9000)), timeout=60)
    for r in readers:
        r.stop.set()
    for r in readers:
        r.join(15)


def test_committed_offsets_survive_consumers_and_a_broker_kill(start_broker):
    b = start_broker(*FAST_GROUPS)
    create_topic(b.bootstrap, "resume", 2)
    produce_numbers(b.bootstrap, "resume", 100, partitions=2)
    c = consumer(b.bootstrap, "g2")
    c.subscribe(["resume"])
    seen = []
    while len(seen) < 60:
        m = c.poll(1)
        if m is not None and not m.error():
            seen.append(m)
    # Commit exactly what was consumed, with metadata, then leave.
    last = {}
    for m in seen:
        last[m.partition()] = m.offset() + 1
    c.commit(offsets=[TopicPartition("resume", p, o, metadata="m") for p, o in last.items()],
             asynchronous=False)
    c.close()

    b.kill9()
    b.start()
    c = consumer(b.bootstrap, "g2")
    committed = c.committed([TopicPartition("resume", p) for p in (0, 1)], timeout=20)
    assert {tp.partition: tp.offset for tp in committed} == last
    assert all(tp.metadata == "m" for tp in committed)
    c.subscribe(["resume"])
    rest = []
    deadline = time.monotonic() + 30
    while len(rest) < 40 and time.monotonic() < deadline:
        m = c.poll(1)
        if m is not None and not m.error():
            rest.append(m)
    c.close()
    first = {(m.partition(), m.offset()) for m in seen}
    second = {(m.partition(), m.offset()) for m in rest}
    assert not first & second, "nothing consumed twice after the committed offsets"
    assert len(first | second) == 100


def test_cooperative_sticky_moves_only_what_it_must(start_broker):
    b = start_broker(*FAST_GROUPS)
    create_topic(b.bootstrap, "coop", 6)
    revoked, assigned = [], []
    strategy = {"partition.assignment.strategy": "cooperative-sticky"}
    first = consumer(b.bootstrap, "g3", **strategy)
    first.subscribe(["coop"], on_assign=lambda c, ps: assigned.append({p.partition for p in ps}),
                    on_revoke=lambda c, ps: revoked.append({p.partition for p in ps}))
    wait_until("the first member owns everything",
               lambda: first.poll(0.1) is None and len(first.assignment()) == 6)
    second = consumer(b.bootstrap, "g3", **strategy)
    second.subscribe(["coop"])
    wait_until("the partitions split",
               lambda: (first.poll(0.1), second.poll(0.1)) and len(first.assignment()) == 3
               and len(second.assignment()) == 3)
    # Incremental: the first member gave up three partitions and kept three.
    assert revoked and all(len(r) == 3 for r in revoked), revoked
    kept = {p.partition for p in first.assignment()}
    assert kept.isdisjoint(set().union(*revoked))
    first.close()
    second.close()


def test_roundrobin_with_auto_commit(start_broker):
    """Two single-partition topics: range gives both to one member, roundrobin one each.
    Offsets are committed by librdkafka's automatic (asynchronous) commit."""
    b = start_broker(*FAST_GROUPS)
    for topic in ("rr-a", "rr-b"):
        create_topic(b.bootstrap, topic, 1)
        produce_numbers(b.bootstrap, topic, 50, partitions=1)
    settings = {"partition.assignment.strategy": "roundrobin", "enable.auto.commit": True,
                "auto.commit.interval.ms": 200}
    members = [consumer(b.bootstrap, "g-rr", **settings) for _ in range(2)]
    got = [[], []]
    for m in members:
        m.subscribe(["rr-a", "rr-b"])

    def poll_both():
        for m, seen in zip(members, got):
            msg = m.poll(0.1)
            if msg is not None and not msg.error():
                seen.append((msg.topic(), msg.offset()))
        return sum(len(seen) for seen in got) >= 100

    wait_until("both topics read", poll_both)
    assert sorted(len({t for t, _ in seen}) for seen in got) == [1, 1], "not round-robin"
    for m in members:
        m.close()  # the final automatic commit
    check = consumer(b.bootstrap, "g-rr")
    committed = check.committed([TopicPartition("rr-a", 0), TopicPartition("rr-b", 0)], timeout=10)
    check.close()
    assert [tp.offset for tp in committed] == [50, 50]


def test_kcat_balanced_consumers_share_a_topic_and_commit(start_broker):
    b = start_broker(*FAST_GROUPS)
    create_topic(b.bootstrap, "kc", 6)
    produce_numbers(b.bootstrap, "kc", 600)
    kcats = [subprocess.Popen(
        ["kcat", "-b", b.bootstrap, "-G", "g-kcat", "-f", "%p %s\\n", "-q",
         "-X", "auto.offset.reset=earliest", "-X", "auto.commit.interval.ms=200", "kc"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) for _ in range(2)]
    outputs = []
    try:
        time.sleep(8)
        committed = []

        def all_committed():
            check = consumer(b.bootstrap, "g-kcat")
            committed[:] = check.committed([TopicPartition("kc", p) for p in range(6)], timeout=10)
            check.close()
            return [tp.offset for tp in committed] == [100] * 6

        wait_until("kcat commits every partition's end", all_committed, timeout=60)
    finally:
        for k in kcats:
            k.send_signal(signal.SIGTERM)
            outputs.append(k.communicate(timeout=30)[0])
    read = [[line.split() for line in out.splitlines() if line.strip()] for out in outputs]
    assert {int(v) for lines in read for _, v in lines} == set(range(600))
    # The two members split the partitions (a late joiner may take some over mid-way).
    partitions = [{int(p) for p, _ in lines} for lines in read]
    assert all(partitions) and partitions[0] | partitions[1] == set(range(6)), partitions


def test_a_static_member_restarts_without_a_rebalance(start_broker):
    b = start_broker(*FAST_GROUPS)
    create_topic(b.bootstrap, "static", 4)
    other_assigned = []
    other = consumer(b.bootstrap, "g4", **{"group.instance.id": "other"})
    other.subscribe(["static"], on_assign=lambda c, ps: other_assigned.append(len(ps)))
    pod = consumer(b.bootstrap, "g4", **{"group.instance.id": "pod-0"})
    pod.subscribe(["static"])
    wait_until("two static members share four partitions",
               lambda: (other.poll(0.1), pod.poll(0.1)) and len(other.assignment()) == 2
               and len(pod.assignment()) == 2)
    before = {p.partition for p in pod.assignment()}
    rebalances = len(other_assigned)
    pod.close()  # a static member does not leave the group on close
    pod = consumer(b.bootstrap, "g4", **{"group.instance.id": "pod-0"})
    pod.subscribe(["static"])
    wait_until("the restarted member has its old partitions",
               lambda: (other.poll(0.1), pod.poll(0.1)) and len(pod.assignment()) == 2)
    assert {p.partition for p in pod.assignment()} == before
    for _ in range(10):
        other.poll(0.1)
    assert len(other_assigned) == rebalances, "the other member saw no rebalance"
    pod.close()
    other.close()


def test_kafka_python_consumer_group_commits(start_broker):
    b = start_broker(*FAST_GROUPS)
    create_topic(b.bootstrap, "kp", 3)
    produce_numbers(b.bootstrap, "kp", 300, partitions=3)
    c = KafkaConsumer("kp", bootstrap_servers=b.bootstrap, group_id="g5",
                      auto_offset_reset="earliest", enable_auto_commit=False,
                      consumer_timeout_ms=10000)
    values = set()
    for m in c:
        values.add(int(m.value))
        if len(values) == 300:
            break
    c.commit()
    c.close()
    assert values == set(range(300))
    c = KafkaConsumer(bootstrap_servers=b.bootstrap, group_id="g5", enable_auto_commit=False)
    from kafka import TopicPartition as KTP
    assert sum(c.committed(KTP("kp", p)) for p in range(3)) == 300
    c.close()


def test_commits_continue_when_the_coordinator_node_is_killed(cluster):
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    admin.create_topics([NewTopic("coord", 3, 3)])["coord"].result(30)
    produce_numbers(cluster.bootstrap, "coord", 600, partitions=3)
    c = consumer(cluster.bootstrap, "g6")
    c.subscribe(["coord"])
    consumed = 0
    while consumed < 200:
        m = c.poll(1)
        if m is not None and not m.error():
            consumed += 1
            c.commit(m, asynchronous=False)
    coordinator = admin.describe_consumer_groups(["g6"])["g6"].result(20).coordinator.id
    cluster.node(coordinator).kill9()
    # The consumer finds the new coordinator, rejoins, and keeps committing.
    deadline = time.monotonic() + 60
    committed_after = 0
    while committed_after < 100 and time.monotonic() < deadline:
        m = c.poll(1)
        if m is None or m.error():
            continue
        try:
            c.commit(m, asynchronous=False)
            committed_after += 1
        except Exception:
            pass
    assert committed_after >= 100
    positions = c.committed([TopicPartition("coord", p) for p in range(3)], timeout=20)
    assert sum(max(tp.offset, 0) for tp in positions) >= 300
    c.close()
