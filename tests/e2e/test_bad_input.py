"""Bad input gets the Kafka error or a closed connection; the node keeps serving everyone
else and no stored data changes."""

import os
import struct

import pytest

import kafka_wire
from clients import create_topic


@pytest.fixture(scope="module")
def topic(broker):
    """A topic with some data, whose high watermark must never move because of bad input."""
    create_topic(broker.bootstrap, "guarded")
    conn = broker.connect()
    assert kafka_wire.produce(conn, "guarded", 0, kafka_wire.record_batch([(b"k", b"v")] * 3)) == (0, 0)
    conn.close()
    return "guarded"


def high_watermark(broker, topic):
    conn = broker.connect()
    try:
        error, hw, _ = kafka_wire.fetch(conn, topic, 0, 0)
        assert error == 0
        return hw
    finally:
        conn.close()


def assert_still_serving(broker, topic, bystander):
    """The node answers an old connection and a new one, and the data is unchanged."""
    assert broker.alive(), broker.log_tail()
    topics, controller = kafka_wire.metadata(bystander, [topic])
    assert topics[topic] == (0, 1) and controller == 1
    assert high_watermark(broker, topic) == 3


def frame(api_key, version, body=b"", correlation=1):
    payload = struct.pack(">hhi", api_key, version, correlation) + kafka_wire.string("bad") + body
    return struct.pack(">i", len(payload)) + payload


CLOSING_INPUTS = {
    "frame over the maximum request size": struct.pack(">i", 200 * 1024 * 1024) + b"\0" * 64,
    "negative frame size": struct.pack(">i", -7),
    "garbage bytes": bytes.fromhex("0000002a") + os.urandom(42),
    "unknown api key": frame(4242, 0),
    "fetch v13 (not advertised)": frame(kafka_wire.API_FETCH, 13),
    "metadata v99": frame(kafka_wire.API_METADATA, 99),
    "produce v2 (advertised, not served)": frame(kafka_wire.API_PRODUCE, 2),
    "metadata with a two-billion-entry topic array": frame(
        kafka_wire.API_METADATA, 1, struct.pack(">i", 0x7FFFFFFF)
    ),
    "produce with a truncated body": frame(kafka_wire.API_PRODUCE, 3, b"\xff\xff\x00"),
}


@pytest.mark.parametrize("name", list(CLOSING_INPUTS))
def test_unreadable_requests_close_only_their_connection(broker, topic, name):
    bystander = broker.connect()
    bad = broker.connect()
    bad.send_raw(CLOSING_INPUTS[name])
    assert bad.is_closed_by_peer(), f"{name}: connection left open"
    assert_still_serving(broker, topic, bystander)
    bystander.close()


def test_a_bad_crc_is_a_corrupt_message(broker, topic):
    bystander = broker.connect()
    batch = bytearray(kafka_wire.record_batch([(b"k", b"tampered")]))
    batch[-3] ^= 0x01
    assert kafka_wire.produce(bystander, topic, 0, bytes(batch))[0] == 2, "CORRUPT_MESSAGE"
    assert_still_serving(broker, topic, bystander)


def test_old_message_formats_and_truncated_batches_are_refused(broker, topic):
    bystander = broker.connect()
    batch = bytearray(kafka_wire.record_batch([(b"k", b"v")]))
    v1 = bytes(batch[:16]) + b"\x01" + bytes(batch[17:])
    assert kafka_wire.produce(bystander, topic, 0, v1)[0] != 0
    assert kafka_wire.produce(bystander, topic, 0, bytes(batch[:-5]))[0] == 2
    assert_still_serving(broker, topic, bystander)


def test_a_batch_over_max_message_bytes_is_too_large(broker, topic):
    bystander = broker.connect()
    create_topic(broker.bootstrap, "small", **{"max.message.bytes": "1000"})
    big = kafka_wire.record_batch([(b"k", b"x" * 2000)])
    assert kafka_wire.produce(bystander, "small", 0, big)[0] == 10, "MESSAGE_TOO_LARGE"
    fits = kafka_wire.record_batch([(b"k", b"x" * 100)])
    assert kafka_wire.produce(bystander, "small", 0, fits) == (0, 0)
    assert_still_serving(broker, topic, bystander)


def test_the_broker_wide_message_limit_applies_without_a_topic_config(start_broker):
    b = start_broker("--max-message-bytes", "4096")
    conn = b.connect()
    assert kafka_wire.produce(conn, "limited", 0, kafka_wire.record_batch([(b"k", b"y" * 8000)]))[0] == 10
    assert kafka_wire.produce(conn, "limited", 0, kafka_wire.record_batch([(b"k", b"y" * 100)]))[0] == 0
    conn.close()


def test_invalid_topic_names_are_refused(broker, topic):
    bystander = broker.connect()
    batch = kafka_wire.record_batch([(b"k", b"v")])
    assert kafka_wire.produce(bystander, "no spaces allowed", 0, batch)[0] == 17
    assert kafka_wire.create_topic(bystander, "bad/name") == 17
    topics, _ = kafka_wire.metadata(bystander, ["bad*name"])
    assert topics["bad*name"][0] == 17, "INVALID_TOPIC_EXCEPTION"
    assert_still_serving(broker, topic, bystander)


def test_unknown_partitions_and_acks_are_refused(broker, topic):
    bystander = broker.connect()
    batch = kafka_wire.record_batch([(b"k", b"v")])
    assert kafka_wire.produce(bystander, topic, 7, batch)[0] == 3, "UNKNOWN_TOPIC_OR_PARTITION"
    assert kafka_wire.produce(bystander, topic, 0, batch, acks=5)[0] == 21, "INVALID_REQUIRED_ACKS"
    error, _, _ = kafka_wire.fetch(bystander, topic, 0, 1_000)
    assert error == 1, "OFFSET_OUT_OF_RANGE"
    assert_still_serving(broker, topic, bystander)


def test_group_requests_from_strangers_get_kafka_errors(broker, topic):
    bystander = broker.connect()
    r = bystander.request(10, 0, kafka_wire.string("some-group"))  # FindCoordinator v0
    assert r.take(">h") == 0, "this node coordinates"
    r = bystander.request(12, 0, kafka_wire.string("g") + struct.pack(">i", 1) + kafka_wire.string("m"))  # Heartbeat v0
    assert r.take(">h") == 25, "UNKNOWN_MEMBER_ID"
    # A JoinGroup cut short is unreadable: the connection closes, nobody else notices.
    truncated = broker.connect()
    truncated.send(11, 0, kafka_wire.string("g") + b"\x00")
    assert truncated.is_closed_by_peer()
    assert_still_serving(broker, topic, bystander)


def test_a_failed_acks_zero_produce_closes_the_connection(broker, topic):
    conn = broker.connect()
    batch = bytearray(kafka_wire.record_batch([(b"k", b"v")]))
    batch[-1] ^= 0x01
    kafka_wire.produce(conn, topic, 0, bytes(batch), acks=0)
    assert conn.is_closed_by_peer()
    good = broker.connect()
    kafka_wire.produce(good, "acks0-ok", 0, kafka_wire.record_batch([(b"k", b"v")]), acks=0)
    assert not good.is_closed_by_peer(wait=1.0)
    assert_still_serving(broker, topic, broker.connect())
