"""Handing partitions over: the coordinator may commit a revoked partition and let it go
only once every worker that read it has let it go too, so that the offset committed is
exactly what this host's Redis holds (one Redis per host: the next owner starts there).
The supervisor's side, with real socket pairs for its children and no processes."""

from __future__ import annotations

import pytest

from kafka2sidekiq import channel, config, supervisor as sup_module
from kafka2sidekiq.channel import Applied, Assign, Offsets, Revoked, RevokeDone
from kafka2sidekiq.supervisor import COORDINATOR, Child, Supervisor


class Ends:
    """The child's end of each slot's socket pair."""

    def __init__(self) -> None:
        self.of: dict[int, object] = {}

    def received(self, slot: int) -> list:
        return channel.receive(self.of[slot])


@pytest.fixture
def host():
    sup = Supervisor(config.load(env={"K2S_WORKERS": "2"}))
    ends = Ends()
    for slot in (COORDINATOR, 0, 1):
        parent, child = channel.pair()
        sup.children[slot] = Child(slot, 100 + slot, parent)
        ends.of[slot] = child
    sup.owned = {0, 1, 2, 3}
    sup.replan()
    for slot in (0, 1):
        ends.received(slot)
    yield sup, ends
    for c in sup.children.values():
        c.sock.close()
    for e in ends.of.values():
        e.close()


def tell(sup, ends, slot, *messages):
    """A child sends; the supervisor's loop turns once (read_children, then hand_over)."""
    for m in messages:
        channel.send(ends.of[slot], m)
    sup.read_child(sup.children[slot])
    sup.hand_over()


def reader_of(sup, partition):
    return next(slot for slot, parts in sup.plan.items() if partition in parts)


def test_revoke_done_waits_for_the_worker_that_read_the_partition(host):
    sup, ends = host
    slot = reader_of(sup, 3)
    other = 1 - slot
    tell(sup, ends, slot, Offsets({3: 40}))
    tell(sup, ends, COORDINATOR, Revoked([3]))
    assert ends.received(COORDINATOR) == []                      # not yet: a batch may be in flight
    (plan,) = ends.received(slot)
    assert isinstance(plan, Assign) and 3 not in plan.partitions
    assert ends.received(other) == []                              # its plan did not change
    tell(sup, ends, other, Applied(plan.generation, {}))           # someone else's answer
    assert ends.received(COORDINATOR) == []
    tell(sup, ends, slot, Offsets({3: 50}), Applied(plan.generation, {3: 57}))
    assert ends.received(COORDINATOR) == [RevokeDone({3: 57})]
    assert 3 not in sup.offsets and sup.handover is None


def test_an_answer_to_an_older_plan_does_not_count(host):
    sup, ends = host
    slot = reader_of(sup, 2)
    tell(sup, ends, COORDINATOR, Revoked([2]))
    (plan,) = ends.received(slot)
    tell(sup, ends, slot, Applied(plan.generation - 1, {}))
    assert ends.received(COORDINATOR) == []
    tell(sup, ends, slot, Applied(plan.generation, {}))
    assert ends.received(COORDINATOR) == [RevokeDone({})]


def test_a_worker_that_dies_has_let_go(host, monkeypatch):
    sup, ends = host
    slot = reader_of(sup, 1)
    tell(sup, ends, slot, Offsets({1: 9}))
    tell(sup, ends, COORDINATOR, Revoked([1]))
    ends.received(slot)
    exited = iter([(sup.children[slot].pid, 9 << 8)])  # exit 9
    monkeypatch.setattr(sup_module.os, "waitpid", lambda pid, flags: next(exited, (0, 0)))
    sup.reap()
    sup.hand_over()
    assert ends.received(COORDINATOR) == [RevokeDone({1: 9})]


def test_at_the_deadline_what_is_known_is_committed(host, monkeypatch, caplog):
    sup, ends = host
    tell(sup, ends, reader_of(sup, 0), Offsets({0: 5, 1: 6}))
    tell(sup, ends, COORDINATOR, Revoked([0]))
    assert ends.received(COORDINATOR) == []
    later = sup.handover.deadline + 0.1
    monkeypatch.setattr(sup_module.time, "monotonic", lambda: later)
    sup.hand_over()
    assert ends.received(COORDINATOR) == [RevokeDone({0: 5})]
    assert sup.offsets == {1: 6}
    assert "still reading revoked partition(s) [0]" in caplog.text


def test_lost_partitions_are_neither_waited_for_nor_committed(host):
    sup, ends = host
    tell(sup, ends, 0, Offsets({0: 5}))
    tell(sup, ends, 1, Offsets({1: 6}))
    tell(sup, ends, COORDINATOR, Revoked([0, 1], lost=True))
    assert sup.handover is None and ends.received(COORDINATOR) == []
    assert sup.owned == {2, 3} and not ({0, 1} & set(sup.offsets))


def test_without_a_coordinator_the_workers_stop_reading_until_one_has_joined(host, monkeypatch):
    """The host is no group member while its coordinator is dead (under KIP-848 for up to a
    session timeout): the group may give its partitions to another host meanwhile."""
    sup, ends = host
    tell(sup, ends, 0, Offsets({0: 5}))
    exited = iter([(sup.children[COORDINATOR].pid, 9)])  # SIGKILL
    monkeypatch.setattr(sup_module.os, "waitpid", lambda pid, flags: next(exited, (0, 0)))
    sup.reap()
    assert sup.owned == set() and sup.plan == {0: [], 1: []}
    assert all(m.partitions == [] for slot in (0, 1) for m in ends.received(slot))
    parent, child = channel.pair()
    sup.children[COORDINATOR] = Child(COORDINATOR, 999, parent)  # respawned, not joined yet
    ends.of[COORDINATOR].close()
    ends.of[COORDINATOR] = child
    sup.forward_offsets(now=sup.committed_at + 60)
    assert ends.received(COORDINATOR) == [] and sup.offsets == {0: 5}  # nothing to commit them with
    tell(sup, ends, COORDINATOR, channel.Booted(), channel.Assigned([0, 1, 2, 3]))
    assert sup.owned == {0, 1, 2, 3}
    sup.forward_offsets(now=sup.committed_at + 60)
    assert ends.received(COORDINATOR) == [channel.Commit({0: 5}, now=True)]
