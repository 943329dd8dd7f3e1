"""Idempotent producers: no duplicates and no reordering, with the clients' defaults."""

import time

from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KpTopicPartition

from clients import IdempotentWriter, check_acknowledged_exactly_once, create_topic


def test_kafka_python_default_producer_is_idempotent(broker):
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    assert producer.config["enable_idempotence"], "kafka-python 3 defaults to idempotence"
    futures = [producer.send("kp-default", key=b"k", value=f"v{i}".encode()) for i in range(500)]
    producer.flush(30)
    placed = [f.get(10) for f in futures]
    producer.close()
    assert [m.offset for m in placed] == list(range(500)), "one key, one partition, in order"
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, consumer_timeout_ms=10_000)
    tp = KpTopicPartition("kp-default", placed[0].partition)
    consumer.assign([tp])
    consumer.seek_to_beginning()
    values = [m.value for m in consumer][:500]
    consumer.close()
    assert values == [f"v{i}".encode() for i in range(500)]


def test_idempotent_producer_across_kill9_has_no_duplicates_or_reordering(start_broker):
    broker = start_broker()
    topic = "idempotent-durable"
    create_topic(broker.bootstrap, topic, partitions=4)
    writer = IdempotentWriter(broker.bootstrap, topic)
    writer.start()
    for _ in range(2):
        time.sleep(1.5)
        broker.kill9()
        time.sleep(0.5)
        broker.start()
    time.sleep(1.5)
    writer.finish()
    check_acknowledged_exactly_once(broker.bootstrap, topic, writer, 4)
