"""A worker's offset reports to its supervisor: gathered under load, told at once when light."""

from kafka2sidekiq import worker
from kafka2sidekiq.channel import Offsets
from kafka2sidekiq.worker import Reports


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def reports(monkeypatch, accept=lambda message: True):
    clock, sent = Clock(), []
    monkeypatch.setattr(worker.time, "monotonic", clock)

    def send(message):
        if accept(message):
            sent.append(message)
            return True
        return False
    return Reports(send, seconds=0.05), clock, sent


def test_batches_within_the_interval_are_one_message_with_the_latest_offsets(monkeypatch):
    r, clock, sent = reports(monkeypatch)
    r.add({0: 10})  # the first after a quiet spell: told at once
    assert sent == [Offsets({0: 10})]
    for offset in (20, 30, 40):
        clock.now += 0.01
        r.add({0: offset, 1: offset + 1})
    assert len(sent) == 1  # under load: gathered
    clock.now += 0.03
    r.when_due()  # the loop asks between batches, also when no batch came
    assert sent == [Offsets({0: 10}), Offsets({0: 40, 1: 41})]
    r.when_due()
    assert len(sent) == 2  # nothing new: nothing sent


def test_performed_mode_sends_pushed_beside_done(monkeypatch):
    r, clock, sent = reports(monkeypatch)
    r.add(pushed={3: 7})
    clock.now += 0.01
    r.add(done={3: 5})
    r.flush()
    assert sent == [Offsets({}, pushed={3: 7}), Offsets({3: 5}, pushed=None)]


def test_offsets_the_supervisor_did_not_take_are_sent_with_the_next(monkeypatch):
    up = [False]
    r, clock, sent = reports(monkeypatch, accept=lambda message: up[0])
    r.add({0: 10})
    assert sent == []
    up[0] = True
    clock.now += 0.01
    r.add({1: 5})
    clock.now += 0.05
    r.when_due()
    assert sent == [Offsets({0: 10, 1: 5})]


def test_released_partitions_are_not_reported_after_the_plan_is_applied(monkeypatch):
    up = [False]
    r, clock, sent = reports(monkeypatch, accept=lambda message: up[0])
    r.add({0: 10, 1: 20})
    r.release({1: 25})  # the supervisor is not reading: partition 1's older offset must not follow Applied
    up[0] = True
    clock.now += 0.1
    r.when_due()
    assert sent == [Offsets({0: 10})]
