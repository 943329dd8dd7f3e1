"""Starts real `strand` processes for the end-to-end tests."""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

import kafka_wire

REPO = Path(__file__).resolve().parents[2]
STRAND_BIN = os.environ.get("STRAND_BIN", str(REPO / "target" / "release" / "strand"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """One strand node on free local ports, with its own data directory."""

    def __init__(self, workdir: Path, *flags: str):
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.port = free_port()
        self.flags = [
            "--listen", f"127.0.0.1:{self.port}",
            "--raft-listen", f"127.0.0.1:{free_port()}",
            "--metrics-listen", f"127.0.0.1:{free_port()}",
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
        self.starts += 1
        log = open(self.log_path, "ab")
        log.write(f"\n===== start #{self.starts}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            [STRAND_BIN, *self.flags],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "RUST_LOG": os.environ.get("STRAND_TEST_LOG", "info,openraft=warn")},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"strand exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                conn = kafka_wire.Connection("127.0.0.1", self.port, timeout=2)
                try:
                    kafka_wire.metadata(conn, None)
                    return self
                finally:
                    conn.close()
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"strand did not become ready in {timeout}s:\n{self.log_tail()}")

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
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

    def connect(self) -> kafka_wire.Connection:
        return kafka_wire.Connection("127.0.0.1", self.port)


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """A node shared by the tests of one module (auto-creation on, 3 default partitions)."""
    b = Broker(tmp_path_factory.mktemp("strand"), "--default-partitions", "3").start()
    yield b
    b.stop()


@pytest.fixture
def start_broker(tmp_path_factory):
    """Starts nodes with custom flags for one test; stops them afterwards."""
    started = []

    def start(*flags):
        b = Broker(tmp_path_factory.mktemp("strand"), *flags).start()
        started.append(b)
        return b

    yield start
    for b in started:
        b.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, show the end of each broker's log next to the assertion."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        for name in ("broker",):
            b = item.funcargs.get(name)
            if isinstance(b, Broker):
                report.sections.append((f"strand log ({b.log_path})", b.log_tail()))
