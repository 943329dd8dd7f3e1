"""The two systems under test, started fresh for each measurement, and what /proc says
about their processes.

Strand: one or three `strand` nodes in a throw-away directory, configured the way
deploy/local-cluster.sh does it (a TOML file per node, one `initial-cluster` list), but on
ports away from 9092-9094 so a developer's `make cluster` can keep running.
Apache Kafka: benches/kafka/cluster.sh (KRaft, combined broker+controller nodes), with
Kafka's default lazy fsync or `--durable` (flush after every append).

Both expose `bootstrap`, `pids()` and `stop()`, so a workload never cares which it has.
"""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from confluent_kafka.admin import AdminClient

REPO = Path(__file__).resolve().parents[1]
KAFKA_SCRIPT = REPO / "benches" / "kafka" / "cluster.sh"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Below Linux's ephemeral range (32768-60999 by default): a port in that range can be the
# local end of any outgoing connection (a client's, a Kafka broker's) when a run starts.
# Kafka's nodes listen from 29092 (benches/kafka/cluster.sh), also below it. Clear of
# `make cluster` too (Kafka 9092-9094, Raft 19092-19094, metrics 10092-10094).
STRAND_BASE_PORT = 18092
# How long a run waits for its ports to be released by connections closing.
PORT_WAIT_S = 30


def port_free(port):
    """Whether a listener could bind the port (connections in TIME_WAIT do not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


class Strand:
    """`nodes` strand processes; node N serves Kafka on base_port+N-1, Raft on
    base_port+100+N-1 and metrics on base_port+200+N-1. `extra_config` adds config file
    settings (name: value) to every node."""

    durability = "fsync before ack (its only mode)"

    def __init__(self, binary, workdir, nodes, base_port=STRAND_BASE_PORT, extra_config=None):
        self.binary, self.dir, self.nodes, self.base_port = binary, Path(workdir), nodes, base_port
        self.extra_config = extra_config or {}
        self.procs = {}
        self.bootstrap = ",".join(f"127.0.0.1:{self.kafka_port(n)}" for n in self.node_ids())

    def node_ids(self):
        return range(1, self.nodes + 1)

    def kafka_port(self, n):
        return self.base_port + n - 1

    def raft_port(self, n):
        return self.base_port + 100 + n - 1

    def metrics_port(self, n):
        return self.base_port + 200 + n - 1

    def start(self, timeout=90):
        ports = [f(n) for n in self.node_ids() for f in (self.kafka_port, self.raft_port, self.metrics_port)]
        deadline = time.monotonic() + PORT_WAIT_S
        while (taken := [p for p in ports if not port_free(p)]) and time.monotonic() < deadline:
            time.sleep(1)
        if taken:
            raise RuntimeError(f"ports {taken} are in use: stop what listens there or pass --strand-base-port")
        initial = ",".join(f"{n}@127.0.0.1:{self.raft_port(n)}" for n in self.node_ids())
        for n in self.node_ids():
            d = self.dir / f"node{n}"
            d.mkdir(parents=True, exist_ok=True)
            config = d / "strand.toml"
            config.write_text(
                f'node-id = {n}\n'
                f'data-dir = "{d / "data"}"\n'
                f'listen = "127.0.0.1:{self.kafka_port(n)}"\n'
                f'raft-listen = "127.0.0.1:{self.raft_port(n)}"\n'
                f'metrics-listen = "127.0.0.1:{self.metrics_port(n)}"\n'
                f'initial-cluster = "{initial}"\n'
                + "".join(f"{k} = {v}\n" for k, v in self.extra_config.items())
            )
            log = open(d / "strand.log", "ab")
            self.procs[n] = subprocess.Popen([self.binary, "--config", str(config)], stdout=log,
                                             stderr=subprocess.STDOUT, start_new_session=True)
            log.close()
        deadline = time.monotonic() + timeout
        try:
            for n in self.node_ids():
                self._wait_serving(n, deadline)
        except Exception:
            self.stop()
            raise

    def _wait_serving(self, n, deadline):
        """A node serves once its Metadata lists every node as a broker. The port is
        polled first, so librdkafka does not log a refused connection."""
        while port_free(self.kafka_port(n)) and time.monotonic() < deadline:
            if self.procs[n].poll() is not None:
                break
            time.sleep(0.1)
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{self.kafka_port(n)}"})
        while True:
            if self.procs[n].poll() is not None:
                raise RuntimeError(f"strand node {n} exited: see {self.dir / f'node{n}' / 'strand.log'}")
            try:
                if len(admin.list_topics(timeout=2).brokers) >= self.nodes:
                    return
            except Exception:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"strand node {n} did not serve in time: see {self.dir / f'node{n}' / 'strand.log'}")
            time.sleep(0.3)

    def pids(self):
        return [p.pid for p in self.procs.values() if p.poll() is None]

    def stop(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = {}


class Kafka:
    """Apache Kafka through benches/kafka/cluster.sh, its state in `workdir`.
    `extra_props` adds server properties (name: value) to every node."""

    def __init__(self, workdir, nodes, durable, extra_props=None):
        self.dir, self.nodes, self.durable = Path(workdir), nodes, durable
        self.env = {**os.environ, "KAFKA_DATA": str(self.dir)}
        if extra_props:
            props = " ".join(f"{k}={v}" for k, v in extra_props.items())
            self.env["KAFKA_SERVER_PROPS"] = f"{self.env.get('KAFKA_SERVER_PROPS', '')} {props}".strip()
        self.durability = ("fsync after every append (log.flush.interval.messages=1)" if durable
                           else "Kafka's default: ack after replication, lazy fsync")
        self.bootstrap = None

    def start(self):
        args = [str(KAFKA_SCRIPT), "start", "--nodes", str(self.nodes)] + (["--durable"] if self.durable else [])
        self.dir.parent.mkdir(parents=True, exist_ok=True)
        out = subprocess.run(args, env=self.env, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"benches/kafka/cluster.sh start failed:\n{out.stdout}{out.stderr}")
        self.bootstrap = (self.dir / "bootstrap").read_text().strip()

    def pids(self):
        pids = []
        for n in range(1, self.nodes + 1):
            pidfile = self.dir / f"node{n}" / "kafka.pid"
            if pidfile.exists():
                pid = int(pidfile.read_text())
                if Path(f"/proc/{pid}").exists():
                    pids.append(pid)
        return pids

    def stop(self):
        subprocess.run([str(KAFKA_SCRIPT), "stop"], env=self.env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)


def proc_sample(pid):
    """CPU seconds (user+system), bytes written to storage, peak and current RSS (MiB)."""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    io = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    status = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        status[key] = value.strip()
    return {
        "cpu_s": (int(stat[11]) + int(stat[12])) / CLOCK_TICKS,
        "write_bytes": int(io["write_bytes"]),
        "syscw": int(io["syscw"]),
        "hwm_mb": int(status["VmHWM"].split()[0]) / 1024,
        "rss_mb": int(status["VmRSS"].split()[0]) / 1024,
    }


def sample(system):
    return {pid: proc_sample(pid) for pid in system.pids()}


def delta(before, after):
    """What every node did between two samples: summed CPU seconds and disk bytes, and
    per-node figures (peak memory is the high-water mark since the node started)."""
    nodes = [pid for pid in before if pid in after]
    return {
        "cpu_s": sum(after[p]["cpu_s"] - before[p]["cpu_s"] for p in nodes),
        "write_bytes": sum(after[p]["write_bytes"] - before[p]["write_bytes"] for p in nodes),
        "write_syscalls": sum(after[p]["syscw"] - before[p]["syscw"] for p in nodes),
        "cpu_s_per_node": [round(after[p]["cpu_s"] - before[p]["cpu_s"], 2) for p in nodes],
        "peak_mb_per_node": [round(after[p]["hwm_mb"]) for p in nodes],
        "rss_mb_per_node": [round(after[p]["rss_mb"]) for p in nodes],
        "nodes_alive": len(nodes),
    }
