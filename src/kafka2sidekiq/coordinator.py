"""The coordinator: this host's one member of the consumer group.

Kafka assigns partitions to hosts through it; it fetches nothing itself (every partition
it owns is paused) and tells the supervisor what it was given or lost. Workers read
those partitions with assign()-only consumers; their offsets come back through the
supervisor, and the coordinator commits them: on an interval, when partitions are
revoked, and at shutdown. A consumer outside the group could not commit for a group
that has a live member (UNKNOWN_MEMBER_ID), which is why commits go through here.

Either group protocol works: the classic one (cooperative-sticky, the default) or
KIP-848's (K2S_KAFKA_GROUP_PROTOCOL=consumer: the broker assigns, incrementally, and owns
the session timeout, so the settings librdkafka refuses with it are not sent).

A fatal error of the group member (another member holds this group.instance.id: a second
host with the same K2S_INSTANCE_ID, or under KIP-848 this host's previous coordinator,
SIGKILLed, until its session expires) ends the coordinator with exits.UNAVAILABLE: the
supervisor starts it again with back-off, for as long as the cause lasts.

Every WATERMARK_SECONDS it also asks the broker, with an admin client whose answers
arrive in the background (the loop never blocks on them), for the end offset and the
group's committed offset of each partition the host owns, and passes them on
(Watermarks): the supervisor's lag is the broker's truth, whether the workers are
fetching, paused or stuck on a Redis that is down; an unanswered question is how the
supervisor tells that the broker has been unreachable.

At shutdown it stays in the group (a static member: restarted in place, the host gets
its partitions back with no rebalance), unless the host is leaving for good
(K2S_LEAVE_ON_STOP, or SIGUSR1 to the supervisor): then, after its last commit, it
removes itself from the group so the other hosts take its partitions at once.
"""

from __future__ import annotations

import logging
import socket as _socket
import time
from typing import Callable

from confluent_kafka import (ConsumerGroupTopicPartitions, Consumer, IsolationLevel, KafkaError, KafkaException,
                             TopicPartition)
from confluent_kafka.admin import AdminClient, OffsetSpec

from . import channel, exits
from .channel import Assigned, Booted, Commit, Fatal, Leave, Revoked, RevokeDone, Watermarks
from .leave import leave_group
from .config import Settings
from .source import MANUAL_OFFSETS, admin_config
from .titles import Title

log = logging.getLogger(__name__)

REVOKE_WAIT_SECONDS = 10.0
HEARTBEAT_MS = 1000  # a departure is noticed by the others within about this
WATERMARK_SECONDS = 2.0  # how often the end offsets are asked for: 2 small requests a host
WATERMARK_TIMEOUT_SECONDS = 5.0  # an answer later than this counts as none


def instance_id(settings: Settings) -> str:
    """This host's static group.instance.id."""
    return settings.instance_id or _socket.gethostname()


def kip848(settings: Settings) -> bool:
    """The group protocol of KIP-848 (group.protocol=consumer), not the classic one."""
    return str(settings.kafka.get("group.protocol", "classic")).lower() == "consumer"


def consumer_config(settings: Settings) -> dict:
    role = {"group.id": settings.group_id, "group.instance.id": instance_id(settings),
            **MANUAL_OFFSETS, "topic.metadata.refresh.interval.ms": 10_000}  # partitions added to the topic
    if not kip848(settings):  # with KIP-848 the broker assigns and owns the session timeout
        role.update({"partition.assignment.strategy": "cooperative-sticky",
                     "session.timeout.ms": settings.session_timeout_ms,
                     "heartbeat.interval.ms": min(HEARTBEAT_MS, settings.session_timeout_ms // 3)})
    return settings.kafka_config("kafka2sidekiq-coordinator", role)


class Coordinator:
    def __init__(self, settings: Settings, sock, beat: Callable[[], None],
                 should_stop: Callable[[], bool], title: Title | None = None) -> None:
        self.topic = settings.topic
        self.title = title
        self.sock, self.beat, self.should_stop = sock, beat, should_stop
        self.leave = settings.leave_on_stop  # at shutdown, leave the group for good
        self.owned: set[int] = set()
        self.pending: dict[int, int] = {}  # offsets reported, not yet committed
        self.config = consumer_config(settings)
        self.group = settings.group_id
        self.fatal: KafkaError | None = None
        self.joined = False
        # incremental (cooperative, or KIP-848) or eager rebalancing follows from the protocol
        self.cooperative = kip848(settings) or "cooperative" in self.config["partition.assignment.strategy"]
        self.consumer = Consumer({**self.config, "error_cb": self._on_error})
        self.watermarks = EndOffsets(lambda: AdminClient(admin_config(settings)), self.topic, self.group)

    def run(self) -> int:
        self.consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_lost)
        while not self.should_stop() and self.fatal is None:
            event = self.consumer.poll(0.2)  # serves the group; paused partitions yield nothing
            if event is not None and event.error() is not None:
                self._on_error(event.error())
            self._read(0)
            answer = self.watermarks.poll(self.owned, time.monotonic())
            if answer is not None:
                channel.send(self.sock, answer)
            self.beat()
        if self.fatal is not None:
            return self._give_up(self.fatal)
        self._show("leaving the group" if self.leave else "stopping")
        self._read(0)
        self._commit(wait=True)
        self.consumer.close()
        if self.leave:
            leave_group(self.config, self.group, self.config["group.instance.id"])
        return exits.OK

    def _show(self, state: str) -> None:
        if self.title:
            self.title.partitions(self.topic, self.owned, state)

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal() or error.code() == KafkaError._FATAL:  # a consumer's is the _FATAL event
            self.fatal = error
        else:
            log.warning("kafka: %s", error)

    def _give_up(self, error: KafkaError) -> int:
        """A fatal error: this member is finished. Say why, and let the supervisor start a
        new coordinator later (with back-off): the cause is another member, and passes."""
        same_id = (error.code() in (KafkaError.UNRELEASED_INSTANCE_ID, KafkaError.FENCED_INSTANCE_ID)
                   or "instance ID" in error.str())
        reason = (f"another member of group {self.group!r} holds group.instance.id "
                  f"{self.config['group.instance.id']!r} (K2S_INSTANCE_ID; this host's previous coordinator "
                  f"until its session expires, or another host with the same id): {error.str()}"
                  if same_id else f"the group member failed: {error.str()}")
        channel.send(self.sock, Fatal(reason))  # the supervisor logs it
        self.consumer.close()  # a fatal member leaves no offsets to commit
        return exits.UNAVAILABLE

    # --- the supervisor's messages -----------------------------------------------------

    def _read(self, wait: float) -> bool:
        """Take in commit requests; True when the supervisor answered a revocation."""
        answered = False
        for message in channel.receive(self.sock, wait):
            if isinstance(message, Leave):
                self.leave = True
                continue
            if isinstance(message, (Commit, RevokeDone)):
                self.pending.update(message.offsets)
            if isinstance(message, RevokeDone):
                answered = True
            elif isinstance(message, Commit) and message.now:
                self._commit(wait=False)
        return answered

    def _commit(self, wait: bool) -> None:
        offsets = [TopicPartition(self.topic, p, o) for p, o in self.pending.items() if p in self.owned]
        self.pending.clear()
        if not offsets:
            return
        try:
            self.consumer.commit(offsets=offsets, asynchronous=not wait)
        except KafkaException as exc:
            log.warning("offset commit failed (the ledger still holds them): %s", exc)

    # --- rebalance callbacks -------------------------------------------------------------

    def _on_assign(self, consumer, partitions) -> None:
        if self.cooperative:
            consumer.incremental_assign(partitions)
        else:
            consumer.assign(partitions)
        consumer.pause(partitions)  # the workers read them, not us
        if not self.joined:  # booted: a member of the group
            self.joined = True
            channel.send(self.sock, Booted())
        self.owned |= {tp.partition for tp in partitions}
        log.info("assigned %s", sorted(tp.partition for tp in partitions))
        self._show("joined")
        channel.send(self.sock, Assigned(sorted(self.owned)))

    def _on_revoke(self, consumer, partitions) -> None:
        gone = {tp.partition for tp in partitions}
        log.info("revoked %s", sorted(gone))
        # tell the supervisor (it takes them from the workers), wait for the offsets it
        # has, commit them while we still own the partitions, then let go
        channel.send(self.sock, Revoked(sorted(gone)))
        waited = 0.0
        while waited < REVOKE_WAIT_SECONDS and not self._read(0.2):
            self.beat()
            waited += 0.2
        self._commit(wait=True)
        self.owned -= gone
        self._show("joined")
        self._unassign(consumer, partitions)

    def _on_lost(self, consumer, partitions) -> None:
        gone = {tp.partition for tp in partitions}
        log.warning("lost %s (session expired): no commit for them", sorted(gone))
        self.owned -= gone
        self.pending = {p: o for p, o in self.pending.items() if p not in gone}
        channel.send(self.sock, Revoked(sorted(gone), lost=True))
        self._show("lost its partitions")
        self._unassign(consumer, partitions)

    def _unassign(self, consumer, partitions) -> None:
        if self.cooperative:
            consumer.incremental_unassign(partitions)
        else:
            consumer.unassign()


class EndOffsets:
    """The broker's end offset and the group's committed offset of chosen partitions, asked
    for at most every WATERMARK_SECONDS and collected without waiting: ``poll`` returns a
    Watermarks when an answer (or its failure) is in, else None.

    After a failure the admin client is made anew: librdkafka's admin ListOffsets does not
    refresh its metadata on FENCED_LEADER_EPOCH, so after a broker restart the same client
    kept failing until its periodic metadata refresh, five minutes later (and /readyz with it)."""

    def __init__(self, new_admin: Callable[[], AdminClient], topic: str, group: str) -> None:
        self.new_admin, self.topic, self.group = new_admin, topic, group
        self.admin = new_admin()
        self.asked_at = float("-inf")
        self.futures: tuple[dict, dict] | None = None
        self.failing = ""  # the last failure, logged once until an answer comes

    def poll(self, partitions: set[int], now: float) -> Watermarks | None:
        answer = self._poll(partitions, now)
        if answer is None:
            return None
        if answer.error:
            self.admin = self.new_admin()
        if answer.error != self.failing:
            if answer.error:
                log.warning("the broker did not tell the end offsets: %s", answer.error)
            else:
                log.info("the broker tells the end offsets again")
            self.failing = answer.error
        return answer

    def _poll(self, partitions: set[int], now: float) -> Watermarks | None:
        self.admin.poll(0)  # serves its logger
        if self.futures is None:
            if partitions and now - self.asked_at >= WATERMARK_SECONDS:
                self._ask(sorted(partitions), now)
            return None
        high, committed = self.futures
        if not all(f.done() for f in (*high.values(), *committed.values())):
            if now - self.asked_at < 2 * WATERMARK_TIMEOUT_SECONDS:
                return None
            self.futures = None  # never answered: ask again
            return Watermarks(error=f"no answer within {2 * WATERMARK_TIMEOUT_SECONDS:.0f} s")
        self.futures = None
        try:
            ends = {tp.partition: f.result().offset for tp, f in high.items()}
            group = next(iter(committed.values())).result()
        except Exception as exc:  # noqa: BLE001 - KafkaException, or the request's own error
            return Watermarks(error=str(exc))
        return Watermarks(high=ends, committed={tp.partition: tp.offset for tp in group.topic_partitions
                                                if tp.offset >= 0})

    def _ask(self, partitions: list[int], now: float) -> None:
        self.asked_at = now
        tps = [TopicPartition(self.topic, p) for p in partitions]
        try:
            high = self.admin.list_offsets({tp: OffsetSpec.latest() for tp in tps},
                                           isolation_level=IsolationLevel.READ_COMMITTED,
                                           request_timeout=WATERMARK_TIMEOUT_SECONDS)
            committed = self.admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(self.group, tps)], request_timeout=WATERMARK_TIMEOUT_SECONDS)
        except KafkaException as exc:
            log.warning("cannot ask for the end offsets: %s", exc)
            return
        self.futures = (high, committed)


def main(settings: Settings, sock, beat: Callable[[], None], should_stop: Callable[[], bool],
         title: Title | None = None) -> int:
    """The coordinator child of the supervisor; returns the exit code."""
    if title:
        title.set(state="joining the group")
    return Coordinator(settings, sock, beat, should_stop, title).run()
