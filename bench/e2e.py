"""The end-to-end harness: local services, a pre-filled topic, each contender as a
process, and one drain measured from the first job in Redis to the last.

Every Kafka contender reads with the bridge's own librdkafka tuning and batching.
Contenders (all push the same ~177-byte job into the same Redis, each into a database of
its own, flushed before and after):
    ours         kafka2sidekiq run: supervisor, coordinator, N workers
    python       the straightforward Python bridge, N processes (baseline_bridge.py)
    raw_copy     Kafka bytes -> LPUSH unchanged in Python, N processes (raw_copy.py): the
                 ceiling of a Python bridge
    ceiling      the same with the project's compiled reader and RESP writer, N processes
                 (ceiling.py): the strict ceiling, the fastest these bytes move
    push_bulk    Sidekiq's own Client.push_bulk in Ruby (push_bulk.rb), no Kafka: the best
                 a Rails app can do itself
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field

import psutil
import redis

from . import common
from .bench_encoder import small_job

REPO = common.RESULTS.parent.parent
SAMPLE_SECONDS = 0.1  # RSS and Redis memory sampling


def services() -> tuple[str, str]:
    """Given brokers/Redis (K2S_BOOTSTRAP_SERVERS, K2S_REDIS_URL), or the local dev services."""
    if os.environ.get("K2S_BOOTSTRAP_SERVERS") and os.environ.get("K2S_REDIS_URL"):
        return os.environ["K2S_BOOTSTRAP_SERVERS"], os.environ["K2S_REDIS_URL"]
    subprocess.run([sys.executable, str(REPO / "scripts" / "services.py"), "up"], check=True,
                   stdout=subprocess.DEVNULL)
    return (f"127.0.0.1:{os.environ.get('K2S_LOCAL_KAFKA_PORT', '19092')}",
            f"redis://127.0.0.1:{os.environ.get('K2S_LOCAL_REDIS_PORT', '16379')}/0")


def new_topic(bootstrap: str, partitions: int = 8) -> str:
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = f"bench-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for name in (topic, f"{topic}.dlq"):
        admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])[name].result(30)
    return topic


def prefill(bootstrap: str, topic: str, jobs: int, keys: int = 1000) -> None:
    from confluent_kafka import Producer

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


@dataclass
class Contender:
    name: str
    argv: list[str]
    env: dict = field(default_factory=lambda: dict(os.environ))
    jobs: int = 0  # it makes only this many (0: as many as it is given to drain)


def ours(bootstrap: str, topic: str, url: str, workers: int, batch_size: int = 1000,
         batch_wait_ms: int = 20, **extra: str) -> Contender:
    env = {k: v for k, v in os.environ.items() if not k.startswith("K2S_")}
    env.update(K2S_BOOTSTRAP_SERVERS=bootstrap, K2S_REDIS_URL=url, K2S_TOPIC=topic,
               K2S_GROUP_ID=f"bench-{uuid.uuid4().hex[:8]}", K2S_WORKERS=str(workers),
               K2S_BATCH_SIZE=str(batch_size), K2S_BATCH_WAIT_MS=str(batch_wait_ms),
               **{f"K2S_{k.upper()}": v for k, v in extra.items()})
    return Contender(f"ours-{workers}", [sys.executable, "-m", "kafka2sidekiq", "run"], env)


def python_bridge(bootstrap: str, topic: str, url: str, processes: int = 1, batch_size: int = 1000) -> Contender:
    return Contender(f"python-{processes}", [sys.executable, "-m", "bench.baseline_bridge", bootstrap, topic,
                                             f"bench-{uuid.uuid4().hex[:8]}", url, str(batch_size), str(processes)])


def raw_copy(bootstrap: str, topic: str, url: str, processes: int, batch_size: int = 1000) -> Contender:
    return Contender(f"raw_copy-{processes}", [sys.executable, "-m", "bench.raw_copy", bootstrap, topic, url,
                                               str(batch_size), str(processes)])


def ceiling(bootstrap: str, topic: str, url: str, processes: int, batch_size: int = 1000) -> Contender:
    return Contender(f"ceiling-{processes}", [sys.executable, "-m", "bench.ceiling", bootstrap, topic, url,
                                              str(batch_size), str(processes)])


def push_bulk(url: str, jobs: int, batch_size: int = 1000) -> Contender:
    from kafka2sidekiq._proto.job_pb2 import Job

    job = Job.FromString(small_job())
    return Contender("push_bulk", ["ruby", str(REPO / "bench" / "push_bulk.rb"), url, str(jobs), str(batch_size),
                                   job.job_class, job.args_json, job.extra_json], jobs=jobs)


@dataclass
class Drain:
    jobs: int
    seconds: float
    cpu_seconds: float          # the contender's processes, first job to last
    rss_max: list[int]          # the largest RSS seen of each of its processes, largest first
    redis_peak: int             # largest used_memory seen
    redis_exec_ms: float | None = None  # mean EXEC time: how long each transaction held Redis
    redis_cpu_seconds: float = 0.0  # Redis's own (INFO cpu), first job to last: the other half of the cost

    @property
    def jobs_per_second(self) -> float:
        return self.jobs / self.seconds

    @property
    def cpu_seconds_per_million(self) -> float:
        return self.cpu_seconds / self.jobs * 1e6

    def as_dict(self) -> dict:
        return {"jobs_per_second": round(self.jobs_per_second), "seconds": round(self.seconds, 3),
                "cpu_seconds_per_million": round(self.cpu_seconds_per_million, 2),
                "redis_cpu_seconds_per_million": round(self.redis_cpu_seconds / self.jobs * 1e6, 2),
                "rss_max_mib": [round(v / 2**20, 1) for v in self.rss_max],
                "redis_peak_mib": round(self.redis_peak / 2**20, 1), "redis_exec_ms": self.redis_exec_ms}


def _tree(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def cpu_of(pid: int) -> float:
    """CPU seconds (user + system) so far of the process ``pid`` and its descendants."""
    try:
        return _cpu(_tree(psutil.Process(pid)))
    except psutil.Error:
        return 0.0


def _cpu(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def redis_cpu(client: redis.Redis) -> float:
    """CPU seconds (user + system) the Redis server has used, by its own count."""
    cpu = client.info("cpu")
    return cpu["used_cpu_user"] + cpu["used_cpu_sys"]


def drain(contender: Contender, client: redis.Redis, jobs: int, timeout: float = 300,
          key: str = "queue:default") -> Drain:
    """Start the contender, wait for ``jobs`` in ``key``, stop it. Timed and costed from
    the first job in Redis to the last, so start-up and the first fetch are left out."""
    log = tempfile.TemporaryFile()  # a pipe nobody reads would block a chatty contender
    client.config_resetstat()  # command stats from zero: EXEC time is this contender's
    proc = subprocess.Popen(contender.argv, env=contender.env, stdout=subprocess.DEVNULL, stderr=log, cwd=REPO)
    root = psutil.Process(proc.pid)
    rss: dict[int, int] = {}
    peak = 0
    first = cpu_first = None
    sampled = 0.0
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            n = client.llen(key)
            now = time.perf_counter()
            if n and first is None:
                first, cpu_first, redis_first = now, _cpu(_tree(root)), redis_cpu(client)
            if n >= jobs:
                procs = _tree(root)
                cpu, in_redis = _cpu(procs) - cpu_first, redis_cpu(client) - redis_first
                execs = client.info("commandstats").get("cmdstat_exec")
                exec_ms = round(execs["usec_per_call"] / 1000, 3) if execs else None
                return Drain(jobs, now - first, cpu, sorted(rss.values(), reverse=True), peak, exec_ms, in_redis)
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"{contender.name} exited with {proc.returncode}: "
                                   f"{log.read().decode(errors='replace')[-2000:]}")
            if now - sampled >= SAMPLE_SECONDS:
                sampled = now
                peak = max(peak, int(client.info("memory")["used_memory"]))
                for p in _tree(root):
                    try:
                        if used := p.memory_info().rss:  # (0: a zombie, e.g. the bridge's preflight probe)
                            rss[p.pid] = max(rss.get(p.pid, 0), used)
                    except psutil.Error:
                        pass
            time.sleep(0.002)
        raise TimeoutError(f"{contender.name} did not push {jobs} jobs in {timeout}s")
    finally:
        stop(proc)
        log.close()


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        for p in _tree(psutil.Process(proc.pid)):
            p.kill()
        proc.wait()
    if proc.stderr:
        proc.stderr.close()
