"""The Java client (kafka-clients from Maven Central) against a node: admin, producer with
every codec, assign() consumer, offsets by time. See tests/java/."""

import subprocess
from pathlib import Path

import pytest

JAVA_PROJECT = Path(__file__).resolve().parents[1] / "java"


@pytest.fixture(scope="module")
def java_classpath():
    subprocess.run(
        ["mvn", "-q", "-B", "compile", "dependency:build-classpath",
         "-Dmdep.outputFile=target/classpath.txt"],
        cwd=JAVA_PROJECT, check=True, timeout=600,
    )
    deps = (JAVA_PROJECT / "target" / "classpath.txt").read_text().strip()
    return f"{JAVA_PROJECT / 'target' / 'classes'}:{deps}"


def test_java_client_produces_and_consumes_every_codec(broker, java_classpath):
    result = subprocess.run(
        ["java", "-cp", java_classpath, "strand.ClientCheck", broker.bootstrap, "java-check", "2000"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert result.stdout.strip().endswith("OK 10000 records"), result.stdout
