"""Runs the scenario of each Go client (tests/compat/go) against a running cluster and
collects one result per step. Used by the end-to-end tests (the short form, one node) and by
`make compat` (three nodes, the published report)."""

import json
import os
import subprocess
from pathlib import Path

GO_PROJECT = Path(__file__).resolve().parent / "go"
GO_CLIENTS = ("franz-go", "sarama", "kafka-go")


def build(out_dir: Path) -> Path:
    """Builds the Go scenarios (the Go proxy serves the client modules) into out_dir."""
    binary = out_dir / "strand-compat"
    subprocess.run(["go", "build", "-mod=readonly", "-o", str(binary), "."], cwd=GO_PROJECT,
                   check=True, timeout=900, env={**os.environ, "GOFLAGS": "-buildvcs=false"})
    return binary


def run(binary: Path, client: str, bootstrap: str, replication_factor: int = 1,
        timeout: float = 600) -> list:
    """Runs one client's scenario; returns its steps as dicts (client, version, step, ok,
    detail, ms). A scenario that dies is one failed step carrying its output."""
    proc = subprocess.run(
        [str(binary), "-client", client, "-bootstrap", bootstrap,
         "-replication-factor", str(replication_factor)],
        capture_output=True, text=True, timeout=timeout)
    steps = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode not in (0, 1) or not steps:
        steps.append({"client": client, "version": "?", "step": "run the scenario", "ok": False,
                      "detail": f"exit {proc.returncode}: {proc.stderr[-2000:]}", "ms": 0})
    return steps
