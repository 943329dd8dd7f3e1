"""The Go clients (franz-go, Sarama and kafka-go, from the Go proxy) go through the compatibility
scenario of tests/compat against one node: the short form of `make compat`."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "compat"))
import scenarios  # noqa: E402


@pytest.fixture(scope="module")
def compat_binary(tmp_path_factory):
    return scenarios.build(tmp_path_factory.mktemp("compat"))


@pytest.mark.parametrize("client", scenarios.GO_CLIENTS)
def test_go_client_scenario(broker, compat_binary, client):
    steps = scenarios.run(compat_binary, client, broker.bootstrap)
    failed = [f"{s['step']}: {s.get('detail', '')}" for s in steps if not s["ok"]]
    assert not failed, "\n".join(failed)
    assert len(steps) == 15, [s["step"] for s in steps]
