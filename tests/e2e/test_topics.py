"""Creating and deleting topics, by admin clients and by auto-creation."""

import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic
from kafka import KafkaAdminClient
from kafka.admin import NewTopic as KpNewTopic
from kafka.errors import TopicAlreadyExistsError


def admin(broker):
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_confluent_admin_creates_lists_and_deletes(broker):
    a = admin(broker)
    a.create_topics([NewTopic("orders", num_partitions=4, replication_factor=1)])["orders"].result(10)
    md = a.list_topics(timeout=10).topics["orders"]
    assert sorted(md.partitions) == [0, 1, 2, 3]
    assert all(p.leader == 1 and p.replicas == [1] and p.isrs == [1] for p in md.partitions.values())

    with pytest.raises(KafkaException) as dup:
        a.create_topics([NewTopic("orders", 1, 1)])["orders"].result(10)
    assert dup.value.args[0].code() == 36, "TOPIC_ALREADY_EXISTS"

    a.delete_topics(["orders"])["orders"].result(10)
    assert wait_for(lambda: "orders" not in a.list_topics(timeout=10).topics)


def test_a_recreated_topic_starts_empty(broker):
    a = admin(broker)
    a.create_topics([NewTopic("phoenix", 1, 1)])["phoenix"].result(10)
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    delivered = []
    for i in range(5):
        p.produce("phoenix", value=b"v%d" % i, on_delivery=lambda err, m: delivered.append((err, m.offset())))
    assert p.flush(10) == 0
    assert delivered == [(None, i) for i in range(5)]
    a.delete_topics(["phoenix"])["phoenix"].result(10)
    a.create_topics([NewTopic("phoenix", 1, 1)])["phoenix"].result(10)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "phoenix-reader",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        assert c.get_watermark_offsets(TopicPartition("phoenix", 0), timeout=10) == (0, 0)
        c.assign([TopicPartition("phoenix", 0, 0)])
        msg = c.poll(2.0)
        assert msg is None or msg.error() is not None, "a record of the deleted topic came back"
    finally:
        c.close()


def test_kafka_python_admin_creates_and_deletes(broker):
    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10_000)
    try:
        a.create_topics([KpNewTopic("kp-topic", num_partitions=2, replication_factor=1)])
        assert "kp-topic" in a.list_topics()
        with pytest.raises(TopicAlreadyExistsError):
            a.create_topics([KpNewTopic("kp-topic", num_partitions=2, replication_factor=1)])
        a.delete_topics(["kp-topic"])
        assert wait_for(lambda: "kp-topic" not in a.list_topics())
    finally:
        a.close()


def test_invalid_names_and_counts_get_kafka_errors(broker):
    a = admin(broker)
    cases = {
        "has space": 17,  # INVALID_TOPIC_EXCEPTION
        "x" * 250: 17,
    }
    for name, code in cases.items():
        with pytest.raises(KafkaException) as e:
            a.create_topics([NewTopic(name, 1, 1)])[name].result(10)
        assert e.value.args[0].code() == code, name
    with pytest.raises(KafkaException) as e:
        a.create_topics([NewTopic("too-replicated", 1, 3)])["too-replicated"].result(10)
    assert e.value.args[0].code() == 38, "INVALID_REPLICATION_FACTOR"
    with pytest.raises(KafkaException) as e:
        a.create_topics(
            [NewTopic("bad-config", 1, 1, config={"no.such.config": "1"})]
        )["bad-config"].result(10)
    assert e.value.args[0].code() == 40, "INVALID_CONFIG"


def test_librdkafka_auto_creates_with_the_default_partition_count(broker):
    p = Producer({"bootstrap.servers": broker.bootstrap})
    p.produce("auto-by-librdkafka", b"hello")
    assert p.flush(20) == 0
    assert len(admin(broker).list_topics(timeout=10).topics["auto-by-librdkafka"].partitions) == 3


def test_partitions_are_added_by_kafka_topics_and_the_admin_client_and_take_records(broker, java):
    a = admin(broker)
    a.create_topics([NewTopic("growing", num_partitions=2, replication_factor=1)])["growing"].result(10)
    result = java.run(java.TOPICS, "--bootstrap-server", broker.bootstrap, "--alter",
                      "--topic", "growing", "--partitions", "4")
    assert result.returncode == 0, result.stdout + result.stderr
    a.create_partitions([NewPartitions("growing", 6)])["growing"].result(10)
    assert wait_for(lambda: len(a.list_topics(timeout=10).topics["growing"].partitions) == 6)

    # kafka-topics reads partitions with DescribeTopicPartitions, here four to a page.
    pages = 'strand_requests_total{api="DescribeTopicPartitions"}'
    before = broker.metric(pages)
    described = java.run(java.TOPICS, "--bootstrap-server", broker.bootstrap, "--describe",
                         "--topic", "growing", "--partition-size-limit-per-response", "4")
    assert described.returncode == 0, described.stdout + described.stderr
    rows = [line for line in described.stdout.splitlines() if "Partition:" in line]
    assert [row.split("Partition: ")[1].split()[0] for row in rows] == [str(i) for i in range(6)]
    assert all("Leader: 1" in row for row in rows), described.stdout
    assert broker.metric(pages) - before == 2, "two pages"

    with pytest.raises(KafkaException) as fewer:
        a.create_partitions([NewPartitions("growing", 3)])["growing"].result(10)
    assert fewer.value.args[0].code() == 37, "INVALID_PARTITIONS"

    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    delivered = []
    for partition in range(6):
        p.produce("growing", value=b"to %d" % partition, partition=partition,
                  on_delivery=lambda err, m: delivered.append((err, m.partition(), m.offset())))
    assert p.flush(10) == 0
    assert sorted(delivered) == [(None, i, 0) for i in range(6)]
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "growing-reader",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        c.assign([TopicPartition("growing", 5, 0)])
        msg = c.poll(10)
        assert msg is not None and msg.error() is None and msg.value() == b"to 5"
    finally:
        c.close()


def test_legacy_alter_configs_replaces_a_topics_whole_set(broker):
    """librdkafka's AlterConfigs (the non-incremental API): configs left out go back to
    their defaults, as in Kafka."""
    from confluent_kafka.admin import ConfigResource, ConfigSource

    a = admin(broker)
    a.create_topics([NewTopic("legacy-configs", 1, 1)])["legacy-configs"].result(10)

    def alter(configs):
        resource = ConfigResource("topic", "legacy-configs", set_config=configs)
        [(_, future)] = a.alter_configs([resource]).items()
        future.result(10)

    def dynamic():
        resource = ConfigResource("topic", "legacy-configs")
        [(_, future)] = a.describe_configs([resource]).items()
        return {
            name: entry.value
            for name, entry in future.result(10).items()
            if ConfigSource(entry.source) == ConfigSource.DYNAMIC_TOPIC_CONFIG
        }

    alter({"retention.ms": "60000", "cleanup.policy": "compact"})
    assert broker.metric('strand_requests_total{api="AlterConfigs"}') >= 1
    assert dynamic() == {"retention.ms": "60000", "cleanup.policy": "compact"}
    alter({"retention.ms": "120000"})
    assert dynamic() == {"retention.ms": "120000"}
    with pytest.raises(KafkaException) as bad:
        alter({"retention.ms": "soon"})
    assert bad.value.args[0].code() == 40, "INVALID_CONFIG"
    assert dynamic() == {"retention.ms": "120000"}


def test_kafka_python_reads_every_config_source(broker):
    """kafka-python 3 turns each config's source (and each synonym's) into an enum, and
    fails the whole call on one it does not know, such as -1."""
    from kafka.admin import ConfigResource as KpConfigResource, ConfigResourceType

    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10_000)
    try:
        a.create_topics([KpNewTopic("kp-configs", num_partitions=1, replication_factor=1,
                                    topic_configs={"retention.ms": "60000"})])
        resources = [KpConfigResource(ConfigResourceType.TOPIC, "kp-configs"),
                     KpConfigResource(ConfigResourceType.BROKER, "1")]
        for synonyms in (False, True):
            found = a.describe_configs(resources, include_synonyms=synonyms, config_filter="all")
            topic, node = found["topic"]["kp-configs"], found["broker"]["1"]
            assert topic["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
            assert topic["retention.ms"]["value"] == "60000"
            assert topic["cleanup.policy"]["config_source"] in ("DEFAULT_CONFIG",
                                                                 "STATIC_BROKER_CONFIG")
            assert {c["config_source"] for c in node.values()} <= {"DEFAULT_CONFIG",
                                                                   "STATIC_BROKER_CONFIG"}
            if synonyms:
                assert topic["retention.ms"]["synonyms"][0]["source"] == "DYNAMIC_TOPIC_CONFIG"
    finally:
        a.close()


def test_kafka_topics_lists_and_describes_the_internal_offsets_topic(broker, java):
    """`__consumer_offsets` shows as Kafka's internal topic: kafka-topics lists it unless told
    to leave internal topics out, and describing every topic (each one's partitions, then
    its configs) takes it in."""
    a = admin(broker)
    a.create_topics([NewTopic("listed", 1, 1)])["listed"].result(10)

    def topics(*args):
        r = java.run(java.TOPICS, "--bootstrap-server", broker.bootstrap, *args)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout

    assert {"listed", "__consumer_offsets"} <= set(topics("--list").split())
    assert "__consumer_offsets" not in topics("--list", "--exclude-internal").split()
    described = topics("--describe")
    assert "Topic: listed" in described, described
    [internal] = [line for line in described.splitlines()
                  if line.startswith("Topic: __consumer_offsets")]
    assert "PartitionCount: 1" in internal and "cleanup.policy=compact" in internal, internal
