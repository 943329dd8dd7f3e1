"""The Java client (kafka-clients from Maven Central) against a node: admin, producer with
every codec, assign() consumer, offsets by time. See tests/java/."""


def test_java_client_produces_and_consumes_every_codec(broker, java):
    result = java.run("strand.ClientCheck", broker.bootstrap, "java-check", "2000")
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert result.stdout.strip().endswith("OK 10000 records"), result.stdout
