"""Every way a command fails is one line on stderr, naming the command, with an exit code
of its own, and never a traceback: against real Kafka and Redis (one Redis with a
password, started by the test itself), unreachable ones, and jobs the bridge would refuse."""

import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from helpers import bridge_env, free_port, wait_for
from kafka2sidekiq import exits
from kafka2sidekiq._proto.job_pb2 import Job

PASSWORD = "k2s-cli-test"


def cli(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kafka2sidekiq", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def one_line(out: subprocess.CompletedProcess, code: int, starts: str, says: str = "") -> str:
    lines = out.stderr.splitlines()
    assert out.returncode == code and len(lines) == 1, f"exit {out.returncode}:\n{out.stderr}"
    assert lines[0].startswith(starts) and says in lines[0], lines[0]
    assert "Traceback" not in out.stderr + out.stdout
    return lines[0]


@pytest.fixture(scope="module")
def locked_redis(tmp_path_factory):
    """A redis-server of this test's own that wants a password; stopped by its PID."""
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                             "--appendonly", "no", "--requirepass", PASSWORD,
                             "--dir", str(tmp_path_factory.mktemp("locked-redis"))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis
    client = redis.Redis(port=port, password=PASSWORD)
    wait_for(lambda: _pings(client), 10, "the locked redis-server to answer")
    yield port
    proc.terminate()
    proc.wait(20)


def _pings(client) -> bool:
    import redis
    try:
        return client.ping()
    except redis.ConnectionError:
        return False


@pytest.fixture
def dead_letter(bootstrap, make_topic):
    """A topic whose dead-letter topic holds one letter."""
    topic = make_topic(1)
    make_topic(1, name=f"{topic}.dlq")
    job = Job(job_class="EvilJob", args_json="[1]").SerializeToString()
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": bootstrap})
    p.produce(f"{topic}.dlq", job, b"k", headers=[("k2s.reason", b"class_not_allowed"), ("k2s.topic", topic.encode()),
                                                  ("k2s.partition", b"0"), ("k2s.offset", b"0")])
    assert p.flush(30) == 0
    return topic


def test_redis_unreachable_and_refused(bootstrap, locked_redis, dead_letter):
    closed = f"redis://127.0.0.1:{free_port()}/0"
    wrong = f"redis://:not-{PASSWORD}@127.0.0.1:{locked_redis}/0"
    none = f"redis://127.0.0.1:{locked_redis}/0"
    for url, code, says in ((closed, exits.UNAVAILABLE, "cannot reach Redis at " + closed),
                            (wrong, exits.REFUSED, "refused"), (none, exits.REFUSED, "refused")):
        env = bridge_env(bootstrap, url, dead_letter)
        line = one_line(cli(env, "push", "--class", "HardJob"), code, "kafka2sidekiq push: ", says)
        assert f"not-{PASSWORD}" not in line
        out = cli(env, "dlq", "replay", "--to", "queue:quarantine")
        one_line(out, code, "kafka2sidekiq dlq replay: ", says)
    env = bridge_env(bootstrap, f"redis://:{PASSWORD}@127.0.0.1:{locked_redis}/0", dead_letter)
    assert cli(env, "push", "--class", "HardJob").returncode == 0  # the right password: pushed


def test_kafka_unreachable(redis_url):
    env = bridge_env(f"127.0.0.1:{free_port()}", redis_url, "jobs", kafka_message_timeout_ms="1500")
    one_line(cli(env, "produce", "--class", "HardJob"), exits.UNAVAILABLE, "kafka2sidekiq produce: cannot reach Kafka")


def test_a_lone_worker_that_cannot_boot(bootstrap, make_topic, redis_url):
    """`worker` logs as it runs; its last line says why it stopped."""
    closed = bridge_env(bootstrap, f"redis://127.0.0.1:{free_port()}/0", make_topic(1), boot_seconds="1")
    out = cli(closed, "worker", "--partitions", "0")
    assert out.returncode == exits.UNAVAILABLE and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.splitlines()[-1].startswith("kafka2sidekiq worker: cannot reach Redis at redis://127.0.0.1:")
    missing = bridge_env(bootstrap, redis_url, "k2s-no-such-topic", boot_seconds="5")
    out = cli(missing, "worker", "--partitions", "0")
    assert out.returncode == exits.BOOT and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.splitlines()[-1].startswith("kafka2sidekiq worker: cannot read topic 'k2s-no-such-topic'")


def test_a_job_the_bridge_would_refuse_is_not_sent(bootstrap, make_topic, redis_url, redis_client):
    topic = make_topic(1)
    env = bridge_env(bootstrap, redis_url, topic)
    cases = [
        (["--args", '[1, "two"'], "--args is not valid JSON: Expecting ',' delimiter at column 10"),
        (["--args", '{"a": 1}'], "--args must be an array, not an object"),
        (["--extra", '{"jid": "x"}'], "--extra sets jid, which the bridge writes itself"),
        (["--queue", "two words"], "--queue 'two words' is not printable ASCII without space"),
    ]
    for flags, says in cases:
        for command in ("produce", "push"):
            one_line(cli(env, command, "--class", "HardJob", *flags), exits.INVALID_JOB,
                     f"kafka2sidekiq {command}: the bridge would refuse this job", says)
    one_line(cli(env, "produce", "--class", "hard_job"), exits.INVALID_JOB, "kafka2sidekiq produce: ",
             "--class 'hard_job' is not a Ruby constant")
    one_line(cli(env | {"K2S_CLASS_ALLOW": "SafeJob"}, "push", "--class", "HardJob"), exits.INVALID_JOB,
             "kafka2sidekiq push: ", "--class 'HardJob' (or --wrapped) is not in K2S_CLASS_ALLOW")
    one_line(cli(env, "push", "--class", "HardJob", "--jid", "5C1B0E4A9D3F6E2A8B7C1D0E"), exits.USAGE,
             "kafka2sidekiq push: argument --jid: '5C1B0E4A9D3F6E2A8B7C1D0E': expected 24 lowercase hex")
    assert redis_client.llen("queue:default") == 0
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{topic}"})
    assert consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (0, 0)  # nothing produced
    consumer.close()


def test_flags_after_the_command_and_the_debug_traceback(bootstrap, redis_url, redis_client):
    env = bridge_env(bootstrap, redis_url, "unused")
    out = cli(env, "push", "--class", "HardJob", "--log-format", "json")
    assert out.returncode == 0, out.stderr
    closed = bridge_env(bootstrap, f"redis://127.0.0.1:{free_port()}/0", "unused")
    out = cli(closed, "push", "--class", "HardJob", "--debug")
    assert out.returncode == exits.UNAVAILABLE and "Traceback" in out.stderr
    assert out.stderr.splitlines()[-1].startswith("kafka2sidekiq push: cannot reach Redis")


def test_run_logs_its_effective_settings_without_secrets(bootstrap, make_topic, redis_url):
    from helpers import Bridge

    topic = make_topic(1)
    bridge = Bridge(bridge_env(bootstrap, redis_url, topic, workers=1, kafka_sasl_password="hunter2"), "run")
    try:
        line = wait_for(lambda: next((l for l in bridge.output().splitlines() if "settings: " in l), None), 20,
                        "the settings line")
    finally:
        bridge.stop()
    assert "K2S_WORKERS=1" in line and f"K2S_TOPIC={topic}" in line and "K2S_KAFKA_SASL_PASSWORD=***" in line
    assert "hunter2" not in Path(bridge.log.name).read_text()
