"""Lag and readiness from the truth: the lag is what the broker has and Redis has not,
even while Redis is down and the workers fetch nothing; /readyz follows the broker
going away and coming back. Each test stops only what it started itself (by PID)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis

from helpers import REPO, Bridge, RedisServer, bridge_env, free_port, numbered_jobs, produce, unchanged, wait_for
from test_metrics_health import get, samples


def lags(base: str) -> dict[str, float]:
    return {k[1][1]: v for k, v in samples(base).items() if k[0] == "k2s_consumer_lag_messages"}


def test_lag_counts_the_messages_waiting_while_redis_is_down(bootstrap, make_topic, tmp_path):
    topic = make_topic(4)
    server = RedisServer(tmp_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    bridge = Bridge(bridge_env(bootstrap, server.url, topic, workers=1, http=f"127.0.0.1:{port}"), "run")
    try:
        wait_for(lambda: get(base + "/readyz")[0] == 200, 60, "/readyz to say ready")
        produce(bootstrap, topic, numbered_jobs(4, keys=4))
        # in Redis first: a lag of 0 alone can be end offsets from before the 4 were produced
        with redis.Redis.from_url(server.url) as client:
            wait_for(lambda: client.llen("queue:default") == 4, 20, "the 4 first jobs to be in Redis")
        wait_for(lambda: (lag := lags(base)) and len(lag) == 4 and not any(lag.values()), 20, "a lag of 0")
        server.stop()
        produce(bootstrap, topic, numbered_jobs(6, keys=6))
        seen = []
        try:
            lag = wait_for(lambda: seen.append(lags(base)) or (sum(seen[-1].values()) == 6 and seen[-1]), 15,
                           "the lag to count the 6 messages waiting")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the lag was {seen[-1:]}\n{bridge.output()[-3000:]}") from None
        drain = samples(base)[("k2s_time_to_drain_seconds",)]
        print(f"Redis down, 6 messages waiting: lag {lag}, time to drain {drain}")
        assert drain > 0, f"time to drain {drain} with {lag} waiting"
        server.start()
        wait_for(lambda: (lag := lags(base)) and not any(lag.values()), 30, "the lag to return to 0")
        m = wait_for(lambda: (m := samples(base))[("k2s_jobs_pushed_total", ("queue", "default"))] == 10 and m,
                     5, "the counters of the next snapshot")
        assert m[("k2s_messages_consumed_total",)] == 10
        assert m[("k2s_redis_retries_total",)] >= 1  # the first push after it met the connection it had closed
    finally:
        code = bridge.stop()
        server.stop()
    assert code == 0, bridge.output()[-3000:]


class OwnBroker:
    """A Kafka broker of this test's own (scripts/services.py in a folder of the test's),
    so killing it disturbs no other test."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port(3)  # the listeners: plain, controller, SASL
        self.env = {**os.environ, "K2S_SERVICES_DIR": str(directory), "K2S_SERVICES_NAME": "readiness",
                    "K2S_LOCAL_KAFKA_PORT": str(self.port), "K2S_LOCAL_REDIS_PORT": str(free_port())}
        self.pid_file = directory / "kafka.pid"
        self.start()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        up = subprocess.run([sys.executable, str(REPO / "scripts" / "services.py"), "up", "kafka"], env=self.env,
                            capture_output=True, text=True, timeout=120)
        assert up.returncode == 0, up.stdout + up.stderr

    def kill(self) -> None:
        pid = int(self.pid_file.read_text())
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not Path(f"/proc/{pid}").exists() or "Z" in _state(pid), 10, "the broker to die")

    def stop(self) -> None:
        subprocess.run([sys.executable, str(REPO / "scripts" / "services.py"), "down", "kafka"], env=self.env,
                       capture_output=True, timeout=60)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_readyz_fails_within_the_bound_of_a_broker_kill_and_recovers(redis_url, tmp_path):
    from confluent_kafka.admin import AdminClient, NewTopic

    broker = OwnBroker(tmp_path)
    bound = 4
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    bridge = None
    try:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        admin.create_topics([NewTopic("jobs", num_partitions=2, replication_factor=1)])["jobs"].result(timeout=30)
        bridge = Bridge(bridge_env(broker.bootstrap, redis_url, "jobs", workers=1, http=f"127.0.0.1:{port}",
                                   broker_timeout_seconds=bound), "run")
        wait_for(lambda: get(base + "/readyz")[0] == 200, 60, "/readyz to say ready")
        broker.kill()
        killed = time.monotonic()
        status, body = wait_for(lambda: (r := get(base + "/readyz"))[0] == 503 and r, bound + 10,
                                "/readyz to fail")
        took = time.monotonic() - killed
        print(f"/readyz 503 {took:.1f}s after the broker was killed (bound {bound}s): {body.strip()}")
        assert "Kafka has not answered" in body, body
        assert took <= bound + 2 + 1, f"/readyz failed {took:.1f}s after the kill (bound {bound}s)"
        assert get(base + "/healthz")[0] == 200  # alive: restarting it would not bring the broker back
        broker.start()
        last = []
        try:
            wait_for(lambda: last.append(get(base + "/readyz")) or last[-1][0] == 200, 60, "/readyz to recover")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; it said {last[-1:]}\n{bridge.output()[-3000:]}") from None
    finally:
        code = bridge.stop() if bridge else 0
        broker.stop()
    assert code == 0, bridge.output()[-3000:]


def first_answer(base: str, timeout: float = 30) -> tuple[int, str]:
    """The first answer of /readyz, asked for as soon as the supervisor listens."""
    return wait_for(lambda: (r := get(base + "/readyz"))[0] and r, timeout, f"{base} to answer", interval=0.02)


def test_readyz_is_503_until_the_host_holds_a_partition(bootstrap, make_topic, redis_url):
    # one partition, two hosts: the second joins the group and gets nothing
    topic = make_topic(1)
    bases, bridges = [], []
    for name in ("first", "second"):
        port = free_port()
        bases.append(f"http://127.0.0.1:{port}")
        bridges.append(Bridge(bridge_env(bootstrap, redis_url, topic, workers=1, http=f"127.0.0.1:{port}",
                                         instance_id=name, leave_on_stop="true"), "run"))
        # the supervisor listens before it starts the coordinator: the first answer precedes any assignment
        status, body = first_answer(bases[-1])
        assert status == 503 and "no partition assignment from Kafka yet" in body, (name, status, body)
        if name == "first":
            wait_for(lambda: get(bases[0] + "/readyz") == (200, "ok\n"), 60, "the first host to be ready")
    first, second = bases
    try:
        wait_for(lambda: "holds no partition" in get(second + "/readyz")[1], 30, "the second host to join empty")

        def verdicts():
            return get(first + "/readyz"), get(second + "/readyz"), samples(second)[("k2s_partitions_owned",)]
        ready, unready, owned = unchanged(verdicts, "the two hosts' readiness")
        print(f"the host without a partition: {unready}")
        assert ready == (200, "ok\n")
        assert unready == (503, "this host holds no partition of the topic\n") and owned == 0
        assert get(second + "/healthz")[0] == 200  # alive: it waits for a partition, nothing to restart

        assert bridges[0].stop() == 0, bridges[0].output()[-3000:]  # leaves the group for good
        wait_for(lambda: get(second + "/readyz") == (200, "ok\n"), 30, "the second host to take the partition")
    finally:
        codes = [bridge.stop() for bridge in bridges]
    assert codes == [0, 0], bridges[1].output()[-3000:]


def test_readyz_fails_while_redis_is_down_not_while_the_limiter_pauses(bootstrap, make_topic, tmp_path):
    topic = make_topic(1)
    server = RedisServer(tmp_path)
    client = redis.Redis.from_url(server.url)
    # Sidekiq is behind: 20 jobs queued before the bridge starts, over K2S_LIMITER_MAX_QUEUE=10,
    # so the limiter's first verdict is a pause (a worker pushes nothing before one)
    client.sadd("queues", "default")
    client.lpush("queue:default", *(json.dumps({"class": "Waiting", "args": [i], "queue": "default"})
                                    for i in range(20)))
    produce(bootstrap, topic, numbered_jobs(300, keys=10))
    port, interval = free_port(), 0.05
    base = f"http://127.0.0.1:{port}"
    bridge = Bridge(bridge_env(bootstrap, server.url, topic, workers=1, http=f"127.0.0.1:{port}", batch_size=5,
                               limiter_max_queue=10, limiter_interval_ms=int(interval * 1000)), "run")
    paused = lambda: samples(base)[("k2s_limiter_paused",)] == 1  # noqa: E731
    try:
        # the queue-depth mark pauses the bridge for real: 300 jobs wait in Kafka, no Sidekiq
        first_answer(base)
        wait_for(paused, 60, "the limiter to pause consumption")
        depth = unchanged(lambda: client.llen("queue:default"), "the queue while paused")
        assert depth == 20, f"{depth} jobs queued: the limiter did not hold the backlog in Kafka"
        assert "limiter: pausing consumption" in bridge.output()
        assert paused() and get(base + "/readyz") == (200, "ok\n"), "a limiter pause is not unready"

        server.stop()
        gone = time.monotonic()
        status, body = wait_for(lambda: (r := get(base + "/readyz"))[0] == 503 and r, 10, "/readyz to fail",
                                interval=0.02)
        took = time.monotonic() - gone
        print(f"/readyz 503 {took:.2f}s after Redis stopped (poll every {interval}s): {body.strip()}")
        assert body == "Redis does not answer\n", body
        assert took <= interval + 1, f"/readyz failed {took:.2f}s after Redis stopped"

        server.start()
        back = time.monotonic()
        wait_for(lambda: get(base + "/readyz") == (200, "ok\n"), 10, "/readyz to recover", interval=0.02)
        took = time.monotonic() - back
        print(f"/readyz 200 {took:.2f}s after Redis answered again")
        assert took <= interval + 1, f"/readyz recovered {took:.2f}s after Redis came back"
        assert paused(), "the queue is still over the mark: still paused, and ready"
        assert client.llen("queue:default") == depth
    finally:
        code = bridge.stop()
        client.close()
        server.stop()
    assert code == 0, bridge.output()[-3000:]
