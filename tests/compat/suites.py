"""The clients' own test suites, run against a running cluster: franz-go's `pkg/kgo`
integration tests, from the module the Go proxy serves at the version tests/compat/go pins."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from scenarios import GO_PROJECT

FRANZ_GO = "github.com/twmb/franz-go"


def pinned(module: str) -> str:
    """The version of module that tests/compat/go/go.mod requires."""
    m = re.search(rf"^\s*{re.escape(module)} (v\S+)", (GO_PROJECT / "go.mod").read_text(), re.M)
    if not m:
        raise RuntimeError(f"{module} is not required by {GO_PROJECT / 'go.mod'}")
    return m.group(1)


# What a kgo test calls when it talks to the cluster (KGO_SEEDS); the rest are unit tests.
BROKER_HELPERS = re.compile(r"\b(getSeedBrokers|newTestClient|tmpTopic\w*|tmpNamedTopic\w*)\(")


def broker_tests(package: Path) -> list:
    """The tests of a kgo source tree that need a broker."""
    tests = []
    for path in sorted(package.glob("*_test.go")):
        for m in re.finditer(r"^func (Test\w+)\(t \*testing\.T\) \{(.*?)^\}", path.read_text(),
                             re.M | re.S):
            if BROKER_HELPERS.search(m.group(2)):
                tests.append(m.group(1))
    return tests


def franz_go(bootstrap: str, replication_factor: int, work: Path,
             per_test_timeout: float = 240) -> list:
    """Runs franz-go's own kgo tests that need a broker; returns (test, PASS|FAIL|SKIP,
    reason) for each."""
    version = pinned(FRANZ_GO)
    info = json.loads(subprocess.run(
        ["go", "mod", "download", "-json", f"{FRANZ_GO}@{version}"],
        cwd=GO_PROJECT, capture_output=True, text=True, check=True, timeout=600).stdout)
    src = work / f"franz-go-{version}"
    shutil.copytree(info["Dir"], src)
    for path in src.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    binary = work / "kgo.test"
    env = {**os.environ, "GOFLAGS": "-mod=mod -buildvcs=false"}
    subprocess.run(["go", "test", "-c", "-o", str(binary), "./pkg/kgo"], cwd=src, env=env,
                   check=True, timeout=900)
    results = []
    for test in broker_tests(src / "pkg" / "kgo"):
        results.append((test, *run_one(binary, test, src / "pkg" / "kgo", per_test_timeout,
                                       {**env, "KGO_SEEDS": bootstrap,
                                        "KGO_TEST_RF": str(replication_factor),
                                        "KGO_TEST_RECORDS": "10000", "KGO_LOG_LEVEL": "none"})))
    return results


def run_one(binary: Path, test: str, cwd: Path, timeout: float, env: dict) -> tuple:
    """Runs one test in its own process, so that one that hangs (waiting for an API the
    cluster lacks) fails alone; returns (PASS|FAIL|SKIP, reason)."""
    try:
        run = subprocess.run([str(binary), "-test.v", "-test.count=1", "-test.run", f"^{test}$"],
                             cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "FAIL", f"did not finish in {int(timeout)} s"
    status = re.search(rf"^--- (PASS|FAIL|SKIP): {test} ", run.stdout, re.M)
    # What the test logged: its indented lines, without the clean-up chatter.
    said = [line.strip() for line in run.stdout.splitlines()
            if line.startswith("    ") and "NOT DELETING TOPIC" not in line]
    if not status:
        return "FAIL", " ".join(said[-3:]) or (run.stdout + run.stderr)[-500:]
    return status.group(1), "" if status.group(1) == "PASS" else " ".join(said[-3:])
