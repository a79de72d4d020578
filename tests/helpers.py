"""Helpers for the integration and system tiers: producing jobs, running the bridge as a
real process, reading what landed in Redis. Every wait is bounded."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil
from confluent_kafka import Consumer, Producer, TopicPartition

from kafka2sidekiq._proto.job_pb2 import Job

REPO = Path(__file__).resolve().parent.parent


def produce(bootstrap: str, topic: str, values: list[tuple[bytes, bytes | None]]) -> None:
    """Produce (key, value) pairs in order; fails unless Kafka acknowledged all."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True})
    failed = []
    for key, value in values:
        while True:
            try:
                producer.produce(topic, value, key, on_delivery=lambda e, m: e and failed.append(e))
                break
            except BufferError:
                producer.poll(0.1)
    assert producer.flush(60) == 0 and not failed, failed[:3]


def read_topic(bootstrap: str, topic: str, count: int, timeout: float) -> list:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{topic}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    out = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < count and time.monotonic() < deadline:
            out += [m for m in consumer.consume(500, 0.5) if m.error() is None]
    finally:
        consumer.close()
    return out


def numbered_jobs(n: int, keys: int = 100, queues: tuple[str, ...] = ("default",)) -> list[tuple[bytes, bytes]]:
    """n jobs with args [key, sequence within the key]; key k goes to queue k % len(queues)."""
    out, seq = [], [0] * keys
    for i in range(n):
        k = i % keys
        job = Job(job_class="NumberedJob", queue=queues[k % len(queues)], args_json=json.dumps([f"k{k}", seq[k]]))
        out.append((f"k{k}".encode(), job.SerializeToString()))
        seq[k] += 1
    return out


WRAPPER = "ActiveJob::QueueAdapters::SidekiqAdapter::JobWrapper"  # Rails' Sidekiq adapter


def active_job(job_class: str, queue: str, arguments: list, job_id: str | None = None) -> bytes:
    """The Job message for what Rails' Sidekiq adapter enqueues for
    ``job_class.set(queue: queue).perform_later(*arguments)`` (arguments already in
    ActiveJob's serialized form): the wrapper as the class, the job class as ``wrapped``,
    and the one serialized hash of ``ActiveJob::Base#serialize`` as the args."""
    data = {"job_class": job_class, "job_id": job_id or str(uuid.uuid4()), "provider_job_id": None,
            "queue_name": queue, "priority": None, "arguments": arguments, "executions": 0,
            "exception_executions": {}, "locale": "en", "timezone": "UTC",
            "enqueued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    return Job(job_class=WRAPPER, wrapped=job_class, queue=queue, args_json=json.dumps([data])).SerializeToString()


def queue_jobs(client, queue: str = "default", namespace: str = "") -> list[dict]:
    """The jobs of a queue in the order Sidekiq's BRPOP hands them out."""
    prefix = f"{namespace}:" if namespace else ""
    return [json.loads(p) for p in reversed(client.lrange(f"{prefix}queue:{queue}", 0, -1))]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def bridge_env(bootstrap: str, redis_url: str, topic: str, **settings: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("K2S_")}
    env.update(K2S_BOOTSTRAP_SERVERS=bootstrap, K2S_REDIS_URL=redis_url, K2S_TOPIC=topic,
               K2S_GROUP_ID=f"g-{topic}", K2S_RETRY_MAX_SECONDS="1")
    env.update({f"K2S_{k.upper()}": str(v) for k, v in settings.items()})
    return env


class Bridge:
    """A bridge process (``kafka2sidekiq <args>``), stopped by PID when the test ends."""

    def __init__(self, env: dict, *args: str) -> None:
        with tempfile.NamedTemporaryFile(prefix="k2s-bridge-", suffix=".log", delete=False) as log:
            self.log = log
            self.proc = subprocess.Popen([sys.executable, "-m", "kafka2sidekiq", *args], env=env,
                                         stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                                         start_new_session=True)  # a process group of its own

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the supervisor alone: its children notice and leave on their own."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def kill_all(self) -> None:
        """SIGKILL the supervisor and every child at once (the host lost power)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"bridge ignored SIGTERM for {timeout}s:\n{self.output()[-3000:]}")
        return self.proc.returncode


def free_port(run: int = 1) -> int:
    """A port p such that p .. p+run-1 are free, for a server the test starts next. It is
    above the kernel's ephemeral range, where no outgoing connection takes it as its own
    port between this check and the server's bind (nor while that server restarts)."""
    low, high = (int(p) for p in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    # 61000-65535 on a stock kernel; below the range when little is left above it
    pool = range(high + 1, 65536 - run) if 65535 - high >= 1000 else range(1024, low - run)
    for _ in range(100):
        p = random.choice(pool)
        if all(_bindable(p + i) for i in range(run)):
            return p
    raise AssertionError(f"no run of {run} free ports in {pool}")


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


class RedisServer:
    """A redis-server of the test's own, on a unix socket in the test's folder (no port that
    another process could take while it restarts), with an append-only file so that a
    restart keeps the data (as a production Redis would)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.socket = directory / "redis.sock"
        assert len(str(self.socket)) < 100, f"{self.socket}: too long for a unix socket path"
        self.proc = None
        self.start()

    @property
    def url(self) -> str:
        return f"unix://{self.socket}?db=0"

    def start(self, *options: str) -> None:
        """Start (again) with the same data; ``options`` are extra redis-server options.
        Returns once it answers PING, or with an error reply (LOADING) when it is loading."""
        self.proc = subprocess.Popen(
            ["redis-server", "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
             "--dir", str(self.dir), "--save", "", "--appendonly", "yes", "--appendfsync", "always", *options],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._ping, 10, "redis-server to answer")

    def _ping(self) -> bool:
        assert self.proc.poll() is None, f"redis-server exited {self.proc.returncode} at start"
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(0.5)
                s.connect(str(self.socket))
                s.sendall(b"PING\r\n")
                return s.recv(16)[:1] in (b"+", b"-")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)


def children(bridge: Bridge) -> list[psutil.Process]:
    """The live child processes of a bridge (psutil.Process), never a zombie."""
    try:
        return [c for c in psutil.Process(bridge.proc.pid).children() if c.status() != psutil.STATUS_ZOMBIE]
    except psutil.NoSuchProcess:
        return []


def workers_of(bridge: Bridge) -> list[psutil.Process]:
    """The bridge's live workers: its children that its log says it started as workers (a
    pid from the log alone could be anyone's by now)."""
    started = {int(pid) for pid in re.findall(r"started worker \d+ \(pid (\d+)\)", bridge.output())}
    return [c for c in children(bridge) if c.pid in started]


class Sidekiq:
    """A real Sidekiq (Debian's ruby-sidekiq) on one Redis, loading the Ruby ``code`` and
    working ``queues``; a context manager that stops it by PID (TERM, then KILL)."""

    def __init__(self, directory: Path, redis_url: str, code: str = 'require "sidekiq"\n',
                 queues: tuple[str, ...] = ("default",), concurrency: int = 4, env: dict | None = None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "worker.rb").write_text(code)
        self.log = directory / "sidekiq.log"
        command = ["sidekiq", "-r", str(directory / "worker.rb"), "-c", str(concurrency)]
        for queue in queues:
            command += ["-q", queue]
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=directory,
                                         env={"REDIS_URL": redis_url, "PATH": "/usr/bin:/bin",
                                              "HOME": str(directory), **(env or {})})

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 30) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def __enter__(self) -> "Sidekiq":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def assert_exactly_once_in_key_order(jobs: list[dict], produced: list[tuple[bytes, bytes]]) -> None:
    seen = Counter(tuple(j["args"]) for j in jobs)
    duplicates = [a for a, c in seen.items() if c > 1]
    assert not duplicates, f"{len(duplicates)} jobs pushed twice, e.g. {duplicates[:3]}"
    assert len({j["jid"] for j in jobs}) == len(jobs), "duplicate jid"
    assert len(jobs) == len(produced), f"{len(jobs)} jobs in Redis, {len(produced)} produced"
    per_key = defaultdict(list)
    for j in jobs:
        per_key[j["args"][0]].append(j["args"][1])
    for key, seqs in per_key.items():
        assert seqs == sorted(seqs), f"jobs of {key} out of produce order"


def ledger_offsets(client, topic: str, group: str | None = None, partitions: int = 8) -> dict[int, int]:
    """The ledger's next offset per partition (per-partition keys), partitions that have one."""
    keys = [f"k2s:ledger:{group or f'g-{topic}'}:{topic}:{p}" for p in range(partitions)]
    return {p: int(v) for p, v in enumerate(client.mget(keys)) if v is not None}


def settle(client, key: str, expected: int, timeout: float) -> int:
    """Wait for ``expected`` jobs in the list ``key``, then until it holds still: the same
    length read twice, a second apart (a duplicate arriving late is then seen by the
    caller's count). Returns that length."""
    wait_for(lambda: client.llen(key) >= expected, timeout, f"{expected} jobs in {key}")
    return still(lambda: client.llen(key), f"the length of {key}")


def unchanged(read, what: str, seconds: float = 1.5):
    """The same value read twice, ``seconds`` apart (paused: nothing may move); returns it."""
    first = read()
    time.sleep(seconds)
    assert read() == first, f"{what} still changing: {first} then {read()}"
    return first


def still(read, what: str, seconds: float = 1.0, tries: int = 10):
    """A value that holds still: read twice ``seconds`` apart until both agree (at most
    ``tries`` times); returns it."""
    last = read()
    for _ in range(tries):
        time.sleep(seconds)
        now = read()
        if now == last:
            return now
        last = now
    raise AssertionError(f"{what} still changing after {tries * seconds:.0f}s: {last}")


def run(argv, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    """argv to completion (bounded); fails the test with its output unless it exited 0."""
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    assert out.returncode == 0, f"{argv} exited {out.returncode}:\n{out.stdout[-3000:]}{out.stderr[-3000:]}"
    return out


def user_env(**extra: str) -> dict:
    """A user's shell: none of this work tree's K2S_ settings or Python import paths."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("K2S_", "PYTHON"))}
    return {**env, **extra}


def watches(commands: list[bytes]) -> bool:
    """Whether a round trip of the sink's (RESP commands) leaves a WATCH standing."""
    return any(b"$5\r\nWATCH\r\n" in command[:24] for command in commands)
