"""Settings the README promises, through ``kafka2sidekiq run`` as a whole against the real
broker and Redis: a namespace with ms timestamps (queues, schedule, ledger, limiter), the
class and queue allow-lists with an ActiveJob wrapper, a dead-letter topic of one's own,
and the limiter's queue-depth and latency marks."""

import json
import re
import subprocess
import sys
import time

from helpers import (WRAPPER, Bridge, active_job, assert_exactly_once_in_key_order, bridge_env, numbered_jobs, produce,
                     queue_jobs, unchanged, wait_for)
from kafka2sidekiq import Job


def dead_letters(env: dict) -> list[str]:
    out = subprocess.run([sys.executable, "-m", "kafka2sidekiq", "dlq", "list"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout.splitlines()[:-1]


def test_namespace_ms_timestamps_allow_lists_and_an_own_dead_letter_topic(bootstrap, make_topic, redis_url,
                                                                          redis_client):
    topic = make_topic(4)
    make_topic(1, name=f"{topic}-rejects")
    env = bridge_env(bootstrap, redis_url, topic, workers=2, redis_namespace="shop", timestamps="ms",
                     dlq_topic=f"{topic}-rejects", queue_allow="default,mail",
                     class_allow=f"NumberedJob,{WRAPPER},SendReceipt")
    numbered = numbered_jobs(500, keys=20)
    later = time.time() + 3600
    others = [(b"aj", active_job("SendReceipt", "mail", [1])),
              (b"aj", active_job("DropTables", "mail", [2])),  # wrapped class not allowed
              (b"q", Job(job_class="NumberedJob", queue="secret", args_json="[1]").SerializeToString()),
              (b"at", Job(job_class="NumberedJob", queue="mail", args_json='["later", 0]', at=later)
               .SerializeToString())]
    produce(bootstrap, topic, numbered + others)
    bridge = Bridge(env, "run")
    try:
        wait_for(lambda: redis_client.llen("shop:queue:default") >= 500 and redis_client.zcard("shop:schedule"),
                 60, "every job in the namespace")
        letters = wait_for(lambda: len(dead_letters(env)) == 2 and dead_letters(env), 60, "two dead letters")
    finally:
        assert bridge.stop() == 0, bridge.output()[-3000:]

    assert_exactly_once_in_key_order(queue_jobs(redis_client, "default", namespace="shop"), numbered)
    # nothing outside the namespace: Sidekiq with redis-namespace would never see it
    assert all(k.startswith(b"shop:") for k in redis_client.keys("*")), redis_client.keys("*")
    assert redis_client.smembers("shop:queues") == {b"default", b"mail"}
    [receipt] = queue_jobs(redis_client, "mail", namespace="shop")
    assert (receipt["class"], receipt["wrapped"], receipt["args"][0]["arguments"]) == (WRAPPER, "SendReceipt", [1])
    for job in (receipt, *queue_jobs(redis_client, "default", namespace="shop")[:3]):
        # Sidekiq 8's integer milliseconds, within a minute of now
        assert isinstance(job["created_at"], int) and isinstance(job["enqueued_at"], int), job
        assert abs(job["enqueued_at"] / 1000 - time.time()) < 60
    [(scheduled, score)] = redis_client.zrange("shop:schedule", 0, -1, withscores=True)
    assert json.loads(scheduled)["args"] == ["later", 0] and abs(score - later) < 0.01
    ledger = [int(redis_client.get(f"shop:k2s:ledger:g-{topic}:{topic}:{p}") or 0) for p in range(4)]
    assert sum(ledger) == len(numbered) + len(others)  # every offset recorded, dead letters included
    reasons = sorted(line.split("reason=")[1].split()[0] for line in letters)
    assert reasons == ["class_not_allowed", "queue_not_allowed"], letters
    assert all(f"origin={topic}/" in line for line in letters)


def test_limiter_queue_depth_and_latency_marks_in_a_namespace(bootstrap, make_topic, redis_url, redis_client):
    topic = make_topic(2)
    produced = numbered_jobs(20_000, keys=20)
    produce(bootstrap, topic, produced)
    # an old job waits: the oldest is 100 s old, over K2S_LIMITER_MAX_LATENCY_SECONDS
    stale = json.dumps({"class": "Old", "args": [], "jid": "0" * 24, "enqueued_at": time.time() - 100})
    redis_client.sadd("shop:queues", "default")
    redis_client.lpush("shop:queue:default", stale)
    env = bridge_env(bootstrap, redis_url, topic, workers=1, batch_size=50, redis_namespace="shop",
                     limiter_max_queue=300, limiter_max_latency_seconds=10, limiter_interval_ms=50,
                     limiter_jitter_ms=0)
    bridge = Bridge(env, "run")
    pauses = lambda: bridge.output().count("limiter: pausing")  # noqa: E731
    try:
        wait_for(pauses, 30, "the limiter to pause for the old job")
        why = bridge.output().split("limiter: pausing")[1].splitlines()[0]
        assert re.search(r"oldest job 1\d\d\.\ds old \(max 10s\)", why), why
        assert unchanged(lambda: redis_client.llen("shop:queue:default"), "the queue") == 1, "paused: nothing pushed"
        redis_client.rpop("shop:queue:default")  # Sidekiq takes the old job: the bridge resumes
        wait_for(lambda: pauses() >= 2, 30, "the limiter to pause at the queue-depth mark")
        assert "jobs queued (max 300)" in bridge.output().split("limiter: pausing")[2].splitlines()[0]
        depth = unchanged(lambda: redis_client.llen("shop:queue:default"), "the queue")
        assert 300 <= depth < len(produced), "the backlog waits in Kafka, not in Redis"
        seen = []  # Sidekiq catches up: the bridge resumes, pauses, resumes until all are through
        deadline = time.monotonic() + 120
        while len(seen) < len(produced) and time.monotonic() < deadline:
            seen += [json.loads(p) for p in redis_client.rpop("shop:queue:default", 100) or []]
            time.sleep(0.01)
    finally:
        assert bridge.stop() == 0, bridge.output()[-3000:]
    assert_exactly_once_in_key_order(seen, produced)
