"""``kafka2sidekiq dlq``: read the dead-letter topic, and replay chosen messages.

    kafka2sidekiq dlq list   [filters] [--limit N]
    kafka2sidekiq dlq replay [filters] [--to topic | --to queue:NAME] [--dry-run] [--rate N]

Filters: --partition and --offsets (of the dead-letter topic, as ``list`` shows them),
--since/--until (when the message was dead-lettered), --reason, --class, --queue.
The dead-letter topic is read from its start (or the first chosen offset or time) up to
its end as it was when the command started, so the command always finishes; nothing is
committed, so reading changes nothing.

Replay ``--to topic`` (the default) produces the message, value and key unchanged, back
into the topic it came from: the bridge checks it again (fix the allow-list or the
producer first). ``--to queue:NAME`` pushes it straight into Redis as a job of queue
NAME, class allow-list not applied: a quarantine queue that no Sidekiq process works
on, where the jobs can be looked at in Sidekiq's web UI and moved on or deleted.
Messages that cannot be a job at all (not protobuf, bad arguments) are skipped and named.
Replaying twice sends twice: use --dry-run first.

One origin, one letter: a worker that dies after sending its rejects to the dead-letter
topic but before Redis recorded the batch leaves them to its successor, which sends them
again (Kafka cannot deduplicate across producer sessions). So ``list`` and ``replay``
take each origin (headers k2s.topic, k2s.partition, k2s.offset) once, the first copy
read, and skip later copies of it; ``list`` says at the end how many it hid. Letters
without those headers are never merged. --limit counts the letters taken, not the copies.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Callable, Iterator

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from google.protobuf.message import DecodeError

from ._proto.job_pb2 import Job
from .config import Settings
from .source import MANUAL_OFFSETS, producer_config

READ_WAIT_SECONDS = 30.0  # longest wait for the next message before giving up


@dataclass(frozen=True)
class Filters:
    partition: int | None = None
    first: int | None = None          # offsets of the dead-letter topic, inclusive
    last: int | None = None
    since_ms: int | None = None       # dead-lettered at or after
    until_ms: int | None = None       # dead-lettered before
    reason: str | None = None
    job_class: str | None = None
    queue: str | None = None


@dataclass
class Letter:
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes
    headers: dict[str, str]
    job: Job | None                   # None: the value is not a Job message

    @property
    def reason(self) -> str:
        return self.headers.get("k2s.reason", "?")

    @property
    def origin_key(self) -> tuple[str, int, int] | None:
        """(topic, partition, offset) the letter came from; None when the headers do not say."""
        h = self.headers
        try:
            return h["k2s.topic"], int(h["k2s.partition"]), int(h["k2s.offset"])
        except (KeyError, ValueError):
            return None

    @property
    def origin(self) -> str:
        h = self.headers
        return f"{h.get('k2s.topic', '?')}/{h.get('k2s.partition', '?')}@{h.get('k2s.offset', '?')}"

    def describe(self, topic: str) -> str:
        when = datetime.fromtimestamp(self.timestamp_ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        what = (f"class={self.job.job_class or '-'} queue={self.job.queue or '-'} args={_clip(self.job.args_json)}"
                if self.job is not None else f"{len(self.value)} bytes, not a Job message")
        return f"{topic}/{self.partition}@{self.offset} {when} reason={self.reason} origin={self.origin} {what}"

    def matches(self, f: Filters) -> bool:
        job = self.job
        return ((f.reason is None or self.reason == f.reason)
                and (f.since_ms is None or self.timestamp_ms >= f.since_ms)
                and (f.until_ms is None or self.timestamp_ms < f.until_ms)
                and (f.job_class is None or (job is not None and f.job_class in (job.job_class, job.wrapped)))
                and (f.queue is None or (job is not None and job.queue == f.queue)))


def _clip(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


def parse_time(text: str) -> int:
    """Epoch milliseconds of '2026-11-25T02:40:00Z', '2026-11-25' or epoch seconds."""
    try:
        return int(float(text) * 1000)
    except ValueError:
        pass
    stamp = datetime.fromisoformat(text)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    return int(stamp.timestamp() * 1000)


def read(settings: Settings, filters: Filters) -> Iterator[Letter]:
    """The matching dead letters, in offset order per partition, up to the end the topic
    had when reading started."""
    topic = settings.dead_letter_topic
    consumer = Consumer(settings.kafka_config("kafka2sidekiq-dlq", {
        "group.id": f"{settings.group_id}.dlq-reader", **MANUAL_OFFSETS, "auto.offset.reset": "earliest"}))
    try:
        meta = consumer.list_topics(topic, timeout=15).topics[topic]
        if meta.error is not None:
            raise KafkaException(meta.error)
        partitions = sorted(meta.partitions) if filters.partition is None else [filters.partition]
        if filters.since_ms is not None:
            found = consumer.offsets_for_times([TopicPartition(topic, p, filters.since_ms) for p in partitions],
                                               timeout=15)
            since = {tp.partition: tp.offset for tp in found}
        else:
            since = {}
        ends, starts = {}, []
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=15)
            start = max(low, filters.first or 0)
            if filters.since_ms is not None:  # the first offset at or after that time, if any
                start = max(start, since[p]) if since.get(p, -1) >= 0 else high
            end = high if filters.last is None else min(high, filters.last + 1)
            if start < end:
                ends[p] = end
                starts.append(TopicPartition(topic, p, start))
        consumer.assign(starts)
        waited_since = time.monotonic()
        while ends:
            if time.monotonic() - waited_since > READ_WAIT_SECONDS:
                raise KafkaException(f"no message from {topic} for {READ_WAIT_SECONDS:.0f}s "
                                     f"while partitions {sorted(ends)} have more")
            for m in consumer.consume(500, 1.0):
                if m.error() is not None:
                    raise KafkaException(m.error())
                waited_since = time.monotonic()
                p = m.partition()
                if p not in ends or m.offset() >= ends[p]:
                    continue
                if m.offset() + 1 >= ends[p]:
                    del ends[p]
                letter = _letter(m)
                if letter.matches(filters):
                    yield letter
    finally:
        consumer.close()


def _letter(m) -> Letter:
    headers = {k: (v or b"").decode(errors="replace") for k, v in (m.headers() or [])}
    try:
        job = Job.FromString(m.value() or b"")
    except DecodeError:
        job = None
    return Letter(m.partition(), m.offset(), m.timestamp()[1], m.key(), m.value() or b"", headers, job)


class Replayer:
    """Sends letters back to a topic or into a quarantine queue, at most ``rate`` a second."""

    def __init__(self, settings: Settings, to: str, rate: float, say: Callable[[str], None]) -> None:
        self.settings, self.to, self.say = settings, to, say
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next_at = time.monotonic()
        self.producer = Producer(producer_config(settings, "kafka2sidekiq-dlq-replay")) if to == "topic" else None
        self.failed: list[str] = []

    def send(self, letter: Letter) -> bool:
        delay = self.next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self.next_at = max(self.next_at, time.monotonic() - self.interval) + self.interval
        where = f"{self.settings.dead_letter_topic}/{letter.partition}@{letter.offset}"
        if self.producer is not None:
            topic = letter.headers.get("k2s.topic") or self.settings.topic
            headers = [("k2s.replayed_from", where.encode())]
            self.producer.produce(topic, letter.value, letter.key, headers=headers,
                                  on_delivery=lambda err, _: err and self.failed.append(f"{where}: {err}"))
            self.producer.poll(0)
            return True
        return self._quarantine(letter, where)

    def _quarantine(self, letter: Letter, where: str) -> bool:
        from .push import Rejected, push

        if letter.job is None:
            self.say(f"skipped {where}: not a Job message, cannot be a Sidekiq job")
            return False
        job = Job()
        job.CopyFrom(letter.job)
        job.queue = self.to.split(":", 1)[1]
        options = replace(self.settings.encoder_options(), class_allow=None, queue_allow=None,
                          max_message_bytes=max(self.settings.max_message_bytes, len(letter.value) * 2))
        try:
            push(self.settings.redis_url, [job.SerializeToString()], options, self.settings.redis_namespace,
                 self.settings.redis_tls, origins=letter.origin_key and [letter.origin_key])
        except Rejected as exc:
            self.say(f"skipped {where}: cannot be a Sidekiq job ({str(exc).split(': ', 1)[-1]})")
            return False
        return True

    def finish(self) -> list[str]:
        """Wait for Kafka to have every replayed message; the ones it refused."""
        if self.producer is not None and self.producer.flush(60):
            self.failed.append("some replayed messages were not acknowledged within 60 s")
        return self.failed


def run(settings: Settings, action: str, filters: Filters, limit: int | None = None, to: str = "topic",
        dry_run: bool = False, rate: float = 100.0, say: Callable[[str], None] = print) -> int:
    """The ``dlq`` command: 0 when done, 1 when Kafka or Redis refused something."""
    topic = settings.dead_letter_topic
    replayer = Replayer(settings, to, rate, say) if action == "replay" and not dry_run else None
    matched = sent = repeats = 0
    seen: set[tuple[str, int, int]] = set()  # origins taken: a later copy is a worker's re-send
    try:
        for letter in read(settings, filters):
            origin = letter.origin_key
            if origin is not None:
                if origin in seen:
                    repeats += 1
                    continue
                seen.add(origin)
            matched += 1
            if action == "list":
                say(letter.describe(topic))
            elif replayer is None:
                say(f"would replay {letter.describe(topic)}")
            elif replayer.send(letter):
                sent += 1
            if limit is not None and matched >= limit:
                break
    except KafkaException as exc:
        print(f"kafka2sidekiq dlq: cannot read {topic} at {settings.bootstrap_servers}: {exc}", file=sys.stderr)
        from .failures import failure
        return failure(exc, settings)[0]  # unreachable 75, refused 77, else 1
    failed = replayer.finish() if replayer else []
    for line in failed:
        say(f"failed: {line}")
    target = "the origin topic" if to == "topic" else f"Redis queue {to.split(':', 1)[1]!r}"
    hidden = (f" ({repeats} repeated dead letter(s) of the same origin not "
              f"{'shown' if action == 'list' else 'replayed'})" if repeats else "")
    if action == "list":
        say(f"{matched} dead letter(s) matched in {topic}{hidden}")
    elif dry_run:
        say(f"{matched} dead letter(s) matched; dry run: nothing sent (would go to {target}){hidden}")
    else:
        say(f"{matched} dead letter(s) matched, {sent - len(failed)} replayed to {target}{hidden}")
    return 1 if failed else 0
