"""How a worker takes a batch from librdkafka: what has arrived at once; a wait only
when nothing has, and then only for the first message (issue: latency at light load)."""

from kafka2sidekiq.source import Source


class FakeConsumer:
    """librdkafka's local queue: ``arrive`` lists what comes in during each blocking wait."""

    def __init__(self, queued: int, arrive: int = 0) -> None:
        self.queued, self.arrive = queued, arrive
        self.calls: list[tuple[int, float]] = []

    def consume(self, count: int, timeout: float) -> list:
        self.calls.append((count, timeout))
        if not self.queued and timeout:
            self.queued, self.arrive = self.arrive, 0
        taken = min(count, self.queued)
        self.queued -= taken
        return list(range(taken))


def source(consumer: FakeConsumer) -> Source:
    s = Source.__new__(Source)
    s.consumer = consumer
    return s


def test_under_load_a_full_batch_without_waiting():
    c = FakeConsumer(queued=5000)
    assert len(source(c).consume(1000, 0.02)) == 1000
    assert c.calls == [(1000, 0)]


def test_what_has_arrived_leaves_at_once_however_little():
    c = FakeConsumer(queued=3)
    assert len(source(c).consume(1000, 0.02)) == 3
    assert c.calls == [(1000, 0)]


def test_idle_waits_for_the_first_message_then_takes_what_came_with_it():
    c = FakeConsumer(queued=0, arrive=40)
    assert len(source(c).consume(1000, 0.02)) == 40
    assert c.calls == [(1000, 0), (1, 0.02), (999, 0)]


def test_idle_and_nothing_comes():
    c = FakeConsumer(queued=0)
    assert source(c).consume(1000, 0.02) == []
    assert c.calls == [(1000, 0), (1, 0.02)]
