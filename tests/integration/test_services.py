"""The real services answer: Apache Kafka through confluent-kafka, Redis through redis-py
with the hiredis parser."""

import time
import uuid

from confluent_kafka import Consumer, Producer


def test_produce_and_consume_on_the_real_broker(bootstrap, make_topic):
    topic = make_topic(partitions=4)
    producer = Producer({"bootstrap.servers": bootstrap})
    sent = {f"key-{i}".encode(): f"value-{i}".encode() for i in range(200)}
    for key, value in sent.items():
        producer.produce(topic, value, key)
    assert producer.flush(30) == 0

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    got, partitions = {}, set()
    deadline = time.monotonic() + 60
    try:
        while len(got) < len(sent) and time.monotonic() < deadline:
            for msg in consumer.consume(500, 1.0):
                assert msg.error() is None, msg.error()
                got[msg.key()] = msg.value()
                partitions.add(msg.partition())
    finally:
        consumer.close()
    assert got == sent
    assert partitions == {0, 1, 2, 3}


def test_redis_round_trip_uses_hiredis(redis_client):
    from redis.utils import HIREDIS_AVAILABLE

    assert HIREDIS_AVAILABLE
    redis_client.lpush("queue:probe", b"\x00\xff payload", "second")
    assert redis_client.rpop("queue:probe") == b"\x00\xff payload"
    conn = redis_client.connection_pool.get_connection()
    try:
        assert type(conn._parser).__name__ == "_HiredisParser"
    finally:
        redis_client.connection_pool.release(conn)
