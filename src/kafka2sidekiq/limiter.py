"""The limiter: when Redis fills up, every worker of the host stops consuming, so the
backlog waits in Kafka, not in Redis memory.

One poller per host, in the supervisor: every ``limiter_interval_ms`` it reads Redis
``INFO memory`` (and, when asked for, the length of the queues and the age of their
oldest job) and decides, with hysteresis: pause at or above the high mark, resume only
below the low mark. The verdict and the time it was made go to a shared page that every
worker reads before each batch. A worker treats a verdict older than
``limiter_stale_ms`` as "pause" (the poller is stuck or Redis cannot be polled), and a
worker that gets an OOM reply stamps the page so that the next poll pauses at once.
Resuming waits a random moment (up to ``limiter_jitter_ms``) so that many hosts do not
all come back in the same instant.
"""

from __future__ import annotations

import logging
import mmap
import random
import time

import msgspec
import redis

from .config import Settings
from .sidekiq import QUEUE_KEY_PREFIX, QUEUES_KEY, key_prefix
from .sink import connect

log = logging.getLogger(__name__)

REDIS_BYTES_PER_PAYLOAD_BYTE = 1.25  # a list element costs a little more than its bytes
_SEQ, _STAMP, _PAUSED, _HEADROOM, _WORKERS, _OOM = range(6)  # 8-byte fields of the page
READ_ATTEMPTS = 1000


class Page:
    """The shared verdict: created before the supervisor forks, read by every worker.

    The supervisor alone publishes a verdict (stamp, paused, headroom, workers), and a
    reader must never mix fields of two verdicts or see a half-written one: a sequence
    counter goes odd before the fields are written and even after, and a reader retries
    when it was odd or moved while it read (a seqlock). Every field is one aligned 8-byte
    store or load (see channel.Heartbeats); on x86-64 stores and loads are not reordered
    with one another, so the counter's order holds. The OOM stamp, which workers write,
    is a field of its own outside the verdict."""

    def __init__(self) -> None:
        self._page = mmap.mmap(-1, 64)
        self._fields = memoryview(self._page).cast("d")
        self._seq = memoryview(self._page).cast("q")

    def publish(self, paused: bool, headroom: float = float("inf"), workers: int = 1) -> None:
        seq, fields = self._seq, self._fields
        seq[_SEQ] += 1  # odd: a write is under way
        fields[_STAMP] = time.monotonic()
        fields[_PAUSED] = 1.0 if paused else 0.0
        fields[_HEADROOM] = headroom
        fields[_WORKERS] = float(workers)
        seq[_SEQ] += 1

    def verdict(self) -> tuple[float, bool, float]:
        """(stamp, paused, this worker's share of the headroom in bytes). A verdict that
        cannot be read whole (the publisher died mid-write) reads as an old pause."""
        seq, fields = self._seq, self._fields
        for _ in range(READ_ATTEMPTS):
            before = seq[_SEQ]
            if before & 1:
                continue
            stamp, paused, headroom, workers = fields[_STAMP], fields[_PAUSED], fields[_HEADROOM], fields[_WORKERS]
            if seq[_SEQ] == before:
                return stamp, paused != 0.0, headroom / max(1.0, workers)
        return 0.0, True, 0.0

    def paused(self, stale_seconds: float) -> bool:
        """The verdict alone, or pause when it is too old."""
        stamp, paused, _ = self.verdict()
        return paused or time.monotonic() - stamp > stale_seconds

    def report_oom(self) -> None:
        self._fields[_OOM] = time.monotonic()

    def oom_at(self) -> float:
        return self._fields[_OOM]


class Budget:
    """A worker's side of the limiter: pause when the verdict says so or is stale, and
    between two verdicts push at most this worker's share of the headroom, so that
    Redis memory cannot outrun the poller by more than one batch per worker."""

    def __init__(self, page: Page, stale_seconds: float) -> None:
        self.page, self.stale = page, stale_seconds
        self.stamp, self.spent = 0.0, 0.0

    def exhausted(self) -> bool:
        stamp, paused, share = self.page.verdict()
        if stamp != self.stamp:
            self.stamp, self.spent = stamp, 0.0
        return paused or time.monotonic() - stamp > self.stale or self.spent >= share

    def spend(self, payload_bytes: int) -> None:
        self.spent += payload_bytes * REDIS_BYTES_PER_PAYLOAD_BYTE


class Limiter:
    """Runs inside the supervisor's loop: poll() is cheap when it is not yet time."""

    def __init__(self, settings: Settings, page: Page) -> None:
        self.settings = settings
        self.workers = settings.workers
        self.page = page
        self.interval = settings.limiter_interval_ms / 1000
        self.high_mark, self.low_mark = settings.limiter_high, settings.limiter_low
        self.prefix = key_prefix(settings.redis_namespace)
        self.client: redis.Redis | None = None
        self.paused = False
        self.reason = ""
        self.resume_at: float | None = None
        self.polled_at = 0.0
        self.oom_seen = 0.0
        self.failing = False
        # observable state, for logs and metrics
        self.used_memory = 0
        self.high: int | None = 0
        self.low: int | None = 0
        self.pauses = 0
        # no verdict is published before the first poll: the page reads as an old one, so
        # workers that get their partitions first wait for it instead of pushing into a
        # Redis that may be over a mark already

    def connect(self) -> None:
        """In the supervisor, after the first fork: warn about a policy that loses jobs."""
        self.client = connect(self.settings.redis_url, timeout=0.5, tls=self.settings.redis_tls)
        try:
            policy = self.client.config_get("maxmemory-policy").get("maxmemory-policy")
        except redis.RedisError:
            policy = None  # CONFIG may be disabled (managed Redis): nothing to say
        if self.high_mark[0] == "fraction" and not int(self.client.info("memory").get("maxmemory", 0)):
            log.warning("limiter: Redis has no maxmemory, so the memory marks (shares of it) are off; "
                        "set K2S_LIMITER_HIGH and K2S_LIMITER_LOW to sizes such as 512mb")
        if policy and policy != "noeviction":
            log.warning("limiter: Redis maxmemory-policy is %r: under memory pressure Redis will "
                        "evict keys, jobs among them; set it to noeviction", policy)

    def poll(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if now - self.polled_at < self.interval:
            return
        self.polled_at = now
        try:
            over, under, why = self._measure()
        except (redis.RedisError, OSError, ValueError) as exc:
            if not self.failing:
                log.error("limiter: cannot poll Redis (%s): workers pause until it answers", exc)
            self.failing = True
            self._set(True, "Redis cannot be polled", now)
            return
        if self.failing:
            log.info("limiter: Redis answers again")
            self.failing = False
        oom = self.page.oom_at()
        if oom > self.oom_seen:
            self.oom_seen = oom
            over, why = True, "a worker got an OOM reply"
        if over:
            self._set(True, why, now)
        elif self.paused and under:
            self._set(False, why, now)
        else:
            self._set(self.paused, self.reason, now)  # fresh stamp, same verdict

    def _set(self, paused: bool, why: str, now: float) -> None:
        if paused:
            self.resume_at = None
        elif self.paused:  # resuming: after a random moment, so hosts do not stampede
            if self.resume_at is None:
                self.resume_at = now + random.uniform(0, self.settings.limiter_jitter_ms / 1000)
            if now < self.resume_at:
                paused = True
        if paused != self.paused:
            if paused:
                self.pauses += 1
                log.warning("limiter: pausing consumption: %s", why)
            else:
                log.info("limiter: resuming consumption: %s", why)
        self.paused, self.reason = paused, why
        headroom = float("inf") if self.failing or not self.high else max(0.0, float(self.high - self.used_memory))
        self.page.publish(paused, headroom, self.workers)

    def _measure(self) -> tuple[bool, bool, str]:
        """(at or over a high mark, under every low mark, why)."""
        if self.client is None:
            self.connect()
        info = self.client.info("memory")
        used, maxmemory = int(info["used_memory"]), int(info.get("maxmemory", 0))
        self.used_memory = used
        self.high, self.low = self._bytes(self.high_mark, maxmemory), self._bytes(self.low_mark, maxmemory)
        over = self.high is not None and used >= self.high
        under = self.low is None or used < self.low
        why = f"used_memory {used} vs high {self.high} / low {self.low}"
        if self.settings.limiter_max_queue or self.settings.limiter_max_latency_seconds:
            depth, age = self._queues()
            if self.settings.limiter_max_queue:
                over |= depth >= self.settings.limiter_max_queue
                under &= depth < self.settings.limiter_max_queue * 0.9
                why += f", {depth} jobs queued (max {self.settings.limiter_max_queue})"
            if self.settings.limiter_max_latency_seconds:
                over |= age >= self.settings.limiter_max_latency_seconds
                under &= age < self.settings.limiter_max_latency_seconds * 0.9
                why += f", oldest job {age:.1f}s old (max {self.settings.limiter_max_latency_seconds}s)"
        return over, under, why

    @staticmethod
    def _bytes(mark: tuple[str, float], maxmemory: int) -> int | None:
        kind, value = mark
        if kind == "bytes":
            return int(value)
        return int(value * maxmemory) if maxmemory else None  # a fraction of no limit: off

    def _queues(self) -> tuple[int, float]:
        """Jobs waiting in every queue, and the age in seconds of the oldest one."""
        names = self.client.smembers(self.prefix + QUEUES_KEY)
        keys = [self.prefix + QUEUE_KEY_PREFIX + n.decode() for n in names]
        if not keys:
            return 0, 0.0
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.llen(key)
            pipe.lindex(key, -1)  # the next one Sidekiq will take: the oldest
        replies = pipe.execute()
        depth = sum(replies[0::2])
        now, oldest = time.time(), 0.0
        for raw in replies[1::2]:
            if raw:
                try:
                    stamp = msgspec.json.decode(raw).get("enqueued_at")
                except (msgspec.DecodeError, AttributeError):
                    continue
                if isinstance(stamp, int):
                    stamp /= 1000  # Sidekiq 8 milliseconds
                if isinstance(stamp, float):
                    oldest = max(oldest, now - stamp)
        return depth, oldest
