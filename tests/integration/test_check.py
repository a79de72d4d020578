"""`kafka2sidekiq check` against the real services: what an operator reads at 3 a.m."""

import subprocess
import sys

from confluent_kafka.admin import AdminClient

from kafka2sidekiq.encoder import describe, select

from helpers import RedisServer, Sidekiq, bridge_env, numbered_jobs, produce, wait_for


def visible(bootstrap: str, *topics: str) -> None:
    """A topic just created reaches the brokers' metadata a moment later."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    wait_for(lambda: all(t in admin.list_topics(timeout=5).topics for t in topics), 30, f"{topics} in metadata")


def check(env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kafka2sidekiq", "check"], env=env,
                          capture_output=True, text=True, timeout=60)


def test_reports_topic_redis_no_sidekiq_and_what_the_bridge_would_do(bootstrap, make_topic, redis_url,
                                                                      redis_client):
    topic = make_topic(3)
    make_topic(1, name=f"{topic}.dlq")
    visible(bootstrap, topic, f"{topic}.dlq")
    produce(bootstrap, topic, numbered_jobs(40))
    redis_client.hset(f"k2s:ledger:g-{topic}:{topic}", mapping={"0": 5})  # a bridge pushed some before
    out = check(bridge_env(bootstrap, redis_url, topic, workers=2))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"ok   kafka: topic '{topic}' has 3 partitions" in out.stdout
    assert f"ok   kafka: dead-letter topic '{topic}.dlq' exists" in out.stdout
    version = redis_client.info("server")["redis_version"]
    assert f"ok   redis: {version} at " in out.stdout and "maxmemory-policy noeviction" in out.stdout
    assert "warn sidekiq: no Sidekiq process is running" in out.stdout
    assert (f"ok   bridge: 2 worker(s) would read 3 partition(s) as group 'g-{topic}', 35 message(s) "
            f"waiting; {describe(select())} encoder, float timestamps, rejects to '{topic}.dlq'") in out.stdout


def test_missing_topic_and_unreachable_redis_fail_with_the_reason(bootstrap):
    out = check(bridge_env(bootstrap, "redis://bridge:s3cret@127.0.0.1:1/0", "no-such-topic"))
    assert out.returncode == 1
    assert "FAIL kafka: topic 'no-such-topic' not found" in out.stdout
    assert "FAIL redis: cannot reach redis://bridge:***@127.0.0.1:1/0" in out.stdout
    assert "s3cret" not in out.stdout + out.stderr


def test_a_redis_on_a_unix_socket_is_checked_like_any_other(bootstrap, make_topic, tmp_path):
    topic = make_topic(1)
    make_topic(1, name=f"{topic}.dlq")
    visible(bootstrap, topic, f"{topic}.dlq")
    server = RedisServer(tmp_path)
    try:
        out = check(bridge_env(bootstrap, server.url, topic))
    finally:
        server.stop()
    assert out.returncode == 0, out.stdout + out.stderr
    assert f" at {server.url}, used_memory " in out.stdout, out.stdout


def test_sees_real_sidekiq_and_fails_ms_timestamps_it_cannot_read(bootstrap, make_topic, redis_url,
                                                                  redis_client, tmp_path):
    topic = make_topic(1)
    visible(bootstrap, topic)
    with Sidekiq(tmp_path, redis_url, queues=("default", "low")) as sidekiq:
        wait_for(lambda: redis_client.scard("processes") == 1, 60, "Sidekiq's heartbeat")
        floats = check(bridge_env(bootstrap, redis_url, topic))
        ms = check(bridge_env(bootstrap, redis_url, topic, timestamps="ms"))
    assert floats.returncode == 0, floats.stdout + sidekiq.output()[-2000:]
    seen = "ok   sidekiq: 1 process(es), version(s) unknown (Sidekiq 6 records none), queues default, low"
    assert seen in floats.stdout and "K2S_TIMESTAMPS" not in floats.stdout
    # Sidekiq before 8 reads ms as seconds: enqueued_at in the year 58885, a job that never
    # looks late. The bridge must not start that way unnoticed: one FAIL line, exit 1.
    assert ms.returncode == 1, ms.stdout
    assert seen in ms.stdout
    assert [line for line in ms.stdout.splitlines() if line.startswith("FAIL")] == [
        "FAIL sidekiq: K2S_TIMESTAMPS=ms needs Sidekiq 8 everywhere; seen unknown (Sidekiq 6 records none): "
        "they show ms as dates far ahead"]
