"""`kafka2sidekiq produce` and `push` from the shell, against the real services."""

import json
import subprocess
import sys
import time

from confluent_kafka import Consumer, TopicPartition

from helpers import bridge_env, queue_jobs
from kafka2sidekiq._proto.job_pb2 import Job


def cli(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kafka2sidekiq", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_produce_sends_the_described_job(bootstrap, make_topic, redis_url):
    topic = make_topic(1)
    out = cli(bridge_env(bootstrap, redis_url, topic), "produce", "--class", "Billing::ChargeJob",
              "--args", '[42, "two"]', "--queue", "critical", "--retry", "3", "--key", "app-7",
              "--extra", '{"tags":["billing"]}')
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"{topic}/0@0"
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{topic}"})
    consumer.assign([TopicPartition(topic, 0, 0)])
    deadline, msg = time.monotonic() + 30, None
    while msg is None and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
    consumer.close()
    assert msg is not None and msg.key() == b"app-7"
    job = Job.FromString(msg.value())
    assert (job.job_class, job.args_json, job.queue, job.retry_count, job.extra_json) == \
        ("Billing::ChargeJob", '[42, "two"]', "critical", 3, '{"tags":["billing"]}')


def test_push_writes_the_job_and_refuses_a_bad_one(bootstrap, redis_url, redis_client):
    env = bridge_env(bootstrap, redis_url, "unused")
    out = cli(env, "push", "--class", "HardJob", "--args", '[1, "two"]', "--retry", "false")
    assert out.returncode == 0, out.stderr
    [job] = queue_jobs(redis_client)
    assert (job["class"], job["args"], job["retry"]) == ("HardJob", [1, "two"], False)
    assert json.loads(out.stdout.split(" ", 1)[1]) == job
    bad = cli(env, "push", "--class", "HardJob", "--args", '{"not": "an array"}')
    assert bad.returncode == 65 and "--args must be an array, not an object" in bad.stderr
    assert cli(env, "push", "--class", "HardJob", "--retry", "maybe").returncode == 2
    assert redis_client.llen("queue:default") == 1


def test_pushed_jobs_never_share_a_jid_and_claim_no_kafka_origin(bootstrap, redis_url, redis_client):
    # K2S_JID_MODE=origin derives a jid from the Kafka message; a pushed job has none, so
    # each gets a random jid of its own and no k2s_origin the performed middleware would ack
    env = bridge_env(bootstrap, redis_url, "unused", jid_mode="origin", add_origin="true")
    for _ in range(3):
        assert cli(env, "push", "--class", "HardJob", "--args", "[1]").returncode == 0
    jobs = queue_jobs(redis_client)
    assert len(jobs) == 3 and len({j["jid"] for j in jobs}) == 3
    assert not any("k2s_origin" in j for j in jobs)

