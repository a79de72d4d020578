"""A worker: moves the jobs of its partitions from Kafka into Redis, exactly once.

The hot loop, per batch: take what has arrived, up to batch_size messages (waiting up
to batch_wait_ms only when nothing has) -> encode them -> send the rejected ones to the dead-letter topic and
wait until Kafka has them -> one Redis transaction pushes the jobs and moves the offset
ledger, fenced (one round trip: the fence was read and watched at the end of the
previous one) -> report the offsets. Nothing is skipped on a fault: a failed Redis push
or dead-letter send is retried with capped back-off until it succeeds or the worker is
told to stop, so offsets only ever move past messages that are safe.

Where it starts: for each partition, the larger of the group's committed offset and the
ledger's, so a crash between a push and a commit never enqueues a job twice.
"""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass
from typing import Callable

import redis
from confluent_kafka import KafkaError, KafkaException

from . import channel, encoder, exits
from .channel import Applied, Assign, Booted, Fatal, Offsets, Quiet, Stats
from .config import Settings
from .encoder_types import Batch
from .limiter import Budget, Page
from .metrics import SNAPSHOT_SECONDS, WorkerStats
from .performed import Performed
from .sink import Backoff, Range, RedisUnavailable, Sink, connect
from .source import DeadLetters, Source, keep_fetch_memory
from .titles import Title

log = logging.getLogger(__name__)

PROGRESS_LOG_SECONDS = 30.0
REPORT_SECONDS = 0.05  # offsets to the supervisor: one message per this long, at most


def start_offsets(partitions: list[int], committed: dict[int, int], ledger: dict[int, int]) -> dict[int, int]:
    """Where a partition is read from: the larger of the group's committed offset and the
    ledger's, so a crash between a push and a commit never enqueues a job twice."""
    return {p: max(committed.get(p, -1), ledger.get(p, 0)) for p in partitions}


class Reports:
    """The offsets a worker tells its supervisor, gathered for REPORT_SECONDS: a message
    per batch woke the supervisor a thousand times a second under load, 7 % of the
    bridge's CPU. Light traffic is told at once (the first batch after a quiet spell).
    ``done``: what may be committed; ``pushed`` (K2S_COMMIT_ON=performed): what Redis has."""

    def __init__(self, send: Callable[[Offsets], bool], seconds: float = REPORT_SECONDS) -> None:
        self.send, self.seconds = send, seconds
        self.done: dict[int, int] = {}
        self.pushed: dict[int, int] = {}
        self.sent_at = 0.0

    def add(self, done: dict[int, int] | None = None, pushed: dict[int, int] | None = None) -> None:
        self.done.update(done or {})
        self.pushed.update(pushed or {})
        self.when_due()

    def when_due(self) -> None:
        if time.monotonic() - self.sent_at >= self.seconds:
            self.flush()

    def flush(self) -> None:
        """Send what is gathered; kept for the next try when the supervisor is not reading."""
        if (self.done or self.pushed) and self.send(Offsets(self.done, pushed=self.pushed or None)):
            self.done, self.pushed = {}, {}
        self.sent_at = time.monotonic()

    def release(self, partitions) -> None:
        """Before a plan's Applied: send what is gathered; what could not be sent of the
        partitions let go is dropped (Applied carries where they stopped, and an older
        offset after it would move the supervisor's back)."""
        self.flush()
        for p in partitions:
            self.done.pop(p, None)
            self.pushed.pop(p, None)


@dataclass
class Flight:
    """A batch on its way into Redis, and what landing it reports."""
    messages: list
    start: int
    end: int
    batch: Batch
    ranges: list[Range]
    rejected: list[int]  # performed mode: the first encoding's rejects and errors
    errors: int
    started: float = 0.0


class BootError(Exception):
    """The worker could not start: Redis or Kafka misconfigured (``transient`` False), or
    unreachable for now (``transient`` True: the supervisor tries again, without end)."""

    def __init__(self, reason: str, transient: bool = False) -> None:
        super().__init__(reason)
        self.transient = transient


class Worker:
    def __init__(self, settings: Settings, should_stop: Callable[[], bool] = lambda: False,
                 report: Callable[[dict[int, int]], None] | None = None,
                 beat: Callable[[], None] = lambda: None,
                 source: Source | None = None, dead: DeadLetters | None = None, sink: Sink | None = None) -> None:
        """``source``, ``dead`` and ``sink`` stand in for Kafka and Redis in unit tests."""
        self.settings = settings
        self.should_stop = should_stop
        self.source = source or Source(settings)
        self.dead = dead or DeadLetters(settings)
        self.sink = sink or Sink(connect(settings.redis_url, tls=settings.redis_tls), settings.redis_namespace,
                                 Sink.ledger_name(settings.group_id, settings.topic))
        module = encoder.select(settings.encoder)
        self.encoder = module.Encoder(settings.encoder_options())
        self.report = report or self._commit_on_interval
        self.beat = beat
        self.quiet: Callable[[], bool] = lambda: False  # TSTP: stop fetching, keep the partitions
        self.limited: Callable[[], bool] = lambda: False  # the limiter's verdict and budget
        self.spent: Callable[[int], None] = lambda payload_bytes: None
        self.on_oom: Callable[[], None] = lambda: None
        self.waiting: Callable[[], None] = lambda: None  # called in each retry: the counters still travel
        self.show: Callable[[str], None] = lambda state: None  # the process title: on a change of state
        self._shown = ""
        self.applied: Callable[[dict[int, int]], None] = lambda released: None  # a plan is in effect
        # K2S_COMMIT_ON=performed: report() gets what Sidekiq finished, on_pushed() what Redis has
        self.performed = (Performed(self.sink.client, self.sink.prefix, settings.topic,
                                    settings.performed_hold_seconds) if settings.commit_on == "performed" else None)
        self.on_pushed: Callable[[dict[int, int]], None] = lambda done: None
        self._collected_at = 0.0
        self._held = False  # partitions paused for the limiter
        self.position: dict[int, int] = {}  # partition -> next offset to read
        self.flight: Flight | None = None  # sent to Redis, its answer not read yet
        self._uncommitted: dict[int, int] = {}
        self._committed_at = time.monotonic()
        self.backoff = Backoff(settings.retry_max_seconds)
        self.stats = WorkerStats()
        log.info("encoder: %s", encoder.describe(module))

    # --- start ---------------------------------------------------------------------

    def boot(self) -> None:
        """Reach Redis and Kafka within boot_seconds, or raise BootError saying which
        and whether it may pass (unreachable) or not (refused credentials, no topic)."""
        from .config import redact
        deadline = time.monotonic() + self.settings.boot_seconds
        redis_at = redact(self.settings.redis_url)
        while True:
            try:
                self.sink.client.ping()
                break
            except redis.AuthenticationError as exc:
                raise BootError(f"Redis at {redis_at} refused the credentials: {exc}") from exc
            except redis.ResponseError as exc:  # e.g. NOPERM: the ACL user may not PING
                raise BootError(f"Redis at {redis_at} refused PING: {exc}") from exc
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                if time.monotonic() >= deadline:
                    raise BootError(f"cannot reach Redis at {redis_at}: {exc}", transient=True) from exc
                if self.should_stop():
                    raise SystemExit(0)
                self.beat()
                time.sleep(0.5)
        try:
            self.source.partitions(timeout=max(1.0, deadline - time.monotonic()))
        except KafkaException as exc:
            error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            unreachable = error is None or error.code() in (KafkaError._TRANSPORT, KafkaError._TIMED_OUT,
                                                            KafkaError._ALL_BROKERS_DOWN) or error.retriable()
            raise BootError(f"cannot read topic {self.settings.topic!r} from "
                            f"{self.settings.bootstrap_servers}: {exc}", transient=unreachable) from exc

    def assign(self, partitions: list[int]) -> dict[int, int]:
        """Read exactly ``partitions``: kept ones from where this worker is, new ones from
        the larger of the group's committed offset and the ledger's. Returns where it
        stopped in each partition it dropped (all before that offset is in Redis)."""
        partitions = sorted(set(partitions))
        new = [p for p in partitions if p not in self.position]
        if new:
            committed = self.source.committed(new)
            ledger = self._retry(lambda: self.sink.ledger(new), "read the ledger")
            self.position.update(start_offsets(new, committed, ledger))
            if self.performed:
                for p in new:
                    self.performed.start(p, committed.get(p, -1), self.position[p])
        released = {p: o for p, o in self.position.items() if p not in partitions and o > 0}
        if self.performed:
            for p in set(self.position) - set(partitions):
                self.performed.drop(p)
        self.position = {p: self.position[p] for p in partitions}
        self.sink.follow(partitions)
        self.source.assign({p: o if o > 0 else -2 for p, o in self.position.items()})
        if self._held:
            self.source.pause()
        self._title(self._state(), force=True)
        log.info("reading %d partition(s) of %s from %s", len(partitions), self.settings.topic,
                 ", ".join(f"{p}@{o}" for p, o in self.position.items()) or "nothing")
        return released

    # --- the loop ------------------------------------------------------------------------

    def run(self, partitions: list[int] | None = None,
            next_plan: Callable[[], list[int] | None] = lambda: None) -> None:
        """The loop. ``partitions``: all of the topic's when None; ``next_plan`` is asked
        between batches for a new set of partitions (None: no change)."""
        self.applied(self.assign(partitions if partitions is not None else self.source.partitions()))
        size, wait = self.settings.batch_size, self.settings.batch_wait_ms / 1000
        logged, logged_pushed = time.monotonic(), 0
        stats = self.stats
        while not self.should_stop():
            self.beat()
            plan = next_plan()
            if plan is not None:
                self.land()
                self.applied(self.assign(plan))
            if self.performed and time.monotonic() - self._collected_at >= self.settings.commit_interval_ms / 1000:
                self.collect_performed()
            if self.quiet():
                self.land()
                self._title("quiet")
                time.sleep(wait)
                continue
            held = self.limited()
            if held != self._held:  # pause or resume fetching; keep serving librdkafka
                (self.source.pause if held else self.source.resume)()
                self._held = held
                self._title(self._state())
            messages = self.source.consume(size, 0 if self.flight else wait)
            if not messages:
                self.land()  # nothing more has arrived: the answer now, then wait for the next
            stats.consumed += len(messages)
            start = 0
            while start < len(messages) and not self.should_stop():
                start = self.deliver(messages, start)
            now = time.monotonic()
            if now - logged >= PROGRESS_LOG_SECONDS:
                pushed = sum(stats.pushed.values()) + stats.scheduled
                log.info("pushed %d jobs (%.0f/s), %d rejected", pushed,
                         (pushed - logged_pushed) / (now - logged), sum(stats.rejected.values()))
                logged, logged_pushed = now, pushed
        self.land()
        self._title("stopping")
        if self.performed:
            self.collect_performed()  # the latest of what Sidekiq finished, for the last commit

    def _state(self) -> str:
        return "idle" if not self.position else "paused (limiter)" if self._held else "pushing"

    def _title(self, state: str, force: bool = False) -> None:
        if force or state != self._shown:
            self._shown = state
            self.show(state)

    def _recovered(self) -> None:
        if self._shown.startswith("retrying"):
            self._title(self._state())

    def deliver(self, messages: list, start: int = 0) -> int:
        """Send the batch of ``messages`` from ``start`` that batch_max_bytes allows, and
        return where the next one starts. Redis applies it while the caller reads the next
        batch: land() reads its answer (and pushes it again if it did not go in), here
        before the next is sent, or in the loop when nothing more has arrived. Rejects are
        in the dead-letter topic before it is sent."""
        topic, max_bytes = self.settings.topic, self.settings.batch_max_bytes
        batch = self.encoder.encode_batch(topic, messages, time.time_ns() // 1_000_000, start, max_bytes)
        # performed mode keeps the first encoding's: a fenced retry re-encodes fewer messages
        flight = Flight(messages, start, batch.end, batch, [Range(p, first, after) for p, (first, after)
                                                            in batch.offsets.items()],
                        [i for i, _ in batch.rejects], len(batch.errors))
        for i in batch.errors:
            self._consumer_error(messages[i])
        if batch.rejects:
            rejects = [(messages[i], reason) for i, reason in batch.rejects]
            self._retry(lambda: self.dead.send(rejects), "send to the dead-letter topic")
        self.land()  # the one before: its answer holds this one's fence
        if flight.ranges:
            self.spent(batch.size)  # counted as it leaves: the limiter's next verdict knows of it
            flight.started = time.perf_counter()
            try:
                sent = self.sink.send(batch, flight.ranges)
            except RedisUnavailable as exc:
                self._fault(exc)
                sent = False
            if sent:
                self.flight = flight
            else:
                self._push(flight)
        return flight.end

    def land(self) -> None:
        """Read the answer to the batch in flight, if any, and report it; push it again
        when it did not go in (the fence then tells what Redis has of it)."""
        flight, self.flight = self.flight, None
        if flight is None:
            return
        try:
            if self.sink.answer():
                self._landed(flight)
                return
        except RedisUnavailable as exc:
            self._fault(exc)
        self._push(flight)

    def _fault(self, exc: RedisUnavailable) -> None:
        """A batch sent without waiting met a Redis fault: counted and said; it is pushed
        again at once (push() backs off if the fault lasts)."""
        self.stats.redis_retries += 1
        log.warning("Redis push failed, pushing the same batch again: %s", exc)

    def _push(self, flight: Flight) -> None:
        """Push ``flight`` and wait for Redis, retrying until it is in (or the worker is
        told to stop: then nothing is reported)."""
        while flight.ranges:
            try:
                stale = self.sink.push(flight.batch, flight.ranges)
            except RedisUnavailable as exc:
                if self.should_stop():
                    return
                self.stats.redis_retries += 1
                self._title("retrying Redis")
                self.beat()
                self.waiting()
                if str(exc).startswith("OOM"):
                    self.on_oom()
                log.warning("Redis push failed, retrying the same batch: %s", exc)
                self.backoff.sleep(self.should_stop)
                continue
            if not stale:
                self._landed(flight)
                return
            # Fencing: Redis already has some of these offsets (a zombie, or a retry after
            # an ambiguous failure). Keep only what it does not have, and send that (its
            # rejects are in the dead-letter topic already).
            log.warning("ledger is ahead for partition(s) %s: re-sending only what is missing",
                        ", ".join(f"{p}@{o}" for p, o in sorted(stale.items())))
            for r in flight.ranges:
                ahead = stale.get(r.partition, -1)
                if ahead >= r.next:  # all of it is in already: read on from the ledger
                    self.position[r.partition] = ahead
                    if self.performed:
                        self.performed.skipped(r.partition, ahead)
                    if ahead > r.next:
                        self.source.seek(r.partition, ahead)
            missing = [m for m in flight.messages[flight.start:flight.end]
                       if m.error() is None and m.offset() >= stale.get(m.partition(), -1)]
            flight.ranges = [Range(r.partition, max(r.first, stale.get(r.partition, -1)), r.next)
                             for r in flight.ranges if stale.get(r.partition, -1) < r.next]
            flight.batch = self.encoder.encode_batch(self.settings.topic, missing, time.time_ns() // 1_000_000)

    def _landed(self, flight: Flight) -> None:
        """``flight`` is in Redis: count it, move the positions, report the offsets."""
        self._recovered()
        self.backoff.reset()
        self.stats.batch(flight.batch, time.perf_counter() - flight.started)
        done = {r.partition: r.next for r in flight.ranges}
        self.position.update(done)
        if self.performed:
            self.performed.pushed(flight.messages, flight.start, flight.end, flight.ranges, flight.rejected,
                                  flight.errors)
            self.on_pushed(done)
        else:
            self.report(done)

    # --- offsets -------------------------------------------------------------------------

    def collect_performed(self) -> None:
        """K2S_COMMIT_ON=performed: take in what Sidekiq finished; report what moved."""
        self._collected_at = time.monotonic()
        try:
            moved = self.performed.collect()
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError) as exc:
            log.warning("could not read what Sidekiq finished (the commit waits): %s", exc)
            return
        self.stats.performed_expired = self.performed.expired
        if moved:
            self.report(moved)

    def _commit_on_interval(self, offsets: dict[int, int]) -> None:
        """Standalone mode: commit to Kafka at most every commit_interval_ms. Committing
        after every batch costs the broker more CPU than the bridge itself."""
        self._uncommitted.update(offsets)
        now = time.monotonic()
        if now - self._committed_at >= self.settings.commit_interval_ms / 1000:
            self.source.commit(self._uncommitted)
            self._uncommitted, self._committed_at = {}, now

    # --- faults ------------------------------------------------------------------------------

    def _retry(self, action: Callable, what: str):
        while True:
            try:
                result = action()
                self._recovered()
                self.backoff.reset()
                return result
            except (RedisUnavailable, KafkaException, redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("could not %s, retrying: %s", what, exc)
                if not isinstance(exc, KafkaException):
                    self.stats.redis_retries += 1
                self._title(f"retrying ({what})")
            if self.should_stop():
                raise SystemExit(0)
            self.beat()
            self.waiting()
            self.backoff.sleep(self.should_stop)

    @staticmethod
    def _consumer_error(message) -> None:
        err = message.error()
        if err.fatal():
            raise KafkaException(err)
        log.warning("consumer: %s", err)

    def close(self) -> None:
        self.source.commit(self._uncommitted, wait=True)
        self.source.close()
        self.dead.producer.flush(10)


def main(settings: Settings, sock, beat: Callable[[], None], should_stop: Callable[[], bool], page: Page,
         title: Title | None = None) -> int:
    """A worker child of the supervisor: boot, then the loop, taking its partitions
    from the supervisor's Assign messages and reporting offsets and counters back.
    Returns the exit code (exits.BOOT or exits.UNAVAILABLE when it could not boot)."""
    keep_fetch_memory(settings.queued_max_kbytes)
    quiet = False
    stats_sent = 0.0
    generation = 0  # of the latest plan read

    def read_supervisor(wait: float = 0.0) -> list[int] | None:
        """The latest plan the supervisor sent (None: no change); notes a Quiet."""
        nonlocal quiet, generation
        latest = None
        for message in channel.receive(sock, wait):
            if isinstance(message, Assign):
                latest, generation = message.partitions, message.generation
                quiet = quiet or message.quiet
            elif isinstance(message, Quiet):
                quiet = True
        return latest

    def send_stats() -> None:
        nonlocal stats_sent
        worker.stats.position = worker.position
        worker.stats.ledger_conflicts = worker.sink.conflicts
        channel.send(sock, Stats(worker.stats.snapshot()))
        stats_sent = time.monotonic()

    def send_stats_when_due() -> None:
        if time.monotonic() - stats_sent >= SNAPSHOT_SECONDS:
            send_stats()

    def next_plan() -> list[int] | None:
        send_stats_when_due()
        reports.when_due()
        return read_supervisor()

    def applied(released: dict[int, int]) -> None:
        reports.release(released)
        channel.send(sock, Applied(generation, released))

    reports = Reports(lambda message: channel.send(sock, message))
    worker = Worker(settings, should_stop=should_stop, report=reports.add, beat=beat)
    worker.quiet = lambda: quiet
    worker.waiting = send_stats_when_due
    if title:
        worker.show = lambda state: title.partitions(settings.topic, worker.position, state)
    budget = Budget(page, settings.limiter_stale_ms / 1000)
    worker.limited, worker.spent, worker.on_oom = budget.exhausted, budget.spend, page.report_oom
    worker.applied = applied
    worker.on_pushed = lambda done: reports.add(pushed=done)
    try:
        worker.boot()
    except BootError as exc:
        channel.send(sock, Fatal(str(exc)))
        return exits.UNAVAILABLE if exc.transient else exits.BOOT
    channel.send(sock, Booted())
    # Kafka messages are GC-tracked, so at the default threshold (700) the collector walks
    # each batch once or twice while it is alive: ~9% of a worker's CPU under perf. Objects
    # made during boot live until exit; only cycles among the batch's own objects remain.
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    first = None
    while first is None and not should_stop():  # the first plan, before any fetching
        beat()
        first = read_supervisor(0.2)
    if first is None:
        return exits.OK
    try:
        worker.run(first, next_plan)
    finally:
        reports.flush()
        send_stats()  # the last counters, before the supervisor reaps us
        worker.close()
    return exits.OK
