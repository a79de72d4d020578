"""K2S_COMMIT_ON=performed, the bridge's bookkeeping: which offset may be committed once
Sidekiq has finished some of a partition's jobs (acknowledgements in any order), what a
dead letter, a gap among the offsets and the hold bound do to it."""

from __future__ import annotations

from confluent_kafka import Message

from kafka2sidekiq.performed import Performed, Window, ack_key
from kafka2sidekiq.sink import Range


class FakePipeline:
    def __init__(self, lists: dict[str, list[bytes]]) -> None:
        self.lists, self.replies = lists, []

    def lrange(self, key, start, stop):
        self.replies.append(list(self.lists.get(key, [])))

    def delete(self, key):
        self.replies.append(int(self.lists.pop(key, None) is not None))

    def execute(self):
        return self.replies


class FakeRedis:
    def __init__(self) -> None:
        self.lists: dict[str, list[bytes]] = {}

    def pipeline(self, transaction=True):
        return FakePipeline(self.lists)

    def ack(self, partition: int, *offsets: int, prefix: str = "") -> None:
        self.lists.setdefault(ack_key(prefix, "jobs", partition), []).extend(str(o).encode() for o in offsets)


def message(partition: int, offset: int) -> Message:
    return Message(topic="jobs", partition=partition, offset=offset, value=b"")


def test_the_offset_to_commit_is_the_first_job_not_finished():
    w = Window(10)
    w.pending(10, 15, now=0.0)
    assert w.advance() == 10
    for offset in (11, 13, 14):  # Sidekiq finishes jobs in any order
        w.finished(offset)
    assert w.advance() == 10
    w.finished(10)
    assert w.advance() == 12
    w.finished(12)
    assert w.advance() == 15 and w.end == 15 and not w.flags
    w.finished(3)  # an acknowledgement of an offset long committed (a retried job) changes nothing
    assert w.advance() == 15


def test_nothing_holds_a_partition_back_longer_than_the_bound():
    w = Window(0)
    w.pending(0, 5, now=100.0)
    w.pending(5, 8, now=200.0)
    assert w.expire(before=50.0) == 0 and w.advance() == 0
    w.finished(1)
    assert w.expire(before=150.0) == 4  # 0, 2, 3, 4: pushed at 100, never acknowledged
    assert w.advance() == 5
    assert w.expire(before=250.0) == 3 and w.advance() == 8


def test_dead_letters_and_gaps_are_no_jobs_to_wait_for():
    p = Performed(FakeRedis(), "", "jobs", hold_seconds=300)
    p.start(0, committed=-1001, position=0, now=0.0)
    p.start(1, committed=-1001, position=4, now=0.0)
    # partition 0: offsets 0-3, 3 dead-lettered; partition 1: 4, 5 and 9 (6-8 compacted away)
    messages = [message(0, o) for o in range(4)] + [message(1, o) for o in (4, 5, 9)]
    p.pushed(messages, 0, len(messages), [Range(0, 0, 4), Range(1, 4, 10)], rejected=[3], errors=0, now=1.0)
    p.client.ack(0, 0, 1, 2)
    p.client.ack(1, 4, 9)
    assert p.collect(now=2.0) == {0: 4, 1: 5}
    assert not p.client.lists  # taken in, once
    p.client.ack(1, 5)
    assert p.collect(now=3.0) == {1: 10}
    assert p.collect(now=4.0) == {}  # nothing moved: nothing to report


def test_jobs_pushed_before_a_restart_wait_until_acknowledged_or_the_bound():
    """A worker taking a partition at the ledger (40) while Kafka has 30 committed: the
    jobs 30-39 went in before, maybe still queued. It waits for them, as long as the bound."""
    p = Performed(FakeRedis(), "ns:", "jobs", hold_seconds=60)
    p.start(2, committed=30, position=40, now=0.0)
    p.client.ack(2, *range(30, 35), prefix="ns:")
    assert p.collect(now=1.0) == {2: 35}
    assert p.collect(now=61.0) == {2: 40} and p.expired == 5


def test_the_acknowledgement_key_is_what_the_ruby_middleware_writes():
    from kafka2sidekiq import middleware_path
    ruby = middleware_path().read_text()
    assert 'rpush("k2s:performed:#{topic}:#{partition}", offset)' in ruby
    assert ack_key("", "orders", 7) == "k2s:performed:orders:7"
    assert ack_key("app:", "orders", 7) == "app:k2s:performed:orders:7"
