"""A three-node cluster: replication, leader failover, a paused minority, full restarts, and
garbage on the Raft port. Every test produces with acks=all and checks that every
acknowledged record is present exactly once, in order, at its offset."""

import socket
import time

from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic
from kafka import TopicPartition
from kafka.admin import KafkaAdminClient

from clients import IdempotentWriter, check_acknowledged_exactly_once, wait_until
from conftest import Broker

TOPIC_PARTITIONS = 6


def create_rf3_topic(cluster, name, partitions=TOPIC_PARTITIONS):
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    admin.create_topics([NewTopic(name, partitions)])[name].result(30)
    return admin


def partition_leaders(cluster, topic):
    md = AdminClient({"bootstrap.servers": cluster.bootstrap}).list_topics(topic, timeout=10)
    return {p: d for p, d in md.topics[topic].partitions.items()}


def test_rf3_topics_spread_leaders_and_every_node_agrees(cluster):
    create_rf3_topic(cluster, "spread")
    views = []
    for node in cluster.nodes:
        md = AdminClient({"bootstrap.servers": node.bootstrap}).list_topics("spread", timeout=10)
        assert md.controller_id in (1, 2, 3)
        views.append({p: (d.leader, tuple(d.replicas)) for p, d in md.topics["spread"].partitions.items()})
    assert views[0] == views[1] == views[2], "nodes disagree about leaders"
    leaders = [leader for leader, _ in views[0].values()]
    assert sorted(set(leaders)) == [1, 2, 3], f"leaders are not spread: {leaders}"
    for leader, replicas in views[0].values():
        assert sorted(replicas) == [1, 2, 3]


def test_added_partitions_are_replicated_on_every_node_and_take_writes(cluster):
    admin = create_rf3_topic(cluster, "widened", partitions=3)
    admin.create_partitions([NewPartitions("widened", 6)])["widened"].result(30)

    def widened_everywhere():
        for node in cluster.nodes:
            md = AdminClient({"bootstrap.servers": node.bootstrap}).list_topics("widened", timeout=10)
            partitions = md.topics["widened"].partitions
            if len(partitions) != 6 or any(sorted(d.isrs) != [1, 2, 3] for d in partitions.values()):
                return False
        return True

    wait_until("the new partitions replicated on every node", widened_everywhere, 30)
    writer = IdempotentWriter(cluster.bootstrap, keys=24, topic="widened")
    writer.start()
    writer.wait_until_acked_everywhere(6)
    writer.finish()
    check_acknowledged_exactly_once(cluster.bootstrap, "widened", writer, 6)


def test_acked_records_survive_a_leader_kill_mid_stream(cluster):
    """How long the failover takes is measured by benches/failover.py; this checks that it
    happens while the old leader is still dead, and that nothing acknowledged is lost."""
    create_rf3_topic(cluster, "failover")
    writer = IdempotentWriter(cluster.bootstrap, keys=24, topic="failover")
    writer.start()
    writer.wait_until_acked_everywhere(TOPIC_PARTITIONS)
    time.sleep(1)
    leader = partition_leaders(cluster, "failover")[0].leader
    cluster.node(leader).kill9()
    time.sleep(8)
    restarted_at = time.monotonic()
    acked_while_dead = writer.acked_between(restarted_at - 4, restarted_at, 0)
    cluster.node(leader).start()
    time.sleep(2)
    writer.finish()
    assert acked_while_dead > 0, "partition 0 did not fail over while its leader was dead"
    check_acknowledged_exactly_once(cluster.bootstrap, "failover", writer, TOPIC_PARTITIONS)
    # The restarted node caught up by itself and is back in sync.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if all(sorted(d.isrs) == [1, 2, 3] for d in partition_leaders(cluster, "failover").values()):
            break
        time.sleep(0.5)
    else:
        raise AssertionError("the restarted node did not get back in sync")


def test_a_paused_minority_does_not_stop_the_cluster(cluster):
    create_rf3_topic(cluster, "paused")
    writer = IdempotentWriter(cluster.bootstrap, keys=24, topic="paused")
    writer.start()
    writer.wait_until_acked_everywhere(TOPIC_PARTITIONS)
    cluster.node(2).pause()
    paused_at = time.monotonic()
    time.sleep(6)
    acked_while_paused = sum(1 for t, _ in writer.ack_times if t > paused_at + 4)
    cluster.node(2).resume()
    time.sleep(2)
    writer.finish()
    assert acked_while_paused > 0, "no progress with one node of three paused"
    check_acknowledged_exactly_once(cluster.bootstrap, "paused", writer, TOPIC_PARTITIONS)


def test_everything_acknowledged_survives_killing_all_nodes(cluster):
    create_rf3_topic(cluster, "blackout")
    writer = IdempotentWriter(cluster.bootstrap, keys=24, topic="blackout")
    writer.start()
    time.sleep(2)
    for node in cluster.nodes:
        node.kill9()
    writer.stopping.set()
    writer.join(10)
    cluster.start()
    writer.finish()
    check_acknowledged_exactly_once(cluster.bootstrap, "blackout", writer, TOPIC_PARTITIONS)


def test_garbage_on_the_raft_port_is_refused_without_harm(cluster):
    create_rf3_topic(cluster, "raft-garbage", partitions=3)
    target = cluster.node(2)
    for payload in (b"\xff" * 64, b"\x00\x00\x00\x10" + b"\x00" * 8 + b"\xde\xad\xbe\xef" * 2,
                    b"GET / HTTP/1.1\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", target.raft_port), timeout=5) as s:
            s.sendall(payload)
            s.settimeout(5)
            try:
                assert s.recv(1) == b"", "the Raft port answered garbage"
            except ConnectionResetError:
                pass
    assert target.alive()
    writer = IdempotentWriter(cluster.bootstrap, keys=24, topic="raft-garbage")
    writer.start()
    time.sleep(1)
    writer.finish()
    assert check_acknowledged_exactly_once(cluster.bootstrap, "raft-garbage", writer, 3) > 0


def test_leaders_return_to_preferred_replicas_by_themselves(start_cluster):
    """After a node restarts, the others lead its partitions; leader balancing hands them
    back once it has caught up, without losing or duplicating anything."""
    cluster = start_cluster("--leader-balance-interval-ms", "2000")
    admin = create_rf3_topic(cluster, "balanced")

    def leaders_on(node_id):
        md = admin.list_topics("balanced", timeout=10).topics["balanced"].partitions
        return sorted(p for p, d in md.items() if d.leader == node_id)

    preferred_by_2 = leaders_on(2)
    assert preferred_by_2
    writer = IdempotentWriter(cluster.bootstrap, keys=12, topic="balanced")
    writer.start()
    time.sleep(2)
    cluster.node(2).kill9()
    time.sleep(4)
    assert leaders_on(2) == []
    cluster.node(2).start()
    deadline = time.monotonic() + 30
    while leaders_on(2) != preferred_by_2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert leaders_on(2) == preferred_by_2, "leadership did not come back"
    time.sleep(1)
    writer.finish()
    check_acknowledged_exactly_once(cluster.bootstrap, "balanced", writer, TOPIC_PARTITIONS)


def test_a_move_retargeted_before_the_new_replica_caught_up_still_completes(
        start_cluster, tmp_path):
    """A partition starts moving to node 4 while node 4 is paused: the move waits, since its
    new replica cannot catch up, and is then retargeted back to nodes 1-3. Node 4 resumes
    and drops the replica the metadata no longer lists, so the leader must give up waiting
    for it: the reassignment completes, and a later move to node 4 goes through."""
    cluster = start_cluster()
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    admin.create_topics([NewTopic("retarget", 1, replica_assignment=[[1, 2, 3]])])[
        "retarget"].result(30)
    writer = IdempotentWriter(cluster.bootstrap, keys=4, topic="retarget")
    writer.start()
    newcomer = Broker(tmp_path / "node4", "--node-id", "4",
                      "--join", f"127.0.0.1:{cluster.node(1).raft_port}")
    reassigner = KafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    moving = TopicPartition("retarget", 0)

    def move_to(replicas):
        assert reassigner.alter_partition_reassignments({moving: replicas}) == {moving: None}

    def replicas():
        return admin.list_topics("retarget", timeout=10).topics["retarget"].partitions[0].replicas

    try:
        newcomer.start()
        wait_until("node 4 listed as a broker",
                   lambda: 4 in admin.list_topics(timeout=10).brokers, timeout=30)
        writer.wait_until_acked_everywhere(1)
        newcomer.pause()
        move_to([1, 2, 4])
        time.sleep(3)
        assert reassigner.list_partition_reassignments(), \
            "the move completed before the new replica caught up"
        move_to([1, 2, 3])
        newcomer.resume()
        wait_until("the retargeted move completes",
                   lambda: not reassigner.list_partition_reassignments(), timeout=30)
        assert sorted(replicas()) == [1, 2, 3]

        move_to([1, 2, 4])
        wait_until("the move to node 4 completes",
                   lambda: not reassigner.list_partition_reassignments(), timeout=60)
        assert sorted(replicas()) == [1, 2, 4]
        writer.finish()
        check_acknowledged_exactly_once(cluster.bootstrap, "retarget", writer, 1)
    finally:
        reassigner.close()
        newcomer.stop()


def test_a_node_whose_admission_was_lost_with_the_controller_leader_asks_again(
        start_cluster, tmp_path):
    """Node 4 asks the controller leader to admit it while the other two voters are down:
    the entry that adds it reaches node 4 but cannot commit. The leader is then killed and
    the other two come back and elect a leader that never had that entry. Node 4 must not
    take the entry for an admission: it asks again, is admitted, and serves."""
    cluster = start_cluster()
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    leader = admin.list_topics(timeout=10).controller_id
    others = [n for n in (1, 2, 3) if n != leader]
    seeds = ",".join(f"127.0.0.1:{cluster.node(n).raft_port}" for n in [leader, *others])
    newcomer = Broker(tmp_path / "node4", "--node-id", "4", "--join", seeds)
    try:
        for n in others:
            cluster.node(n).kill9()
        newcomer.spawn()
        time.sleep(3)
        cluster.node(leader).kill9()
        for n in others:
            cluster.node(n).spawn()
        for n in others:
            cluster.node(n).wait_ready()
        newcomer.wait_ready(timeout=60)
        survivors = AdminClient({"bootstrap.servers": ",".join(
            cluster.node(n).bootstrap for n in others)})
        wait_until("node 4 listed as a broker",
                   lambda: 4 in survivors.list_topics(timeout=10).brokers, timeout=30)
    finally:
        newcomer.stop()
