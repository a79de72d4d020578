"""Redis side: one transaction per batch pushes the jobs and moves the ledger.

Per batch, on one connection:

1. ``WATCH`` the ledger and read it: fencing. For each partition in the batch, [first,
   next) offsets, the ledger must say at most ``first`` (absent counts as 0); if any
   says more, nothing is written and push() returns the ledger's values;
2. ``MULTI``; ``SADD queues``; one ``LPUSH queue:<q>`` per queue (at most 1000 jobs
   each, in order, so BRPOP hands them out in produce order); ``ZADD schedule`` (at
   most 100 each); ``HSET`` the ledger to each partition's ``next``; ``EXEC``. EXEC
   applies all of it or, if anyone moved the ledger since WATCH, none of it.

Redis does not roll back a transaction whose command fails at run time, so the type of
every key is checked, once per key, before it is first written. An ``OOM`` reply while
queueing aborts the whole transaction (EXECABORT): nothing is applied.

Why not a Lua script doing the same in one call: measured, Redis spent about 1 us more
per job copying each payload into Lua and back; the extra round trips of WATCH cost
microseconds per batch of a thousand. redis-py with hiredis does the protocol work
(hiredis packs commands and parses replies in C).
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass

import redis

from .encoder_py import Batch
from .sidekiq import (FAILOVER_ERRORS, MAX_PUSH_BULK, MAX_SCHEDULE_BULK, QUEUE_KEY_PREFIX,
                      QUEUES_KEY, SCHEDULE_KEY)

log = logging.getLogger(__name__)



WATCH_ATTEMPTS = 20


class RedisUnavailable(Exception):
    """A push failed in a way that retrying may cure (the caller backs off and retries)."""


@dataclass(frozen=True)
class Range:
    """Offsets [first, next) of one partition in a batch."""
    partition: int
    first: int
    next: int


def connect(url: str, timeout: float = 5.0, tls: dict | None = None) -> redis.Redis:
    """A client of the Redis at ``url``; ``tls``: the ssl_* options of a rediss:// URL."""
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                health_check_interval=30, retry_on_timeout=False, **(tls or {}))


class Sink:
    """Pushes encoded batches into one Redis, atomically with the offset ledger."""

    def __init__(self, client: redis.Redis, namespace: str = "", ledger: str = "") -> None:
        self.client = client
        self.prefix = f"{namespace}:" if namespace else ""
        self.ledger_key = self.prefix + ledger if ledger else self.prefix + "k2s:ledger:-"
        self.queues_key = self.prefix + QUEUES_KEY
        self.schedule_key = self.prefix + SCHEDULE_KEY
        self._checked: set[str] = set()  # keys whose type is known to be right

    @staticmethod
    def ledger_name(group: str, topic: str) -> str:
        return f"k2s:ledger:{group}:{topic}"

    def ledger(self, partitions: list[int]) -> dict[int, int]:
        """The next offset to read per partition, as far as Redis knows (0 when absent)."""
        if not partitions:
            return {}
        values = self.client.hmget(self.ledger_key, [str(p) for p in partitions])
        return {p: int(v) if v is not None else 0 for p, v in zip(partitions, values)}

    def push(self, batch: Batch, ranges: list[Range]) -> dict[int, int]:
        """Apply ``batch`` and move the ledger, or nothing. Returns {} when applied, else
        {partition: ledger offset} for the partitions whose ledger is past ``first``.
        Raises RedisUnavailable for faults worth a retry; a failover reply (READONLY,
        NOREPLICAS, UNBLOCKED) drops the connections first, as Sidekiq does."""
        for _ in range(WATCH_ATTEMPTS):
            stale = self._push_once(batch, ranges)
            if stale is not None:
                return stale
        raise RedisUnavailable(f"the ledger changed under {WATCH_ATTEMPTS} transactions in a row: "
                               f"another worker is writing the same partitions")

    def _push_once(self, batch: Batch, ranges: list[Range]) -> dict[int, int] | None:
        """push() once; None when another client moved the ledger during the attempt."""
        lists = {queue: f"{self.prefix}{QUEUE_KEY_PREFIX}{queue}" for queue in batch.queues}
        try:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.watch(self.ledger_key)
                self._check_types(pipe, lists.values())
                if ranges:
                    have = pipe.hmget(self.ledger_key, [r.partition for r in ranges])
                    stale = {r.partition: int(h) for r, h in zip(ranges, have)
                             if h is not None and int(h) > r.first}
                    if stale:
                        return stale
                pipe.multi()
                if batch.queues:
                    pipe.sadd(self.queues_key, *batch.queues)
                for queue, payloads in batch.queues.items():
                    for i in range(0, len(payloads), MAX_PUSH_BULK):
                        pipe.lpush(lists[queue], *payloads[i:i + MAX_PUSH_BULK])
                for i in range(0, len(batch.scheduled), MAX_SCHEDULE_BULK):
                    pipe.execute_command("ZADD", self.schedule_key, *(
                        x for pair in batch.scheduled[i:i + MAX_SCHEDULE_BULK] for x in pair))
                if ranges:
                    pipe.hset(self.ledger_key, mapping={r.partition: r.next for r in ranges})
                pipe.execute()
                return {}
        except redis.WatchError:
            return None  # the ledger moved: read it again, fence again
        except redis.exceptions.ExecAbortError as exc:
            raise RedisUnavailable(f"transaction aborted: {exc}") from exc
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise RedisUnavailable(f"{type(exc).__name__}: {exc}") from exc
        except redis.ResponseError as exc:
            # redis-py prefixes a pipeline's error ("Command # 2 (LPUSH …) of pipeline
            # caused error: …"): look at its class first, then anywhere in its text.
            text = str(exc)
            if isinstance(exc, redis.exceptions.ReadOnlyError) or any(e in text for e in FAILOVER_ERRORS):
                self.client.connection_pool.disconnect()
                raise RedisUnavailable(f"failover, reconnecting: {text}") from exc
            if isinstance(exc, redis.exceptions.OutOfMemoryError) or "OOM" in text:
                raise RedisUnavailable(f"OOM: Redis is over maxmemory: {text}") from exc
            if isinstance(exc, redis.exceptions.BusyLoadingError) or any(
                    e in text for e in ("BUSY", "LOADING", "MASTERDOWN", "TRYAGAIN")):
                raise RedisUnavailable(text) from exc
            raise

    def _check_types(self, pipe, lists) -> None:
        """Raise unless every key this batch writes is absent or of the type Sidekiq
        gives it. Asked once per key: keys do not change type under a running app."""
        wanted = {self.ledger_key: "hash", self.queues_key: "set", self.schedule_key: "zset"}
        wanted.update((key, "list") for key in lists)
        unknown = [k for k in wanted if k not in self._checked]
        if not unknown:
            return
        for key in unknown:
            kind = pipe.type(key)
            kind = kind.decode() if isinstance(kind, bytes) else kind
            if kind not in ("none", wanted[key]):
                raise redis.ResponseError(f"WRONGTYPE {key} is a {kind}, not the {wanted[key]} "
                                          f"Sidekiq uses: refusing to push into it")
        self._checked.update(unknown)


class Backoff:
    """Capped exponential back-off with full jitter: 0.05 s, 0.1 s, … up to ``cap``."""

    def __init__(self, cap: float, first: float = 0.05) -> None:
        self.cap, self.first, self.attempt = cap, first, 0

    def reset(self) -> None:
        self.attempt = 0

    def sleep(self, should_stop=lambda: False) -> None:
        delay = random.uniform(0, min(self.cap, self.first * 2 ** self.attempt))
        self.attempt += 1
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline and not should_stop():
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
