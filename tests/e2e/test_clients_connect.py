"""Every client negotiates versions and reads cluster metadata from a fresh node."""

import json
import subprocess

from confluent_kafka.admin import AdminClient
from kafka import KafkaAdminClient


def test_confluent_kafka_sees_one_broker_that_is_also_the_controller(broker):
    md = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=10)
    assert list(md.brokers) == [1]
    assert md.brokers[1].port == broker.port
    assert md.controller_id == 1
    assert md.cluster_id == "strand-cluster"


def test_kafka_python_describes_the_cluster(broker):
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10_000)
    try:
        cluster = admin.describe_cluster()
        assert cluster["controller_id"] == 1
        assert [b["broker_id"] for b in cluster["brokers"]] == [1]
    finally:
        admin.close()


def test_kcat_lists_metadata(broker):
    out = subprocess.run(
        ["kcat", "-b", broker.bootstrap, "-L", "-J"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout
    md = json.loads(out)
    assert [b["id"] for b in md["brokers"]] == [1]
    assert md["controllerid"] == 1
