"""/metrics, /healthz and /readyz of a running bridge, checked against what is in Redis
and against a worker that stops making progress."""

import os
import re
import signal
import urllib.error
import urllib.request

import psutil
from prometheus_client.parser import text_string_to_metric_families

from helpers import Bridge, bridge_env, free_port, numbered_jobs, produce, settle, wait_for


def worker_pid(bridge: Bridge, slot: int) -> int:
    return int(re.findall(rf"started worker {slot} \(pid (\d+)\)", bridge.output())[-1])


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except urllib.error.URLError as exc:  # not listening yet
        return 0, str(exc)


def samples(base: str) -> dict[tuple, float]:
    """{(sample name, (label, value), ...): value} of one scrape."""
    status, text = get(base + "/metrics")
    assert status == 200
    return {(s.name, *sorted(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_match_redis_and_health_follows_a_stopped_worker(bootstrap, make_topic, redis_url,
                                                                   redis_client):
    topic = make_topic(8)
    make_topic(1, name=f"{topic}.dlq")
    jobs = numbered_jobs(6000, keys=60, queues=("default", "mailers"))
    produce(bootstrap, topic, jobs + [(b"bad", b"\xff\x00 not a job")] * 25)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    bridge = Bridge(bridge_env(bootstrap, redis_url, topic, workers=2, http=f"127.0.0.1:{port}",
                               stall_seconds=2, liveness_seconds=120), "run")
    try:
        wait_for(lambda: get(base + "/readyz")[0] == 200, 60, "/readyz to say ready")
        settle(redis_client, "queue:default", 3000, 60)
        settle(redis_client, "queue:mailers", 3000, 30)

        def caught_up():
            m = samples(base)
            return m if m.get(("k2s_messages_rejected_total", ("reason", "not_protobuf"))) == 25 else None
        m = wait_for(caught_up, 15, "the scrape to count the 25 rejects")
        for queue in ("default", "mailers"):
            assert m[("k2s_jobs_pushed_total", ("queue", queue))] == redis_client.llen(f"queue:{queue}") == 3000
        assert m[("k2s_batch_size_messages_count",)] >= 2
        assert m[("k2s_batch_size_messages_sum",)] == 6025
        assert m[("k2s_redis_push_seconds_count",)] == m[("k2s_batch_size_messages_count",)]
        lags = {k[1][1]: v for k, v in m.items() if k[0] == "k2s_consumer_lag_messages"}
        assert sorted(lags, key=int) == [str(p) for p in range(8)] and not any(lags.values())
        assert m[("k2s_time_to_drain_seconds",)] == 0
        assert m[("k2s_limiter_paused",)] == 0 and m[("k2s_redis_used_memory_bytes",)] > 0
        assert m[("k2s_process_resident_memory_bytes", ("role", "worker"), ("slot", "1"))] > 10 * 2**20

        assert get(base + "/healthz") == (200, "ok\n")
        worker = psutil.Process(worker_pid(bridge, 0))
        os.kill(worker.pid, signal.SIGSTOP)
        try:
            status, body = wait_for(lambda: (r := get(base + "/healthz"))[0] == 503 and r, 10,
                                    "/healthz to fail")
            assert f"worker 0 (pid {worker.pid}): no progress" in body
            assert get(base + "/readyz")[0] == 200  # ready is about Kafka and Redis, not progress
        finally:
            os.kill(worker.pid, signal.SIGCONT)
        wait_for(lambda: get(base + "/healthz")[0] == 200, 10, "/healthz to recover")

        os.kill(worker.pid, signal.SIGKILL)
        wait_for(lambda: samples(base).get(("k2s_worker_restarts_total", ("slot", "0"))) == 1, 15,
                 "the restart to be counted")
        after = samples(base)
        assert after[("k2s_jobs_pushed_total", ("queue", "default"))] == 3000  # history kept
    finally:
        assert bridge.stop() == 0, bridge.output()[-3000:]
    assert "Traceback" not in bridge.output()
