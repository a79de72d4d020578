"""Kafka side of a worker: a consumer of explicitly assigned partitions (it never joins
the consumer group) and the dead-letter producer. Both are created in the process that
uses them, never before a fork: librdkafka is not fork-safe."""

from __future__ import annotations

import ctypes
import logging
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from . import __version__
from .config import Settings

log = logging.getLogger(__name__)

OFFSET_WAIT_SECONDS = 30


# Our consumers never commit or store offsets by themselves: the ledger and the
# coordinator decide what is done.
MANUAL_OFFSETS = {"enable.auto.commit": False, "enable.auto.offset.store": False,
                  "enable.partition.eof": False}


def keep_fetch_memory(prefetch_kbytes: int) -> None:
    """Let glibc keep the memory of librdkafka's fetch buffers between fetches.

    By default a freed buffer goes back to the kernel and the next fetch faults in fresh
    zeroed pages: 7% of a worker's CPU under perf went to clearing pages in the broker
    thread. Buffers under 4 MiB now come from the heap, and up to the prefetch bound
    (queued_max_kbytes) plus 16 MiB of free memory is kept. Call before the consumer
    exists. A no-op where the C library has no mallopt (musl)."""
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    mallopt(m_mmap_threshold, 4 << 20)
    mallopt(m_trim_threshold, (prefetch_kbytes << 10) + (16 << 20))


# A group coordinator that is moving or still loading its offsets: ask again.
COORDINATOR_BUSY = {KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                    KafkaError.COORDINATOR_NOT_AVAILABLE}


def committed_offsets(consumer: Consumer, topic: str, partitions: list[int], timeout: float) -> dict[int, int]:
    """The group's committed offsets of ``partitions`` (negative when none). A busy
    coordinator (a new group on a fresh broker answers NOT_COORDINATOR for a while) is
    asked again until ``timeout``; any other error is raised at once."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            tps = consumer.committed([TopicPartition(topic, p) for p in partitions],
                                     timeout=max(1.0, deadline - time.monotonic()))
            return {tp.partition: tp.offset for tp in tps}
        except KafkaException as exc:
            error = exc.args[0]
            busy = error.code() in COORDINATOR_BUSY or error.retriable()
            if not busy or time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def consumer_config(settings: Settings) -> dict:
    return settings.kafka_config("kafka2sidekiq-worker", {
        "group.id": settings.group_id,             # to read the group's committed offsets
        **MANUAL_OFFSETS,
        "auto.offset.reset": "earliest",
        "queued.max.messages.kbytes": settings.queued_max_kbytes,
        "fetch.wait.max.ms": min(100, settings.batch_wait_ms * 5),
        # librdkafka waits this long before fetching again for a partition whose local
        # queue is full; its 1000 ms default added hundreds of ms of latency under load
        "fetch.queue.backoff.ms": settings.batch_wait_ms,
    })


def producer_config(settings: Settings, client_id: str = "kafka2sidekiq-dlq") -> dict:
    config = settings.kafka_config(client_id, {"enable.idempotence": True, "acks": "all", "linger.ms": 5})
    config.pop("group.protocol", None)  # a consumer's setting; a producer warns about it
    return config


def admin_config(settings: Settings, client_id: str = "kafka2sidekiq-watermarks") -> dict:
    """An admin client's (librdkafka builds it as a producer: no consumer settings)."""
    config = settings.kafka_config(client_id, {})
    config.pop("group.protocol", None)
    return config


class Source:
    def __init__(self, settings: Settings) -> None:
        self.topic = settings.topic
        self.consumer = Consumer(consumer_config(settings))

    def partitions(self, timeout: float = OFFSET_WAIT_SECONDS) -> list[int]:
        meta = self.consumer.list_topics(self.topic, timeout=timeout).topics[self.topic]
        if meta.error is not None:
            raise KafkaException(meta.error)
        return sorted(meta.partitions)

    def committed(self, partitions: list[int]) -> dict[int, int]:
        """The group's committed offsets (negative when none)."""
        return committed_offsets(self.consumer, self.topic, partitions, OFFSET_WAIT_SECONDS)

    def assign(self, start: dict[int, int]) -> None:
        """Read each partition from its start offset; a negative one means the earliest."""
        self.consumer.assign([TopicPartition(self.topic, p, o if o >= 0 else -2)
                              for p, o in sorted(start.items())])

    def pause(self) -> None:
        self.consumer.pause(self.consumer.assignment())

    def resume(self) -> None:
        self.consumer.resume(self.consumer.assignment())

    def seek(self, partition: int, offset: int) -> None:
        self.consumer.seek(TopicPartition(self.topic, partition, offset))

    def consume(self, count: int, wait: float) -> list:
        """Up to ``count`` messages: whatever has arrived, at once. Only when nothing has,
        wait up to ``wait`` for the first, then take what came with it. Under load the
        local queue holds a whole batch, so batches stay full; when traffic is light a
        job leaves as soon as it arrives instead of waiting for a batch to fill."""
        messages = self.consumer.consume(count, 0)
        if messages or not wait:
            return messages
        messages = self.consumer.consume(1, wait)
        if messages and count > 1:
            messages += self.consumer.consume(count - 1, 0)
        return messages

    def commit(self, offsets: dict[int, int], wait: bool = False) -> None:
        """Commit next-to-read offsets; an optimisation only: the ledger is the truth."""
        if not offsets:
            return
        try:
            self.consumer.commit(offsets=[TopicPartition(self.topic, p, o) for p, o in offsets.items()],
                                 asynchronous=not wait)
        except KafkaException as exc:
            log.warning("offset commit failed (the ledger still holds them): %s", exc)

    def close(self) -> None:
        self.consumer.close()


class DeadLetters:
    """Rejected messages go to the dead-letter topic, value and key unchanged, with the
    reason and origin in headers. send() returns only once Kafka has them all."""

    def __init__(self, settings: Settings) -> None:
        self.topic = settings.dead_letter_topic
        self.origin = settings.topic
        self.producer = Producer(producer_config(settings))
        self._failed: list[KafkaError] = []

    def _delivered(self, err, msg) -> None:
        if err is not None:
            self._failed.append(err)

    def send(self, rejects: list[tuple[object, str]], flush_seconds: float = 30.0) -> None:
        """Send (message, reason) pairs; raise KafkaException unless all were delivered."""
        self._failed.clear()
        for msg, reason in rejects:
            headers = [("k2s.reason", reason.encode()), ("k2s.topic", self.origin.encode()),
                       ("k2s.partition", str(msg.partition()).encode()),
                       ("k2s.offset", str(msg.offset()).encode()),
                       ("k2s.version", __version__.encode())]
            self.producer.produce(self.topic, msg.value(), msg.key(), headers=headers,
                                  on_delivery=self._delivered)
        left = self.producer.flush(flush_seconds)
        if left or self._failed:
            raise KafkaException(self._failed[0] if self._failed else
                                 KafkaError(KafkaError._MSG_TIMED_OUT, f"{left} dead letters not delivered"))
