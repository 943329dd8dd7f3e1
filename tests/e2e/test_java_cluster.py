"""The Java client on its defaults and Kafka's own kafka-consumer-groups tool against a
three-node cluster, while group members, partition leaders and the group coordinator fail.
The Java side lives in tests/java (GroupMember, IdempotentSender)."""

import datetime
import json
import signal
import subprocess
import threading
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from clients import (FAST_GROUPS, IdempotentWriter, Reader, check_acknowledged_exactly_once,
                     wait_until)
from conftest import Broker, Java


@pytest.fixture
def cluster(start_cluster):
    """Three nodes whose groups settle quickly (200 ms initial rebalance delay)."""
    return start_cluster(*FAST_GROUPS)


def create_rf3_topic(cluster, name, partitions):
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    admin.create_topics([NewTopic(name, partitions)])[name].result(30)
    return admin


def parse_partitions(text):
    return {int(p) for p in text.split(",") if p}


class JavaMember:
    """A tests/java GroupMember process and what it printed: the records it read, in order,
    and the partitions it owns now."""

    def __init__(self, java, bootstrap, topic, group, log_path):
        self.proc = java.popen("strand.GroupMember", bootstrap, topic, group,
                               stdout=subprocess.PIPE, stderr=open(log_path, "w"))
        self.records, self.owned, self.closed = [], set(), False
        self.lock = threading.Lock()
        threading.Thread(target=self._follow, daemon=True).start()

    def _follow(self):
        for line in self.proc.stdout:
            kind, _, rest = line.strip().partition(" ")
            with self.lock:
                if kind == "R":
                    partition, offset, value = rest.split()
                    self.records.append((int(partition), int(offset), int(value)))
                elif kind == "ASSIGNED":
                    self.owned |= parse_partitions(rest)
                elif kind == "REVOKED":
                    self.owned -= parse_partitions(rest)
                elif kind == "CLOSED":
                    self.closed = True

    def assignment(self):
        with self.lock:
            return set(self.owned) if self.proc.poll() is None else set()

    def values(self):
        with self.lock:
            return {v for _, _, v in self.records}

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def leave(self):
        """SIGTERM: the member closes its consumer, which leaves the group."""
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)


class NumberWriter(threading.Thread):
    """Produces 0, 1, 2, ... (key and value alike) with librdkafka's idempotent producer at a
    steady pace, and keeps the set of acknowledged numbers."""

    def __init__(self, bootstrap, topic, per_second=500):
        super().__init__(daemon=True)
        self.topic, self.pause = topic, 1.0 / per_second
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                                  "linger.ms": 2})
        self.acked, self.errors, self.sent = set(), [], 0
        self.stopping = threading.Event()

    def on_delivery(self, err, msg):
        if err is None:
            self.acked.add(int(msg.value()))
        else:
            self.errors.append(err)

    def run(self):
        while not self.stopping.is_set():
            n = str(self.sent).encode()
            self.producer.produce(self.topic, key=n, value=n, on_delivery=self.on_delivery)
            self.sent += 1
            self.producer.poll(self.pause)

    def finish(self):
        self.stopping.set()
        self.join(10)
        assert self.producer.flush(90) == 0, "records left undelivered"
        assert not self.errors, f"delivery errors: {self.errors[:3]}"


def committed_and_end_offsets(bootstrap, topic, group, partitions):
    """None while a leadership move after the kills has a node answer NOT_LEADER_FOR_PARTITION
    to the client's stale view: librdkafka does not retry that for watermark queries."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        committed = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=20)
        ends = [c.get_watermark_offsets(TopicPartition(topic, p), timeout=20)[1]
                for p in range(partitions)]
        return [tp.offset for tp in committed], ends
    except KafkaException as e:
        if e.args[0].retriable() or e.args[0].code() == KafkaError.NOT_LEADER_FOR_PARTITION:
            return None
        raise
    finally:
        c.close()


def test_java_and_confluent_members_share_a_group_through_member_and_coordinator_kills(
        cluster, java, tmp_path):
    admin = create_rf3_topic(cluster, "orders", 6)
    members = [JavaMember(java, cluster.bootstrap, "orders", "mixed", tmp_path / f"member{i}.log")
               for i in range(2)]
    reader = Reader(cluster.bootstrap, "orders", "mixed")
    reader.start()

    def owners():
        return [m.assignment() for m in members] + [reader.assignment()]

    def consumed():
        return set().union(*(m.values() for m in members), reader.values)

    def each_partition_owned_once():
        owned = [p for o in owners() for p in o]
        return sorted(owned) == list(range(6))

    try:
        wait_until("six partitions split over two Java members and one librdkafka member",
                   lambda: sorted(len(o) for o in owners()) == [2, 2, 2], timeout=90)
        writer = NumberWriter(cluster.bootstrap, "orders")
        writer.start()
        time.sleep(3)

        members.append(JavaMember(java, cluster.bootstrap, "orders", "mixed",
                                  tmp_path / "member2.log"))
        wait_until("the added Java member gets partitions",
                   lambda: members[2].assignment() and each_partition_owned_once(), timeout=60)
        time.sleep(2)

        # A member dies without leaving; the others take its partitions after its session.
        members[0].kill()
        wait_until("the dead member's partitions move to the living",
                   lambda: each_partition_owned_once() and not members[0].assignment(), timeout=60)

        # The coordinator's node dies: another node takes over; commits go on.
        coordinator = admin.describe_consumer_groups(["mixed"])["mixed"].result(20).coordinator.id
        cluster.node(coordinator).kill9()
        time.sleep(8)
        cluster.node(coordinator).start()
        time.sleep(3)
        writer.finish()
        assert len(writer.acked) > 3000, f"only {len(writer.acked)} records acknowledged"

        wait_until("every acknowledged record consumed",
                   lambda: consumed() >= writer.acked, timeout=120)
        assert consumed() <= set(range(writer.sent)), "consumed a record nobody produced"
        # Each survivor commits what it read, so the group's offsets reach every partition's
        # end once the last records are read.
        wait_until("committed offsets at the end of every partition",
                   lambda: (lambda got: got is not None and got[0] == got[1])(
                       committed_and_end_offsets(cluster.bootstrap, "orders", "mixed", 6)),
                   timeout=60)
        assert each_partition_owned_once(), owners()
        # The survivors rode out the coordinator's move (a commit refused meanwhile is read
        # again) instead of dying with it.
        for i, m in enumerate(members[1:], start=1):
            assert m.proc.poll() is None, (
                f"Java member {i} exited: " + (tmp_path / f"member{i}.log").read_text()[-2000:])
    finally:
        reader.stop.set()
        reader.join(15)
        for m in members:
            if m.proc.poll() is None:
                m.leave()


def acknowledged_by(sender_output):
    """The (partition, offset) of each value the Java sender saw acknowledged; asserts it
    saw no failure."""
    acked, failed = {}, []
    for line in sender_output.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "ACK":
            value, partition, offset = rest.split()
            acked[value.encode()] = (int(partition), int(offset))
        elif kind == "ERR":
            failed.append(rest)
    assert not failed, f"{len(failed)} sends failed, e.g. {failed[:3]}"
    assert "DONE" in sender_output, sender_output[-2000:]
    return acked


def test_java_default_producer_is_exactly_once_while_leaders_pause_and_die(
        cluster, java, tmp_path):
    create_rf3_topic(cluster, "javaidem", 6)
    out_path = tmp_path / "sender.out"
    sender = java.popen("strand.IdempotentSender", cluster.bootstrap, "javaidem", "12",
                        stdin=subprocess.PIPE, stdout=open(out_path, "w"),
                        stderr=open(tmp_path / "sender.log", "w"))
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})

    def leader_of(partition):
        return admin.list_topics("javaidem", timeout=10).topics["javaidem"].partitions[partition].leader

    try:
        time.sleep(5)
        paused = cluster.node(leader_of(0))
        paused.pause()
        time.sleep(6)
        paused.resume()
        time.sleep(4)
        killed = cluster.node(leader_of(1))
        killed.kill9()
        time.sleep(6)
        killed.start()
        time.sleep(4)
    finally:
        sender.stdin.close()
        assert sender.wait(180) == 0, (tmp_path / "sender.log").read_text()[-3000:]

    class Acknowledged:
        acked = acknowledged_by(out_path.read_text())

    assert len(Acknowledged.acked) > 10_000, f"only {len(Acknowledged.acked)} acknowledged"
    check_acknowledged_exactly_once(cluster.bootstrap, "javaidem", Acknowledged, 6)


def describe(java, bootstrap, group, *extra):
    """kafka-consumer-groups --describe: {partition: (current offset, log end, lag, consumer id)}."""
    result = java.run(Java.CONSUMER_GROUPS, "--bootstrap-server", bootstrap, "--describe",
                      "--group", group, *extra)
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    rows = {}
    for line in result.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 7 and fields[0] == group and fields[2].isdigit():
            rows[int(fields[2])] = tuple(fields[3:7])
    return rows


def consumer_groups(java, bootstrap, *args):
    result = java.run(Java.CONSUMER_GROUPS, "--bootstrap-server", bootstrap, *args)
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    return result.stdout


def committed_offsets(java, bootstrap, group):
    return {p: row[0] for p, row in describe(java, bootstrap, group).items()}


def test_kafka_consumer_groups_tool_lists_describes_resets_and_deletes(cluster, java, tmp_path):
    bootstrap = cluster.bootstrap
    create_rf3_topic(cluster, "tooled", 3)
    # 15 old records and 15 recent ones per partition, an hour apart.
    now_ms = int(time.time() * 1000)
    hour_ago_ms = now_ms - 3_600_000
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(90):
        p.produce("tooled", value=str(i).encode(), partition=i % 3,
                  timestamp=hour_ago_ms if i < 45 else now_ms)
    assert p.flush(30) == 0

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "tools"})
    c.commit(offsets=[TopicPartition("tooled", part, 20) for part in range(3)], asynchronous=False)
    c.close()

    assert "tools" in consumer_groups(java, bootstrap, "--list").split()
    rows = describe(java, bootstrap, "tools")
    assert {part: row[:3] for part, row in rows.items()} == {
        part: ("20", "30", "10") for part in range(3)}, rows

    def reset(*how):
        consumer_groups(java, bootstrap, "--reset-offsets", "--group", "tools",
                        "--topic", "tooled", *how, "--execute")
        return committed_offsets(java, bootstrap, "tools")

    assert reset("--to-earliest") == {0: "0", 1: "0", 2: "0"}
    assert reset("--to-offset", "7") == {0: "7", 1: "7", 2: "7"}
    half_hour_ago = datetime.datetime.fromtimestamp(now_ms / 1000 - 1800)
    assert reset("--to-datetime", half_hour_ago.strftime("%Y-%m-%dT%H:%M:%S.000")) == {
        0: "15", 1: "15", 2: "15"}
    assert reset("--to-latest") == {0: "30", 1: "30", 2: "30"}

    consumer_groups(java, bootstrap, "--delete-offsets", "--group", "tools", "--topic", "tooled:0")
    assert committed_offsets(java, bootstrap, "tools") == {1: "30", 2: "30"}

    # A Java member resumes from what is committed: nothing on 1 and 2, all of partition 0.
    member = JavaMember(java, bootstrap, "tooled", "tools", tmp_path / "member.log")
    try:
        wait_until("the member reads partition 0 from the start",
                   lambda: len(member.records) >= 30, timeout=60)
        time.sleep(1)
        assert sorted((p, o) for p, o, _ in member.records) == [(0, o) for o in range(30)]
        wait_until("the member's commits show as no lag",
                   lambda: all(row[2] == "0" for row in describe(java, bootstrap, "tools").values()))
        rows = describe(java, bootstrap, "tools")
        assert len(rows) == 3 and all(row[3] != "-" for row in rows.values()), rows
        members = consumer_groups(java, bootstrap, "--describe", "--group", "tools", "--members")
        assert any(line.split()[0] == "tools" and line.split()[-1] == "3"
                   for line in members.splitlines() if line.strip()), members
        # A group with a member cannot be deleted.
        refused = java.run(Java.CONSUMER_GROUPS, "--bootstrap-server", bootstrap,
                           "--delete", "--group", "tools")
        assert "GroupNotEmptyException" in refused.stdout, refused.stdout
        assert "tools" in consumer_groups(java, bootstrap, "--list").split()
    finally:
        member.leave()
    wait_until("the member closed its consumer", lambda: member.closed, timeout=10)

    deleted = consumer_groups(java, bootstrap, "--delete", "--group", "tools")
    assert "('tools') was successful" in deleted, deleted
    assert "tools" not in consumer_groups(java, bootstrap, "--list").split()


def test_kafka_leader_election_tool_moves_leaders_back_to_preferred_replicas(
        start_cluster, java):
    # Balancing off: only the tool moves leaders here.
    cluster = start_cluster("--leader-balance-interval-ms", "0")
    admin = create_rf3_topic(cluster, "elected", 6)

    def leaders():
        md = admin.list_topics("elected", timeout=10).topics["elected"].partitions
        return {p: (d.leader, d.replicas[0]) for p, d in md.items()}

    writer = IdempotentWriter(cluster.bootstrap, "elected", keys=12)
    writer.start()
    time.sleep(2)
    cluster.node(1).kill9()
    time.sleep(5)
    cluster.node(1).start()
    wait_until("node 1 back in sync", lambda: all(
        1 in d.isrs for d in admin.list_topics("elected", timeout=10)
        .topics["elected"].partitions.values()), timeout=60)
    moved = [p for p, (leader, preferred) in leaders().items() if preferred == 1]
    assert moved and all(leaders()[p][0] != 1 for p in moved), leaders()

    result = java.run(Java.LEADER_ELECTION, "--bootstrap-server", cluster.bootstrap,
                      "--election-type", "PREFERRED", "--all-topic-partitions")
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    assert "Successfully completed leader election (PREFERRED)" in result.stdout, result.stdout
    wait_until("every partition led by its preferred replica",
               lambda: all(leader == preferred for leader, preferred in leaders().values()),
               timeout=10)
    time.sleep(1)
    writer.finish()
    check_acknowledged_exactly_once(cluster.bootstrap, "elected", writer, 6)


def kafka_tool(java, tool, *args):
    result = java.run(tool, *args)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    return result.stdout


def test_a_node_joins_and_another_leaves_while_producing(start_cluster, java, tmp_path):
    """Node 4 joins, Kafka's kafka-reassign-partitions moves every replica off node 3 onto
    it, kafka-cluster unregisters node 3, and node 1 is then killed: the cluster now rests
    on nodes 1, 2 and 4, so it keeps serving only if node 4 became a full member. The
    producer runs throughout; nothing acknowledged is lost or doubled."""
    cluster = start_cluster()
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    assignment = [[1, 2, 3], [2, 3, 1], [3, 1, 2]]
    admin.create_topics([NewTopic("moving", len(assignment), replica_assignment=assignment)])["moving"].result(30)
    writer = IdempotentWriter(cluster.bootstrap, "moving", keys=12)
    writer.start()
    newcomer = Broker(tmp_path / "node4", "--node-id", "4",
                      "--join", f"127.0.0.1:{cluster.node(1).raft_port}")
    try:
        newcomer.start()
        wait_until("node 4 listed as a broker",
                   lambda: 4 in admin.list_topics(timeout=10).brokers, timeout=30)
        time.sleep(1)

        plan = tmp_path / "move.json"
        plan.write_text(json.dumps({"version": 1, "partitions": [
            {"topic": "moving", "partition": p, "replicas": [4 if r == 3 else r for r in rs]}
            for p, rs in enumerate(assignment)]}))
        bootstrap = ("--bootstrap-server", cluster.node(1).bootstrap)
        started = kafka_tool(java, Java.REASSIGN, *bootstrap, "--reassignment-json-file",
                             str(plan), "--execute")
        assert "Successfully started partition reassignments" in started, started
        wait_until("the reassignment completes", lambda: kafka_tool(
            java, Java.REASSIGN, *bootstrap, "--reassignment-json-file", str(plan),
            "--verify").count("is completed") == 3, timeout=90)
        described = kafka_tool(java, Java.TOPICS, *bootstrap, "--describe", "--topic", "moving")
        rows = [line.split() for line in described.splitlines() if "Partition:" in line]
        replicas = {r[r.index("Partition:") + 1]: r[r.index("Replicas:") + 1] for r in rows}
        assert replicas == {"0": "1,2,4", "1": "2,4,1", "2": "4,1,2"}, described
        # Node 3 lets its copies go once each partition's leader reports it no longer votes.
        wait_until("node 3 deletes the partitions it left", lambda: cluster.node(3).log_path
                   .read_text(errors="replace").count("partition replica removed") >= 3,
                   timeout=30)

        left = kafka_tool(java, Java.CLUSTER, "unregister", *bootstrap, "--id", "3")
        assert "Broker 3 is no longer registered" in left, left
        cluster.node(3).stop()
        assert sorted(admin.list_topics(timeout=10).brokers) == [1, 2, 4]

        cluster.node(1).kill9()
        time.sleep(6)
        cluster.node(1).start()
        time.sleep(2)
        writer.finish()
        check_acknowledged_exactly_once(f"{cluster.node(2).bootstrap},{newcomer.bootstrap}",
                                        "moving", writer, 3)
    finally:
        newcomer.stop()


def test_topic_configs_through_kafka_tools_and_the_admin_api(start_cluster, java):
    from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource,
                                       ResourceType)
    cluster = start_cluster()
    admin = create_rf3_topic(cluster, "configured", 2)
    change = ConfigResource(ResourceType.TOPIC, "configured", incremental_configs=[
        ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("max.message.bytes", "2048", incremental_operation=AlterConfigOpType.SET)])
    for future in admin.incremental_alter_configs([change]).values():
        future.result(20)
    bad = ConfigResource(ResourceType.TOPIC, "configured", incremental_configs=[
        ConfigEntry("cleanup.policy", "shred", incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(Exception, match="cleanup.policy must be"):
        for future in admin.incremental_alter_configs([bad]).values():
            future.result(20)

    described = kafka_tool(java, Java.TOPICS, "--bootstrap-server", cluster.bootstrap,
                           "--describe", "--topic", "configured")
    assert "max.message.bytes=2048" in described and "retention.ms=3600000" in described, described
    # The new limit holds: a 4 KiB record is refused.
    p = Producer({"bootstrap.servers": cluster.bootstrap})
    errors = []
    p.produce("configured", value=b"x" * 4096, on_delivery=lambda err, _: errors.append(err))
    p.flush(20)
    assert errors and errors[0] is not None and "MSG_SIZE_TOO_LARGE" in errors[0].name(), errors

    resource = ConfigResource(ResourceType.TOPIC, "configured")
    configs = admin.describe_configs([resource])[resource].result(20)
    assert configs["max.message.bytes"].value == "2048"
    assert configs["cleanup.policy"].value == "delete" and configs["cleanup.policy"].is_default
