"""Starts real `strand` processes for the end-to-end tests."""

import os
import random
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

REPO = Path(__file__).resolve().parents[2]
STRAND_BIN = os.environ.get("STRAND_BIN", str(REPO / "target" / "release" / "strand"))


_handed_out = set()


def free_port() -> int:
    """A port that is free now, below the kernel's ephemeral range, so that no outgoing
    connection can take it before the node binds it."""
    low, _ = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    while True:
        port = random.randint(max(1024, low // 2), low - 1)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port


class Broker:
    """One strand node on free local ports, with its own data directory."""

    def __init__(self, workdir: Path, *flags: str, raft_port=None):
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.port = free_port()
        self.raft_port = raft_port or free_port()
        self.metrics_port = free_port()
        self.flags = [
            "--listen", f"127.0.0.1:{self.port}",
            "--raft-listen", f"127.0.0.1:{self.raft_port}",
            "--metrics-listen", f"127.0.0.1:{self.metrics_port}",
            "--data-dir", str(self.data_dir),
            *flags,
        ]
        self.proc = None
        self.log_path = workdir / "strand.log"
        self.starts = 0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0):
        self.spawn()
        return self.wait_ready(timeout)

    def spawn(self):
        """Starts the process without waiting for it to serve."""
        self.starts += 1
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        log.write(f"\n===== start #{self.starts}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            [STRAND_BIN, *self.flags],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "RUST_LOG": os.environ.get("STRAND_TEST_LOG", "info,openraft=warn")},
        )

    def wait_ready(self, timeout: float = 60.0):
        """Waits until the node answers Metadata (it serves only once it has joined)."""
        # librdkafka reconnects by itself, here every 100 ms; its log of the refused
        # connections while the node starts is noise.
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0,
                             "reconnect.backoff.max.ms": 100})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"strand exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                admin.list_topics(timeout=2)
                return self
            except KafkaException:
                pass
        raise RuntimeError(f"strand did not become ready in {timeout}s:\n{self.log_tail()}")

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill9()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def metric(self, series: str) -> float:
        """One series of the node's `GET /metrics`, named as it appears there."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as r:
            text = r.read().decode()
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name == series:
                return float(value)
        raise AssertionError(f"no {series} in the metrics:\n{text}")


class Cluster:
    """Three strand nodes forming one cluster, on free local ports."""

    def __init__(self, workdir: Path, size: int = 3, *flags: str):
        raft_ports = [free_port() for _ in range(size)]
        initial = ",".join(f"{i + 1}@127.0.0.1:{p}" for i, p in enumerate(raft_ports))
        self.nodes = [
            Broker(workdir / f"node{i + 1}", "--node-id", str(i + 1), "--initial-cluster", initial,
                   *flags, raft_port=raft_ports[i])
            for i in range(size)
        ]

    def start(self):
        # Nodes wait for a controller quorum before serving: start them together.
        for n in self.nodes:
            n.spawn()
        for n in self.nodes:
            n.wait_ready()
        return self

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes)

    def node(self, node_id: int) -> Broker:
        return self.nodes[node_id - 1]

    def stop(self):
        for n in self.nodes:
            n.stop()


@pytest.fixture
def cluster(tmp_path_factory):
    """A fresh three-node cluster for one test."""
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        c.start()
        yield c
    finally:
        c.stop()


JAVA_PROJECT = REPO / "tests" / "java"


class Java:
    """Runs classes from tests/java (our client drivers) and from Kafka's own tools, on the
    classpath Maven resolved. Kafka's INFO logging is turned down so that output stays
    readable."""

    CONSUMER_GROUPS = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"
    LEADER_ELECTION = "org.apache.kafka.tools.LeaderElectionCommand"
    TOPICS = "org.apache.kafka.tools.TopicCommand"
    REASSIGN = "org.apache.kafka.tools.reassign.ReassignPartitionsCommand"
    CLUSTER = "org.apache.kafka.tools.ClusterTool"
    CONNECT = "org.apache.kafka.connect.cli.ConnectDistributed"

    def __init__(self, classpath: str):
        self.classpath = classpath

    def command(self, main: str, *args: str) -> list:
        return ["java", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-cp", self.classpath,
                main, *args]

    def run(self, main: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(main, *args), capture_output=True, text=True,
                              timeout=timeout)

    def popen(self, main: str, *args: str, **kwargs) -> subprocess.Popen:
        return subprocess.Popen(self.command(main, *args), text=True, **kwargs)

    @staticmethod
    def stop(app: subprocess.Popen) -> str:
        """Stops an application started with popen(stdout=PIPE) as an operator would
        (SIGTERM, then SIGKILL after a minute), prints the end of its output for a failing
        test's report, and returns all of it."""
        app.send_signal(signal.SIGTERM)
        try:
            out, _ = app.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            app.kill()
            out, _ = app.communicate()
        print(out[-20000:])
        return out


@pytest.fixture(scope="session")
def java():
    """Compiles tests/java once per run (Maven fetches kafka-clients and kafka-tools)."""
    subprocess.run(
        ["mvn", "-q", "-B", "compile", "dependency:build-classpath",
         "-Dmdep.outputFile=target/classpath.txt"],
        cwd=JAVA_PROJECT, check=True, timeout=900,
    )
    deps = (JAVA_PROJECT / "target" / "classpath.txt").read_text().strip()
    return Java(f"{JAVA_PROJECT / 'target' / 'classes'}:{deps}")


class ClusterStarter:
    """Starts three-node clusters with custom flags for one test; stops them afterwards."""

    def __init__(self, tmp_path_factory):
        self.tmp_path_factory, self.started = tmp_path_factory, []

    def __call__(self, *flags: str) -> Cluster:
        c = Cluster(self.tmp_path_factory.mktemp("cluster"), 3, *flags)
        self.started.append(c)
        return c.start()


@pytest.fixture
def start_cluster(tmp_path_factory):
    starter = ClusterStarter(tmp_path_factory)
    yield starter
    for c in starter.started:
        c.stop()


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """A node shared by the tests of one module (auto-creation on, 3 default partitions)."""
    b = Broker(tmp_path_factory.mktemp("strand"), "--default-partitions", "3")
    try:
        b.start()
        yield b
    finally:
        b.stop()


@pytest.fixture
def start_broker(tmp_path_factory):
    """Starts nodes with custom flags for one test; stops them afterwards."""
    started = []

    def start(*flags):
        b = Broker(tmp_path_factory.mktemp("strand"), *flags)
        started.append(b)
        return b.start()

    yield start
    for b in started:
        b.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, show the end of each broker's log next to the assertion."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        brokers = [item.funcargs.get("broker")]
        c = item.funcargs.get("cluster")
        if isinstance(c, Cluster):
            brokers += c.nodes
        starter = item.funcargs.get("start_cluster")
        if isinstance(starter, ClusterStarter):
            brokers += [n for started in starter.started for n in started.nodes]
        for b in brokers:
            if isinstance(b, Broker):
                report.sections.append((f"strand log ({b.log_path})", b.log_tail()))
