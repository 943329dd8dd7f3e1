"""Kafka Connect in distributed mode, from Kafka's own jars, against a three-node Strand
cluster: the worker keeps its connector configs, source offsets and statuses in compacted
topics, and Kafka's FileStream source and sink connectors copy a file through a topic."""

import json
import subprocess
import urllib.error
import urllib.request

from confluent_kafka.admin import AdminClient, ConfigResource

from clients import wait_until
from conftest import free_port

INTERNAL = ("connect-configs", "connect-offsets", "connect-status")


def rest(port, method, path, body=None):
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as r:
        return json.loads(r.read() or b"null")


def answers(port, path):
    try:
        return rest(port, "GET", path)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def test_connect_distributed_copies_a_file_through_a_topic(start_cluster, java, tmp_path):
    cluster = start_cluster("--log-cleaner-backoff-ms", "500")
    port = free_port()
    worker = tmp_path / "worker.properties"
    worker.write_text("\n".join([
        f"bootstrap.servers={cluster.bootstrap}",
        "group.id=strand-connect",
        "key.converter=org.apache.kafka.connect.storage.StringConverter",
        "value.converter=org.apache.kafka.connect.storage.StringConverter",
        *(f"{kind}.storage.topic=connect-{name}" for kind, name in
          (("config", "configs"), ("offset", "offsets"), ("status", "status"))),
        *(f"{kind}.storage.replication.factor=3" for kind in ("config", "offset", "status")),
        "offset.flush.interval.ms=500",
        f"listeners=http://127.0.0.1:{port}",
        "",
    ]))
    source, sink = tmp_path / "in.txt", tmp_path / "out.txt"
    lines = [f"line {i} of the file" for i in range(200)]
    source.write_text("\n".join(lines) + "\n")

    app = java.popen(java.CONNECT, str(worker), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until("the Connect worker serves its REST API",
                   lambda: answers(port, "/connectors") == [], timeout=120)
        rest(port, "POST", "/connectors", {"name": "file-in", "config": {
            "connector.class": "FileStreamSource", "tasks.max": "1",
            "file": str(source), "topic": "copied"}})
        rest(port, "POST", "/connectors", {"name": "file-out", "config": {
            "connector.class": "FileStreamSink", "tasks.max": "1",
            "file": str(sink), "topics": "copied"}})
        wait_until("the sink writes every line of the source",
                   lambda: sink.exists() and sink.read_text().splitlines() == lines,
                   timeout=120)
        for name in ("file-in", "file-out"):
            status = rest(port, "GET", f"/connectors/{name}/status")
            assert status["connector"]["state"] == "RUNNING", status
            assert [t["state"] for t in status["tasks"]] == ["RUNNING"], status

        admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
        resources = [ConfigResource(ConfigResource.Type.TOPIC, t) for t in INTERNAL]
        for resource, future in admin.describe_configs(resources).items():
            assert future.result(20)["cleanup.policy"].value == "compact", resource
    finally:
        java.stop(app)
