"""End to end: jobs per second from a pre-filled topic into Redis: kafka2sidekiq run
(supervisor, coordinator and --workers workers, default 1) vs the straightforward
single-process Python bridge (bench/baseline_bridge.py), same jobs, same Kafka, same
Redis, interleaved runs.

    python -m bench.bench_e2e [--jobs 300000] [--runs 3] [--workers 1] [--quick]

Uses the local services (scripts/services.py, the dev instance) unless K2S_BOOTSTRAP_SERVERS
and K2S_REDIS_URL are set; each contender writes to a Redis database of its own (1, 2),
flushed before each run. Throughput is timed from the first job in Redis to the last, so
process start-up and the consumer's first fetch are left out for both.
Writes bench/results/e2e.json.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import uuid

import redis

from . import common
from .bench_encoder import small_job

REPO = common.RESULTS.parent.parent


def services() -> tuple[str, str]:
    if os.environ.get("K2S_BOOTSTRAP_SERVERS") and os.environ.get("K2S_REDIS_URL"):
        return os.environ["K2S_BOOTSTRAP_SERVERS"], os.environ["K2S_REDIS_URL"]
    subprocess.run([sys.executable, str(REPO / "scripts" / "services.py"), "up"], check=True)
    return (f"127.0.0.1:{os.environ.get('K2S_LOCAL_KAFKA_PORT', '19092')}",
            f"redis://127.0.0.1:{os.environ.get('K2S_LOCAL_REDIS_PORT', '16379')}/0")


def prefill(bootstrap: str, topic: str, jobs: int, partitions: int = 8, keys: int = 1000) -> None:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for name in (topic, f"{topic}.dlq"):
        admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])[name].result(30)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 1 << 20,
                         "compression.type": "lz4"})
    value = small_job()
    for i in range(jobs):
        while True:
            try:
                producer.produce(topic, value, f"key-{i % keys}".encode())
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(120) == 0


def db_url(redis_url: str, db: int) -> str:
    return redis_url.rsplit("/", 1)[0] + f"/{db}"


def drain(argv: list[str], env: dict, client: redis.Redis, jobs: int, timeout: float = 600) -> float:
    """Seconds from the first job in Redis to the last."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    try:
        deadline = time.monotonic() + timeout
        first = None
        while time.monotonic() < deadline:
            n = client.llen("queue:default")
            now = time.perf_counter()
            if n and first is None:
                first = now
            if n >= jobs:
                return now - first
            if proc.poll() is not None:
                raise RuntimeError(f"{argv} exited with {proc.returncode}")
            time.sleep(0.002)
        raise TimeoutError(f"{argv} did not finish in {timeout}s")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=300_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=1, help="kafka2sidekiq workers (the baseline has one)")
    parser.add_argument("--quick", action="store_true", help="50,000 jobs, 1 run")
    args = parser.parse_args(argv)
    jobs, runs = (50_000, 1) if args.quick else (args.jobs, args.runs)
    bootstrap, redis_url = services()
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    print(f"pre-filling {topic} with {jobs} jobs ({len(small_job())} bytes each, 8 partitions)", flush=True)
    prefill(bootstrap, topic, jobs)

    samples: dict[str, list[float]] = {"kafka2sidekiq": [], "baseline": []}
    for run in range(runs):
        for name, db in (("kafka2sidekiq", 1), ("baseline", 2)):
            url = db_url(redis_url, db)
            client = redis.Redis.from_url(url)
            client.flushdb()
            group = f"{name}-{uuid.uuid4().hex[:8]}"
            if name == "kafka2sidekiq":
                cmd = [sys.executable, "-m", "kafka2sidekiq", "run"]
                env = {**os.environ, "K2S_BOOTSTRAP_SERVERS": bootstrap, "K2S_REDIS_URL": url,
                       "K2S_TOPIC": topic, "K2S_GROUP_ID": group, "K2S_BATCH_SIZE": str(args.batch_size),
                       "K2S_WORKERS": str(args.workers)}
            else:
                cmd = [sys.executable, "-m", "bench.baseline_bridge", bootstrap, topic, group, url,
                       str(args.batch_size)]
                env = dict(os.environ)
            seconds = drain(cmd, env, client, jobs)
            samples[name].append(jobs / seconds)
            print(f"run {run + 1}/{runs} {name:14} {jobs / seconds:10,.0f} jobs/s", flush=True)
            client.flushdb()
            client.close()
    med = {k: common.median(v) for k, v in samples.items()}
    # each run drains with both back to back, under the same noise: compare them in pairs
    paired = [ours / base for ours, base in zip(samples["kafka2sidekiq"], samples["baseline"])]
    ratio = common.median(paired)
    print(f"median: kafka2sidekiq {med['kafka2sidekiq']:,.0f} jobs/s, baseline {med['baseline']:,.0f} jobs/s; "
          f"median of the per-run ratios {ratio:.2f}x ({', '.join(f'{r:.2f}' for r in paired)})")
    results = {"jobs": jobs, "runs": runs, "batch_size": args.batch_size, "workers": args.workers,
               "jobs_per_second_median": {k: round(v) for k, v in med.items()},
               "jobs_per_second_runs": {k: [round(x) for x in v] for k, v in samples.items()},
               "ratio_per_run": [round(r, 2) for r in paired],
               "kafka2sidekiq_over_baseline": round(ratio, 2)}
    path = common.write("e2e", results)
    print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
