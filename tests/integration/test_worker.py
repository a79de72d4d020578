"""The worker against real Apache Kafka and Redis: exactly once, in order per key,
through crashes, zombies, a Redis outage and bad input."""

import random
import time

import pytest
import redis
from confluent_kafka import Consumer, TopicPartition

from helpers import (Bridge, RedisServer, assert_exactly_once_in_key_order, bridge_env, ledger_offsets, numbered_jobs,
                     produce, queue_jobs, read_topic, settle, unchanged, wait_for)
from kafka2sidekiq import encoder
from kafka2sidekiq._proto.job_pb2 import Job
from conftest import SEED


def test_exactly_once_and_per_key_order(bootstrap, make_topic, redis_url, redis_client):
    topic = make_topic(8)
    produced = numbered_jobs(20_000, keys=100)
    produce(bootstrap, topic, produced)
    bridge = Bridge(bridge_env(bootstrap, redis_url, topic), "run")
    try:
        settle(redis_client, "queue:default", len(produced), 120)
    finally:
        assert bridge.stop() == 0, bridge.output()[-3000:]
    assert_exactly_once_in_key_order(queue_jobs(redis_client), produced)
    assert redis_client.smembers("queues") == {b"default"}
    assert sum(ledger_offsets(redis_client, topic).values()) == len(produced)


def test_sigkill_mid_stream_then_restart(bootstrap, make_topic, redis_url, redis_client):
    # The whole host dies at once (supervisor and workers, mid-transaction), four times.
    # The last wave is produced only after the last kill, so no kill comes after the end.
    topic = make_topic(8)
    produced = numbered_jobs(60_000, keys=100)
    waves = [produced[i:i + 12_000] for i in range(0, len(produced), 12_000)]
    env = bridge_env(bootstrap, redis_url, topic, batch_size=100)
    rnd = random.Random(SEED)
    for wave in waves[:-1]:
        before = redis_client.llen("queue:default")
        produce(bootstrap, topic, wave)
        bridge = Bridge(env, "run")
        mark = before + rnd.randrange(1, len(wave))  # a random point of this wave
        wait_for(lambda: redis_client.llen("queue:default") >= mark, 60, f"{mark} jobs", interval=0.002)
        bridge.kill_all()
    produce(bootstrap, topic, waves[-1])
    bridge = Bridge(env, "run")
    try:
        settle(redis_client, "queue:default", len(produced), 120)
    finally:
        assert bridge.stop() == 0, bridge.output()[-3000:]
    assert_exactly_once_in_key_order(queue_jobs(redis_client), produced)


def test_two_workers_on_the_same_partitions(bootstrap, make_topic, redis_url, redis_client):
    """A zombie that still believes it owns the partitions: the ledger fences it."""
    topic = make_topic(8)
    produced = numbered_jobs(30_000, keys=100)
    env = bridge_env(bootstrap, redis_url, topic, batch_size=300)
    bridges = [Bridge(env, "worker", "--partitions", "0-7") for _ in range(2)]
    try:
        # both must be reading before the jobs arrive, or a fast one drains them alone
        wait_for(lambda: all("reading 8 partition(s)" in b.output() for b in bridges), 60, "both workers to read")
        produce(bootstrap, topic, produced)
        settle(redis_client, "queue:default", len(produced), 120)
    finally:
        codes = [b.stop() for b in bridges]
    assert codes == [0, 0], [b.output()[-2000:] for b in bridges]
    assert any("ledger is ahead" in b.output() for b in bridges), "the fence never fired"
    assert_exactly_once_in_key_order(queue_jobs(redis_client), produced)


def test_redis_down_for_ten_seconds(bootstrap, make_topic, tmp_path):
    """Half the jobs go in; Redis stops; the other half arrive while it is down; Redis is
    back 10 s later: the worker retried the same batches until it was, and every job is in
    once. The worker runs alone (`worker`, no supervisor), so no limiter pauses it when
    Redis stops answering and it surely holds batches it cannot push, however fast it is;
    test_limiter_backlog covers the pause."""
    server = RedisServer(tmp_path)
    client = redis.Redis.from_url(server.url)
    topic = make_topic(8)
    produced = numbered_jobs(40_000, keys=100)
    produce(bootstrap, topic, produced[:20_000])
    bridge = Bridge(bridge_env(bootstrap, server.url, topic, batch_size=200), "worker", "--partitions", "0-7")
    try:
        settle(client, "queue:default", 20_000, 60)
        server.stop()
        produce(bootstrap, topic, produced[20_000:])
        time.sleep(10)
        server.start()
        settle(client, "queue:default", len(produced), 120)
        assert bridge.stop() == 0, bridge.output()[-3000:]
        assert "Redis push failed, retrying the same batch" in bridge.output()
        assert_exactly_once_in_key_order(queue_jobs(client), produced)
    finally:
        bridge.kill()
        client.close()
        server.stop()


MALFORMED = [
    (b"\xff\xfe not protobuf", "not_protobuf"),
    (Job(queue="default", args_json="[1]").SerializeToString(), "missing_class"),
    (Job(job_class="lowercase", args_json="[1]").SerializeToString(), "bad_class"),
    (Job(job_class="BadArgs", args_json='{"not": "an array"}').SerializeToString(), "bad_args"),
    (Job(job_class="BadQueue", queue="a,b").SerializeToString(), "bad_queue"),
    (Job(job_class="BadExtra", extra_json='{"queue": "x"}').SerializeToString(), "reserved_extra_key"),
]


def test_malformed_messages_go_to_the_dead_letter_topic(bootstrap, make_topic, redis_url, redis_client):
    topic = make_topic(8)
    make_topic(1, name=f"{topic}.dlq")
    good = numbered_jobs(2000, keys=50)
    values, expected_reasons = [], {}
    for i, (key, value) in enumerate(good):
        values.append((key, value))
        if i % 2 == 0:
            bad, reason = MALFORMED[(i // 2) % len(MALFORMED)]
            bad_key = f"bad-{i}".encode()
            values.append((bad_key, bad))
            expected_reasons[bad_key] = (reason, bad)
    assert len(expected_reasons) == 1000
    produce(bootstrap, topic, values)
    bridge = Bridge(bridge_env(bootstrap, redis_url, topic), "run")
    try:
        settle(redis_client, "queue:default", len(good), 120)
        dead = read_topic(bootstrap, f"{topic}.dlq", len(expected_reasons), 60)
        assert bridge.proc.poll() is None, "the worker exited"
    finally:
        assert bridge.stop() == 0, bridge.output()[-3000:]
    assert_exactly_once_in_key_order(queue_jobs(redis_client), good)
    assert len(dead) == len(expected_reasons)
    for msg in dead:
        headers = dict(msg.headers())
        reason, value = expected_reasons[msg.key()]
        assert headers["k2s.reason"].decode() == reason
        assert msg.value() == value
        assert headers["k2s.topic"].decode() == topic
        assert int(headers["k2s.partition"]) in range(8) and int(headers["k2s.offset"]) >= 0
    assert sum(ledger_offsets(redis_client, topic).values()) == len(values), "rejected offsets advance too"


def test_the_ledger_waits_until_kafka_has_the_dead_letters(bootstrap, make_topic, redis_url, redis_client):
    # The dead-letter topic does not exist yet: the batch holding the bad message cannot be
    # recorded in Redis, so nothing at or past it is pushed and the ledger stays before it.
    topic = make_topic(1)
    good = numbered_jobs(100, keys=10)
    produce(bootstrap, topic, good[:50] + [(b"bad", b"\xff not protobuf")] + good[50:])
    bridge = Bridge(bridge_env(bootstrap, redis_url, topic, batch_size=10), "worker", "--partitions", "0")
    try:
        wait_for(lambda: redis_client.llen("queue:default") >= 50, 60, "the jobs before the bad message")
        assert unchanged(lambda: (redis_client.llen("queue:default"), ledger_offsets(redis_client, topic, partitions=1)),
                         "the queue and the ledger") == (50, {0: 50})
        make_topic(1, name=f"{topic}.dlq")
        settle(redis_client, "queue:default", 100, 60)
        [letter] = read_topic(bootstrap, f"{topic}.dlq", 1, 30)
    finally:
        assert bridge.stop() == 0, bridge.output()[-3000:]
    assert (letter.value(), dict(letter.headers())["k2s.offset"]) == (b"\xff not protobuf", b"50")
    assert ledger_offsets(redis_client, topic, partitions=1) == {0: 101}
    assert_exactly_once_in_key_order(queue_jobs(redis_client), good)


def test_resumes_at_the_committed_offset_when_it_is_ahead_of_the_ledger(bootstrap, make_topic, redis_url,
                                                                        redis_client):
    # Redis was replaced (or flushed) while the group had committed further: the worker
    # starts at the larger of the two, and pushes nothing Kafka says was already delivered.
    topic = make_topic(1)
    produced = numbered_jobs(100, keys=10)
    produce(bootstrap, topic, produced)
    committer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{topic}", "enable.auto.commit": False})
    committer.commit(offsets=[TopicPartition(topic, 0, 60)], asynchronous=False)
    committer.close()
    redis_client.set(f"k2s:ledger:g-{topic}:{topic}:0", 40)
    bridge = Bridge(bridge_env(bootstrap, redis_url, topic), "run")
    try:
        settle(redis_client, "queue:default", 40, 60)
    finally:
        assert bridge.stop() == 0, bridge.output()[-3000:]
    assert_exactly_once_in_key_order(queue_jobs(redis_client), produced[60:])
    assert "from 0@60" in bridge.output()


def test_scheduled_jobs_and_three_queues(bootstrap, make_topic, redis_url, redis_client):
    topic = make_topic(8)
    produced = numbered_jobs(3000, keys=30, queues=("critical", "default", "low"))
    later = time.time() + 3600
    scheduled = [(f"s{i}".encode(), Job(job_class="LaterJob", at=later + i, args_json=f"[{i}]").SerializeToString())
                 for i in range(50)]
    produce(bootstrap, topic, produced + scheduled)
    bridge = Bridge(bridge_env(bootstrap, redis_url, topic), "run")
    try:
        wait_for(lambda: redis_client.zcard("schedule") == 50 and sum(
            redis_client.llen(f"queue:{q}") for q in ("critical", "default", "low")) == 3000, 120, "all jobs")
    finally:
        assert bridge.stop() == 0, bridge.output()[-3000:]
    assert redis_client.smembers("queues") == {b"critical", b"default", b"low"}
    for q in ("critical", "default", "low"):
        assert redis_client.llen(f"queue:{q}") == 1000
        assert all(j["queue"] == q for j in queue_jobs(redis_client, q))
    for payload, score in redis_client.zrange("schedule", 0, -1, withscores=True):
        job = __import__("json").loads(payload)
        assert score == pytest.approx(later + job["args"][0], abs=1e-3)
        assert "at" not in job and "enqueued_at" not in job


def test_namespace_prefix_for_sidekiq_6(bootstrap, make_topic, redis_url, redis_client):
    topic = make_topic(2)
    produced = numbered_jobs(100, keys=10)
    produce(bootstrap, topic, produced)
    bridge = Bridge(bridge_env(bootstrap, redis_url, topic, redis_namespace="myapp"), "run")
    try:
        settle(redis_client, "myapp:queue:default", len(produced), 60)
    finally:
        assert bridge.stop() == 0
    assert redis_client.smembers("myapp:queues") == {b"default"}
    assert not redis_client.exists("queue:default")
    assert_exactly_once_in_key_order(queue_jobs(redis_client, namespace="myapp"), produced)


@pytest.mark.skipif(encoder._encoder_c is None, reason="compiled encoder not built")
def test_consumed_messages_are_read_in_place_as_the_accessors_read_them(bootstrap, make_topic):
    """Messages that librdkafka made (not the constructor the layout probe uses): the
    compiled encoder reads them in place and gets what the reference gets through the
    accessors: values (a tombstone too), timestamps, partitions, offsets, and the
    end-of-partition events librdkafka reports as Messages with an error."""
    topic = make_topic(4)
    values = numbered_jobs(300, keys=10) + [(b"bad", b"\xff not protobuf"), (b"tombstone", None)]
    produce(bootstrap, topic, values)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{topic}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "enable.partition.eof": True})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(4)])
    messages, deadline = [], time.monotonic() + 60
    try:
        while sum(m.error() is not None for m in messages) < 4 and time.monotonic() < deadline:
            messages += consumer.consume(500, 1.0)
    finally:
        consumer.close()
    assert sum(m.error() is None for m in messages) == len(values)
    assert encoder._encoder_c.message_fields(type(messages[0])) is not None

    options = encoder.EncoderOptions(jid="origin")
    now_ms = int(time.time() * 1000)
    ours = encoder._encoder_c.Encoder(options).encode_batch(topic, messages, now_ms)
    reference = encoder._encoder_py.Encoder(options).encode_batch(topic, messages, now_ms)
    assert ours == reference
    assert sum(len(p) for p in ours.queues.values()) == 300 and len(ours.rejects) == 2
    assert len(ours.errors) >= 4  # an end-of-partition event for each partition, at least
    assert {int(p) for p in ours.offsets} == {0, 1, 2, 3}
