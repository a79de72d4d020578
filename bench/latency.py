"""Latency, produce -> in Redis, at fixed offered loads: a paced producer process sends
the benchmark job at a set rate; the bridge (kafka2sidekiq run) moves it; a reader pops
the jobs from Redis as they land and compares the time with the job's created_at, which
is the Kafka timestamp taken when the producer called produce(). The reader keeps the
queue short, as Sidekiq would.

    python -m bench.latency produce BOOTSTRAP TOPIC RATE SECONDS   (the producer process)
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request

import msgspec
import redis

from . import e2e


class _Created(msgspec.Struct):
    created_at: float


def produce(bootstrap: str, topic: str, rate: float, seconds: float) -> int:
    """Send ``rate`` jobs a second for ``seconds``; prints and returns how many."""
    from confluent_kafka import Producer

    from .bench_encoder import small_job

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1})
    producer.list_topics(topic, timeout=30)  # connected before the clock starts
    value, sent, keys = small_job(), 0, [f"key-{i}".encode() for i in range(1000)]
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds:
        due = int(rate * elapsed)
        while sent < due:
            try:
                producer.produce(value=value, topic=topic, key=keys[sent % 1000])
                sent += 1
            except BufferError:
                producer.poll(0.001)
        producer.poll(0)
        time.sleep(0.001)
    producer.flush(60)
    print(sent, flush=True)
    return sent


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


def run(bootstrap: str, redis_url: str, workers: int, rates: list[float], seconds: float,
        progress=lambda: None) -> list[dict]:
    """p50/p99/max latency in ms at each offered rate, against one running bridge."""
    topic = e2e.new_topic(bootstrap)
    url = e2e.db_url(redis_url, 6)
    client = redis.Redis.from_url(url)
    client.flushdb()
    port = _free_port()
    bridge = e2e.ours(bootstrap, topic, url, workers, http=f"127.0.0.1:{port}")
    proc = subprocess.Popen(bridge.argv, env=bridge.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=e2e.REPO)
    decode = msgspec.json.Decoder(_Created).decode
    out = []
    try:
        deadline = time.monotonic() + 60
        while not _ready(f"http://127.0.0.1:{port}/readyz"):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the bridge did not become ready in 60 s")
            time.sleep(0.2)
        for rate in rates:
            producer = subprocess.Popen([sys.executable, "-m", "bench.latency", "produce", bootstrap, topic,
                                         str(rate), str(seconds)], stdout=subprocess.PIPE, cwd=e2e.REPO)
            latencies: list[float] = []
            sent = None
            give_up = time.monotonic() + seconds + 60
            while time.monotonic() < give_up:
                payloads = client.rpop("queue:default", 1000)
                now = time.time()
                if payloads:
                    latencies.extend(now - decode(p).created_at for p in payloads)
                elif sent is not None and len(latencies) >= sent:
                    break
                else:
                    time.sleep(0.0005)
                if sent is None and producer.poll() is not None:
                    sent = int(producer.stdout.read())
            producer.wait(30)
            latencies.sort()
            out.append({"offered_per_second": round(rate), "sent": sent, "sent_per_second": round(sent / seconds),
                        "received": len(latencies),
                        "p50_ms": round(percentile(latencies, 0.50) * 1000, 1),
                        "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
                        "max_ms": round(latencies[-1] * 1000, 1)})
            progress()
    finally:
        e2e.stop(proc)
        client.flushdb()
        client.close()
    return out


if __name__ == "__main__":
    if sys.argv[1:2] == ["produce"]:
        produce(sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5]))
