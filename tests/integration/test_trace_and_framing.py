"""Trace context from Kafka headers and Schema Registry framing, through real Kafka into
Redis: what a producer using OpenTelemetry and Confluent's Protobuf serializer sends."""

import json

from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient, header_schema_id_serializer
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from helpers import Bridge, bridge_env, queue_jobs, read_topic, wait_for
from kafka2sidekiq._proto.job_pb2 import Job

TRACEPARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def produce_with_headers(bootstrap: str, topic: str, messages: list[tuple[bytes, list]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    failed = []
    for value, headers in messages:
        producer.produce(topic, value, headers=headers, on_delivery=lambda e, m: e and failed.append(e))
    assert producer.flush(30) == 0 and not failed, failed[:3]


def test_trace_headers_and_framed_values_reach_redis(bootstrap, make_topic, redis_url, redis_client):
    topic = make_topic(1)
    make_topic(1, name=f"{topic}.dlq")
    registry = SchemaRegistryClient.new_client({"url": "mock://k2s"})
    prefix = ProtobufSerializer(Job, registry, {"use.deprecated.format": False})
    in_header = ProtobufSerializer(Job, registry, {"use.deprecated.format": False,
                                                   "schema.id.serializer": header_schema_id_serializer})
    context = SerializationContext(topic, MessageField.VALUE)
    framed = prefix(Job(job_class="FramedJob", args_json='["prefix"]'), context)
    schema_id = int.from_bytes(framed[1:5], "big")
    header_context = SerializationContext(topic, MessageField.VALUE, headers=[])
    header_form = in_header(Job(job_class="FramedJob", args_json='["header"]'), header_context)
    other_schema = b"\x00" + (schema_id + 1).to_bytes(4, "big") + b"\x00" + Job(job_class="X").SerializeToString()
    traced = Job(job_class="TracedJob", args_json='["traced"]').SerializeToString()
    produce_with_headers(bootstrap, topic, [
        (traced, [("traceparent", TRACEPARENT), ("tracestate", b"congo=t61rcWkgMzE"), ("other", b"x")]),
        (traced, [("traceparent", b"not-w3c")]),
        (framed, []),
        (header_form, header_context.headers),
        (other_schema, []),
    ])
    bridge = Bridge(bridge_env(bootstrap, redis_url, topic, schema_ids=str(schema_id)), "run")
    try:
        wait_for(lambda: redis_client.llen("queue:default") == 4, 60, "four jobs")
        dead = read_topic(bootstrap, f"{topic}.dlq", 1, 30)
    finally:
        assert bridge.stop() == 0, bridge.output()[-3000:]
    jobs = queue_jobs(redis_client)
    assert jobs[0]["traceparent"] == TRACEPARENT.decode() and jobs[0]["tracestate"] == "congo=t61rcWkgMzE"
    assert "other" not in jobs[0] and "traceparent" not in jobs[1]
    assert [(j["class"], j["args"]) for j in jobs[2:]] == [("FramedJob", ["prefix"]), ("FramedJob", ["header"])]
    raw = redis_client.lrange("queue:default", 0, -1)[-1]
    assert json.loads(raw) == jobs[0] and raw.index(b'"created_at"') < raw.index(b'"traceparent"')
    assert [dict(m.headers())["k2s.reason"] for m in dead] == [b"schema_not_allowed"]
