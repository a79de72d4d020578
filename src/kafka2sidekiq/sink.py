"""Redis side: one atomic script call per batch pushes the jobs and moves the ledger.

The script (PUSH_SCRIPT) does, all or nothing:

1. checks the type of every key it will write, so that no write command can fail
   halfway (Redis does not roll a script back);
2. fencing: for each partition in the batch, [first, next) offsets, the ledger must
   say at most ``first`` (absent counts as 0); if any says more, nothing is written
   and the script returns the ledger's values for those partitions;
3. ``SADD queues``, one ``LPUSH queue:<q>`` per queue (at most 1000 jobs each, in
   order, so BRPOP hands them out in produce order), ``ZADD schedule`` (at most 100
   each): sidekiq.MAX_PUSH_BULK and MAX_SCHEDULE_BULK, written into the script;
4. sets each partition's ledger field to ``next``.

redis-py with hiredis does the protocol work (hiredis packs the command and parses the
reply in C); EVALSHA keeps each call to one round trip.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass

import redis

from .encoder_py import Batch
from .sidekiq import FAILOVER_ERRORS, QUEUE_KEY_PREFIX, QUEUES_KEY, SCHEDULE_KEY

log = logging.getLogger(__name__)

PUSH_SCRIPT = """
local want = {[KEYS[1]] = 'hash', [KEYS[2]] = 'set', [KEYS[3]] = 'zset'}
for k = 4, #KEYS do want[KEYS[k]] = 'list' end
for key, kind in pairs(want) do
  local t = redis.call('TYPE', key)['ok']
  if t ~= 'none' and t ~= kind then
    return redis.error_reply('WRONGTYPE kafka2sidekiq: ' .. key .. ' is a ' .. t .. ', not a ' .. kind)
  end
end
local nparts = tonumber(ARGV[1])
local stale = {}
for p = 0, nparts - 1 do
  local i = 2 + p * 3
  local have = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0')
  if have > tonumber(ARGV[i + 1]) then
    stale[#stale + 1] = ARGV[i]
    stale[#stale + 1] = tostring(have)
  end
end
if #stale > 0 then return stale end
local i = 2 + nparts * 3
for k = 4, #KEYS do
  local name, n = ARGV[i], tonumber(ARGV[i + 1])
  i = i + 2
  redis.call('SADD', KEYS[2], name)
  local last = i + n - 1
  for s = i, last, 1000 do
    redis.call('LPUSH', KEYS[k], unpack(ARGV, s, math.min(s + 999, last)))
  end
  i = i + n
end
local m = tonumber(ARGV[i])
i = i + 1
for s = 0, m - 1, 100 do
  redis.call('ZADD', KEYS[3], unpack(ARGV, i + s * 2, i + 2 * math.min(s + 99, m - 1) + 1))
end
for p = 0, nparts - 1 do
  local j = 2 + p * 3
  redis.call('HSET', KEYS[1], ARGV[j], ARGV[j + 2])
end
return {}
"""


class RedisUnavailable(Exception):
    """A push failed in a way that retrying may cure (the caller backs off and retries)."""


@dataclass(frozen=True)
class Range:
    """Offsets [first, next) of one partition in a batch."""
    partition: int
    first: int
    next: int


def connect(url: str, timeout: float = 5.0) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                health_check_interval=30, retry_on_timeout=False)


class Sink:
    """Pushes encoded batches into one Redis, atomically with the offset ledger."""

    def __init__(self, client: redis.Redis, namespace: str = "", ledger: str = "") -> None:
        self.client = client
        self.prefix = f"{namespace}:" if namespace else ""
        self.ledger_key = self.prefix + ledger if ledger else self.prefix + "k2s:ledger:-"
        self.queues_key = self.prefix + QUEUES_KEY
        self.schedule_key = self.prefix + SCHEDULE_KEY
        self._script = client.register_script(PUSH_SCRIPT)

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
        keys = [self.ledger_key, self.queues_key, self.schedule_key]
        args: list = [len(ranges)]
        for r in ranges:
            args += [r.partition, r.first, r.next]
        for queue, payloads in batch.queues.items():
            keys.append(f"{self.prefix}{QUEUE_KEY_PREFIX}{queue}")
            args += [queue, len(payloads), *payloads]
        args.append(len(batch.scheduled))
        for score, payload in batch.scheduled:
            args += [score, payload]
        try:
            stale = self._script(keys=keys, args=args)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise RedisUnavailable(f"{type(exc).__name__}: {exc}") from exc
        except redis.ResponseError as exc:
            text = str(exc)
            if text.startswith(FAILOVER_ERRORS) or isinstance(exc, redis.exceptions.ReadOnlyError):
                self.client.connection_pool.disconnect()
                raise RedisUnavailable(f"failover: {text}") from exc
            if text.startswith(("OOM", "BUSY", "LOADING", "MASTERDOWN", "TRYAGAIN")):
                raise RedisUnavailable(text) from exc
            raise
        return {int(stale[i]): int(stale[i + 1]) for i in range(0, len(stale), 2)}


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
