"""The coordinator: this host's one member of the consumer group.

Kafka assigns partitions to hosts through it; it fetches nothing itself (every partition
it owns is paused) and tells the supervisor what it was given or lost. Workers read
those partitions with assign()-only consumers; their offsets come back through the
supervisor, and the coordinator commits them: on an interval, when partitions are
revoked, and at shutdown. A consumer outside the group could not commit for a group
that has a live member (UNKNOWN_MEMBER_ID), which is why commits go through here.

At shutdown it stays in the group (a static member: restarted in place, the host gets
its partitions back with no rebalance), unless the host is leaving for good
(K2S_LEAVE_ON_STOP, or SIGUSR1 to the supervisor): then, after its last commit, it
removes itself from the group so the other hosts take its partitions at once.
"""

from __future__ import annotations

import logging
import socket as _socket
from typing import Callable

from confluent_kafka import Consumer, KafkaException, TopicPartition

from . import channel, exits
from .channel import Assigned, Booted, Commit, Leave, Revoked, RevokeDone
from .leave import leave_group
from .config import Settings
from .source import MANUAL_OFFSETS

log = logging.getLogger(__name__)

REVOKE_WAIT_SECONDS = 10.0
HEARTBEAT_MS = 1000  # a departure is noticed by the others within about this


def instance_id(settings: Settings) -> str:
    """This host's static group.instance.id."""
    return settings.instance_id or _socket.gethostname()


def consumer_config(settings: Settings) -> dict:
    return settings.kafka_config("kafka2sidekiq-coordinator", {
        "group.id": settings.group_id,
        "group.instance.id": instance_id(settings),
        "partition.assignment.strategy": "cooperative-sticky",
        "session.timeout.ms": settings.session_timeout_ms,
        "heartbeat.interval.ms": min(HEARTBEAT_MS, settings.session_timeout_ms // 3),
        **MANUAL_OFFSETS,
        "topic.metadata.refresh.interval.ms": 10_000,  # partitions added to the topic
    })


class Coordinator:
    def __init__(self, settings: Settings, sock, beat: Callable[[], None],
                 should_stop: Callable[[], bool]) -> None:
        self.topic = settings.topic
        self.sock, self.beat, self.should_stop = sock, beat, should_stop
        self.leave = settings.leave_on_stop  # at shutdown, leave the group for good
        self.owned: set[int] = set()
        self.pending: dict[int, int] = {}  # offsets reported, not yet committed
        self.config = consumer_config(settings)
        self.group = settings.group_id
        config = self.config
        # incremental (cooperative) or eager rebalancing follows from the strategy in use
        self.cooperative = "cooperative" in config["partition.assignment.strategy"]
        self.consumer = Consumer(config)

    def run(self) -> None:
        self.consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_lost)
        channel.send(self.sock, Booted())
        while not self.should_stop():
            self.consumer.poll(0.2)  # serves the group; paused partitions yield nothing
            self._read(0)
            self.beat()
        self._read(0)
        self._commit(wait=True)
        self.consumer.close()
        if self.leave:
            leave_group(self.config, self.group, self.config["group.instance.id"])

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
        self.owned |= {tp.partition for tp in partitions}
        log.info("assigned %s", sorted(tp.partition for tp in partitions))
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
        self._unassign(consumer, partitions)

    def _on_lost(self, consumer, partitions) -> None:
        gone = {tp.partition for tp in partitions}
        log.warning("lost %s (session expired): no commit for them", sorted(gone))
        self.owned -= gone
        self.pending = {p: o for p, o in self.pending.items() if p not in gone}
        channel.send(self.sock, Revoked(sorted(gone), lost=True))
        self._unassign(consumer, partitions)

    def _unassign(self, consumer, partitions) -> None:
        if self.cooperative:
            consumer.incremental_unassign(partitions)
        else:
            consumer.unassign()


def main(settings: Settings, sock, beat: Callable[[], None], should_stop: Callable[[], bool]) -> int:
    """The coordinator child of the supervisor; returns the exit code."""
    Coordinator(settings, sock, beat, should_stop).run()
    return exits.OK
