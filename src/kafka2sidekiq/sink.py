"""Redis side: one transaction per batch pushes the jobs and moves the ledger.

The ledger is one string key per partition, ``{namespace:}k2s:ledger:<group>:<topic>:<partition>``,
holding the next offset to read. Per batch, on one connection, in one round trip:

1. the fence: the ledger keys of the worker's partitions are WATCHed and read (``MGET``)
   at the end of the previous batch's round trip, so they are under watch from that read
   on. For each partition in the batch, [first, next) offsets, the ledger must say at
   most ``first`` (absent counts as 0); if any says more, nothing is written and push()
   returns the ledger's values. The first batch, one after a new assignment or a fault
   (a new connection has no watch), and a batch with a partition not watched, take a
   round trip of their own for it: ``UNWATCH``, ``WATCH``, ``MGET``;
2. ``MULTI``; ``SADD queues``; one ``LPUSH queue:<q>`` per queue (at most 1000 jobs
   each, in order, so BRPOP hands them out in produce order); ``ZADD schedule`` (at
   most 100 each); ``MSET`` each partition's ledger key to its ``next``; ``EXEC``; then
   the next batch's ``WATCH`` and ``MGET``. EXEC applies all of it or, if anyone moved
   one of the watched ledger keys since they were read, none of it (counted in
   ``conflicts``; the read after it is the retry's fence). Workers writing disjoint
   partitions watch disjoint keys, so they never abort each other.

A watch lives on its connection: the transaction that relies on one is sent without
redis-py's idle health check (which may reconnect in place), and any fault drops the
connection and the watch with it.

Redis does not roll back a transaction whose command fails at run time, so the type of
every key is checked, once per key, before it is first written. An ``OOM`` reply while
queueing aborts the whole transaction (EXECABORT): nothing is applied.

Upgrade from the single-hash ledger (``k2s:ledger:<group>:<topic>``, field = partition,
released before the per-partition keys): ledger(), which a worker calls for the partitions
it takes before it pushes any of them, moves those partitions' fields into their keys in
one WATCH + MULTI/EXEC (key = the larger of key and field, then HDEL the field; Redis
drops the hash with its last field), so two workers migrating at once cannot lose or lower
a value. From then on reads and fences use only the per-partition keys. Workers of the
released version fence on the hash only: do not run both against one ledger.

Why not a Lua script doing the same in one call: measured, Redis spent about 1 us more
per job copying each payload into Lua and back (and the bridge's ACL user needs no
``@scripting``).
Why not redis-py's pipeline: packing a thousand
payloads through it cost ~0.6 us of worker CPU per job (a Python generator per argument,
then hiredis), more than the encoder; the compiled ``resp`` writes each command in one
pass, and the compiled encoder's payloads are already RESP frames it copies whole. redis-py still owns the connection (TLS, AUTH, reconnects) and hiredis parses the
replies.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass

import hiredis
import redis

from .encoder_types import Batch
from .sidekiq import (FAILOVER_ERRORS, MAX_PUSH_BULK, MAX_SCHEDULE_BULK, QUEUE_KEY_PREFIX,
                      QUEUES_KEY, SCHEDULE_KEY, key_prefix)

try:
    from ._encoder_c import resp
except ImportError:  # built without the extension: hiredis packs the same bytes, slower
    def resp(args: list) -> bytes:
        return hiredis.pack_command(tuple(x for arg in args for x in (arg if type(arg) is list else [arg])))

log = logging.getLogger(__name__)

WATCH_ATTEMPTS = 20
MULTI, EXEC, UNWATCH = resp([b"MULTI"]), resp([b"EXEC"]), resp([b"UNWATCH"])


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
        self.prefix = key_prefix(namespace)
        # the ledger's name; each partition's key is ``<ledger_key>:<partition>``, and the
        # released version's single hash is ``ledger_key`` itself
        self.ledger_key = self.prefix + ledger if ledger else self.prefix + "k2s:ledger:-"
        self.queues_key = self.prefix + QUEUES_KEY
        self.schedule_key = self.prefix + SCHEDULE_KEY
        self.conflicts = 0  # transactions aborted because another client moved a watched ledger key
        self._checked: set[bytes] = set()  # keys whose type is known to be right
        self._lists: dict[str, bytes] = {}  # queue -> its list's key
        self._ledger_keys: dict[int, bytes] = {}  # partition -> its ledger key
        self._hash, self._queues, self._schedule = (k.encode() for k in (
            self.ledger_key, self.queues_key, self.schedule_key))
        self._types = {self._hash: "hash", self._queues: "set", self._schedule: "zset"}  # else a list
        self._connection = None  # the pool's connection this sink keeps for its transactions
        self._following: list[int] = []  # the partitions the worker reads: watched after each batch
        self._watched: dict[int, bytes | None] | None = None  # read under the watch standing on _connection
        self._sent: tuple[int, list[int]] | None = None  # send()'s transaction: replies to read, partitions followed

    @staticmethod
    def ledger_name(group: str, topic: str) -> str:
        return f"k2s:ledger:{group}:{topic}"

    def follow(self, partitions: list[int]) -> None:
        """The worker reads ``partitions`` from now on: after each batch, their ledger keys
        are watched for the next one. The watch standing on the old ones is let go."""
        self._following = sorted(partitions)
        self._watched = None

    def ledger_key_of(self, partition: int) -> str:
        """The key holding ``partition``'s next offset to read."""
        return self._key_of(partition).decode()

    def ledger(self, partitions: list[int]) -> dict[int, int]:
        """The next offset to read per partition, as far as Redis knows (0 when absent).
        Moves these partitions out of the released version's single hash first, if it
        has them. Raises redis-py's errors as they come (the connection is dropped first)."""
        partitions = sorted(set(partitions))
        if not partitions:
            return {}
        keys = [self._key_of(p) for p in partitions]
        fields = [b"%d" % p for p in partitions]
        self._watched = None  # its round trips begin with UNWATCH
        try:
            watch = False  # the common case, nothing left to migrate: one round trip, no WATCH
            for _ in range(WATCH_ATTEMPTS):
                unknown = self._unchecked(keys + [self._hash])
                commands = [UNWATCH, resp([b"WATCH", self._hash, keys])] if watch else [UNWATCH]
                commands += [*(resp([b"TYPE", key]) for key in unknown),
                             resp([b"HMGET", self._hash, fields]), resp([b"MGET", keys])]
                replies = self._round_trip(commands, raise_error=False)[2 if watch else 1:]
                self._check_types(unknown, replies[:len(unknown)])  # first: it says why HMGET failed
                for reply in replies:
                    if isinstance(reply, redis.ResponseError):
                        raise reply
                old, new = replies[-2], replies[-1]
                if all(v is None for v in old):  # (a hash field never comes back once gone)
                    if watch:
                        self._round_trip([UNWATCH])
                    return {p: int(v) if v is not None else 0 for p, v in zip(partitions, new)}
                if not watch:
                    watch = True  # read again under WATCH, then move the fields
                    continue
                moving = [(key, field, n, b"%d" % max(int(o), int(n or 0)))
                          for key, field, o, n in zip(keys, fields, old, new) if o is not None]
                raised = [x for key, _, now, value in moving if value != now for x in (key, value)]
                commands = [MULTI]
                if raised:
                    commands.append(resp([b"MSET", raised]))
                commands += [resp([b"HDEL", self._hash, [field for _, field, _, _ in moving]]), EXEC]
                applied = self._round_trip(commands)[-1]
                if applied is None:
                    self.conflicts += 1  # another worker migrated or pushed meanwhile: again
                    continue
                for reply in applied:
                    if isinstance(reply, redis.ResponseError):
                        raise reply
                log.info("ledger: moved partition(s) %s of %s out of the single hash into their own keys",
                         ", ".join(f.decode() for _, f, _, _ in moving), self.ledger_key)
                after = dict(zip(keys, new))
                after.update((key, value) for key, _, _, value in moving)
                return {p: int(after[key]) if after[key] is not None else 0 for p, key in zip(partitions, keys)}
        except BaseException:
            self._drop()
            raise
        raise RedisUnavailable(f"could not move partition(s) {', '.join(map(str, partitions))} of "
                               f"{self.ledger_key} out of the single hash: another writer moved their "
                               f"ledger under {WATCH_ATTEMPTS} transactions in a row")

    def push(self, batch: Batch, ranges: list[Range]) -> dict[int, int]:
        """Apply ``batch`` and move the ledger, or nothing. Returns {} when applied, else
        {partition: ledger offset} for the partitions whose ledger is past ``first``.
        Raises RedisUnavailable for faults worth a retry; a failover reply (READONLY,
        NOREPLICAS, UNBLOCKED) drops the connections first, as Sidekiq does."""
        seen: dict[int, object] | None = None
        moved: set[int] = set()  # partitions whose ledger changed between two attempts
        for _ in range(WATCH_ATTEMPTS):
            try:
                stale, read = self._push_once(batch, ranges)
            except BaseException as exc:
                self._drop()  # whatever it was in the middle of (WATCH, MULTI) ends with it
                unavailable = self._unavailable(exc) if isinstance(exc, redis.ResponseError) else \
                    self._unreachable(exc)
                if unavailable:
                    raise unavailable from exc
                raise
            if stale is not None:
                return stale
            if seen is not None:
                moved.update(p for p, v in read.items() if seen.get(p) != v)
            seen = read
        which = ", ".join(map(str, sorted(moved))) if moved else \
            "one or more of " + ", ".join(str(r.partition) for r in sorted(ranges, key=lambda r: r.partition))
        raise RedisUnavailable(f"{WATCH_ATTEMPTS} transactions in a row aborted: another writer is moving "
                               f"the ledger of partition(s) {which} (a second worker on them?)")

    def send(self, batch: Batch, ranges: list[Range]) -> bool:
        """Send the transaction of ``batch`` and return without its answer, which answer()
        reads: Redis applies it while the worker reads the next batch. Only when the fence
        is read and watched already and says nothing is ahead; otherwise (False) nothing
        is sent: push() it. Raises RedisUnavailable when the connection failed (dropped)."""
        keys, lists = self._keys(batch, ranges)
        watched = self._standing(ranges, keys, lists)
        if watched is None or self._stale(ranges, watched):
            return False
        self._watched = None  # spent by the EXEC that relies on it
        commands, following = self._transaction(batch, ranges, keys, lists)
        try:
            self._connection.send_packed_command(commands, check_health=False)
        except Exception as exc:
            self._drop()
            if unavailable := self._unreachable(exc):
                raise unavailable from exc
            raise
        self._sent = (len(commands), following)
        return True

    def answer(self) -> bool:
        """The answer to the transaction send() sent: True when it went in, False when it
        did not (a watched ledger key moved, or Redis refused it). Raises RedisUnavailable
        when the connection failed before the answer came: it may have gone in. Either
        way, push() the batch again: its fence tells what Redis has."""
        if self._sent is None:
            raise RedisUnavailable("the connection was dropped before the answer was read")
        (count, following), self._sent = self._sent, None
        try:
            replies = self._read(count)
        except Exception as exc:
            self._drop()
            if isinstance(exc, redis.ResponseError):
                return False  # (push() meets it again, and says what it is)
            if unavailable := self._unreachable(exc):
                raise unavailable from exc
            raise
        return self._applied(replies, following)

    @staticmethod
    def _unreachable(exc: BaseException) -> RedisUnavailable | None:
        """A connection's failure as RedisUnavailable, or None: ``exc`` is not one."""
        if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
            return RedisUnavailable(f"{type(exc).__name__}: {exc}")
        return None

    def _push_once(self, batch: Batch, ranges: list[Range]) -> tuple[dict[int, int] | None, dict]:
        """push() once: (stale, the ledger values read); stale is None when another client
        moved a watched ledger key during the attempt."""
        keys, lists = self._keys(batch, ranges)
        values = self._standing(ranges, keys, lists)
        self._watched = None  # spent by the EXEC that relies on it, or let go below
        if values is None:
            unknown = self._unchecked([*keys, self._queues, self._schedule, *lists])
            if keys or unknown:  # (nothing to fence nor to check: straight to the transaction)
                fence = [UNWATCH, *([resp([b"WATCH", keys])] if keys else []),
                         *(resp([b"TYPE", k]) for k in unknown)]
                if keys:
                    fence.append(resp([b"MGET", keys]))
                replies = self._round_trip(fence)
                self._check_types(unknown, replies[2 if keys else 1:][:len(unknown)])
                values = replies[-1] if keys else None
        read = {}
        if keys:
            read = {r.partition: v for r, v in zip(ranges, values)}
            if stale := self._stale(ranges, values):
                self._round_trip([UNWATCH])
                return stale, read
        commands, following = self._transaction(batch, ranges, keys, lists)
        if not self._applied(self._round_trip(commands, check_health=False), following):
            return None, read  # a ledger key moved since it was read: fence again
        return {}, read

    def _keys(self, batch: Batch, ranges: list[Range]) -> tuple[list[bytes], list[bytes]]:
        """The ledger keys of ``ranges`` and the list keys of the batch's queues."""
        return ([self._key_of(r.partition) for r in ranges],
                [self._lists.get(q) or self._list_key(q) for q in batch.queues])

    def _standing(self, ranges: list[Range], keys: list[bytes], lists: list[bytes]) -> list | None:
        """The ledger values of ``ranges`` read under the watch standing on the connection
        (read after the last EXEC, watched since), or None: fence in a round trip first
        (also when a key the batch writes is not type-checked yet)."""
        watched = self._watched
        if watched is None or not ranges or not (self._connection is not None and self._connection.is_connected):
            return None  # (a connection that went took its watch with it)
        if any(r.partition not in watched for r in ranges):
            return None
        if self._unchecked([*keys, self._queues, self._schedule, *lists]):
            return None
        return [watched[r.partition] for r in ranges]

    @staticmethod
    def _stale(ranges: list[Range], values: list) -> dict[int, int]:
        """{partition: ledger offset} where the ledger is past the range's first offset."""
        return {r.partition: int(v) for r, v in zip(ranges, values) if v is not None and int(v) > r.first}

    def _transaction(self, batch: Batch, ranges: list[Range], keys: list[bytes],
                     lists: list[bytes]) -> tuple[list[bytes], list[int]]:
        """The commands that apply ``batch`` and move the ledger, then read and watch the
        ledger of the partitions followed, for the next batch's fence; and those partitions."""
        commands = [MULTI]
        if batch.queues:
            commands.append(resp([b"SADD", self._queues, [q.encode() for q in batch.queues]]))
        for key, payloads in zip(lists, batch.queues.values()):
            for i in range(0, len(payloads), MAX_PUSH_BULK):
                commands.append(resp([b"LPUSH", key, payloads[i:i + MAX_PUSH_BULK]]))
        for i in range(0, len(batch.scheduled), MAX_SCHEDULE_BULK):
            commands.append(resp([b"ZADD", self._schedule,
                                  [x for pair in batch.scheduled[i:i + MAX_SCHEDULE_BULK] for x in pair]]))
        if keys:
            commands.append(resp([b"MSET", [x for key, r in zip(keys, ranges) for x in (key, b"%d" % r.next)]]))
        commands.append(EXEC)
        following = (self._following or [r.partition for r in ranges]) if keys else []
        if following:  # the next batch's fence, read and watched from here on
            watch = [self._key_of(p) for p in following]
            commands += [resp([b"WATCH", watch]), resp([b"MGET", watch])]
        return commands, following

    def _applied(self, replies: list, following: list[int]) -> bool:
        """Whether the transaction's EXEC went in (False: a watched key moved); keeps the
        ledger read after it as the next fence."""
        if following:
            self._watched = dict(zip(following, replies[-1]))
            replies = replies[:-2]
        applied = replies[-1]
        if applied is None:
            self.conflicts += 1
            return False
        for reply in applied:
            if isinstance(reply, redis.ResponseError):
                raise reply
        return True

    def _round_trip(self, commands: list[bytes], raise_error: bool = True, check_health: bool = True) -> list:
        """Send ``commands`` in one write and read a reply to each; the first error
        reply is raised once all are read, so the connection stays in step (or, with
        ``raise_error`` false, returned in its place). ``check_health`` false: not
        redis-py's idle check, which may reconnect, losing a watch the commands rely on."""
        if self._sent is not None:
            raise RuntimeError("the answer to the transaction sent is not read yet: answer() first")
        if self._connection is None:
            self._connection = self.client.connection_pool.get_connection()
        self._connection.send_packed_command(commands, check_health=check_health)
        return self._read(len(commands), raise_error)

    def _read(self, count: int, raise_error: bool = True) -> list:
        replies, error = [], None
        for _ in range(count):
            try:
                replies.append(self._connection.read_response())
            except redis.ResponseError as exc:
                replies.append(exc)
                error = error or exc
        if error is not None and raise_error:
            raise error
        return replies

    def _drop(self) -> None:
        self._watched = self._sent = None
        if self._connection is not None:
            self._connection.disconnect()

    def _list_key(self, queue: str) -> bytes:
        key = self._lists[queue] = f"{self.prefix}{QUEUE_KEY_PREFIX}{queue}".encode()
        return key

    def _key_of(self, partition: int) -> bytes:
        key = self._ledger_keys.get(partition)
        if key is None:
            key = self._ledger_keys[partition] = b"%s:%d" % (self._hash, partition)
            self._types[key] = "string"
        return key

    def _unavailable(self, exc: redis.ResponseError) -> RedisUnavailable | None:
        """The retryable fault an error reply stands for, or None: it is not one."""
        text = str(exc)
        if isinstance(exc, redis.exceptions.ReadOnlyError) or any(e in text for e in FAILOVER_ERRORS):
            self.client.connection_pool.disconnect()
            return RedisUnavailable(f"failover, reconnecting: {text}")
        if isinstance(exc, redis.exceptions.OutOfMemoryError) or "OOM" in text:
            return RedisUnavailable(f"OOM: Redis is over maxmemory: {text}")
        if isinstance(exc, redis.exceptions.ExecAbortError):
            return RedisUnavailable(f"transaction aborted: {text}")
        if isinstance(exc, redis.exceptions.BusyLoadingError) or any(
                e in text for e in ("BUSY", "LOADING", "MASTERDOWN", "TRYAGAIN")):
            return RedisUnavailable(text)
        return None

    def _unchecked(self, keys: list[bytes]) -> list[bytes]:
        return [k for k in keys if k not in self._checked]

    def _check_types(self, keys: list[bytes], kinds: list) -> None:
        """Raise unless every key this batch writes is absent or of the type Sidekiq
        (or the ledger) gives it. Asked once per key: keys do not change type under a
        running app."""
        for key, kind in zip(keys, kinds):
            kind = kind.decode() if isinstance(kind, bytes) else kind
            want = self._types.get(key, "list")
            if kind not in ("none", want):
                raise redis.ResponseError(f"WRONGTYPE {key.decode()} is a {kind}, not the {want} "
                                          f"{'the ledger' if want in ('string', 'hash') else 'Sidekiq'} "
                                          f"uses: refusing to push into it")
        self._checked.update(keys)


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
