"""The worker's decisions against in-memory Kafka and Redis: what it pushes when the
ledger is ahead (a zombie, or a retry after an ambiguous failure), what it reports, and
where it reads on. The real services are in tests/integration; here every branch of
Worker.deliver can be driven on purpose."""

from __future__ import annotations

import json

import pytest
from confluent_kafka import Message

from kafka2sidekiq import config
from kafka2sidekiq._proto.job_pb2 import Job
from kafka2sidekiq.sink import RedisUnavailable
from kafka2sidekiq.worker import Worker

TOPIC = "jobs"


def message(partition: int, offset: int, job_class: str = "FenceJob") -> Message:
    job = Job(job_class=job_class, args_json=json.dumps([partition, offset]))
    return Message(topic=TOPIC, partition=partition, offset=offset, value=job.SerializeToString(),
                   timestamp=(1, 1_700_000_000_000))


class FakeSource:
    """Partitions assigned and sought; hands out the messages it is given, once."""

    def __init__(self, messages: list[Message]) -> None:
        self.messages = messages
        self.sought: dict[int, int] = {}
        self.assigned: dict[int, int] = {}

    def committed(self, partitions):
        return {p: -1001 for p in partitions}

    def assign(self, start):
        self.assigned = dict(start)

    def seek(self, partition, offset):
        self.sought[partition] = offset

    def consume(self, count, wait):
        out, self.messages = self.messages[:count], self.messages[count:]
        return out

    def pause(self):
        pass

    def resume(self):
        pass

    def commit(self, offsets, wait=False):
        pass

    def close(self):
        pass


class FakeDead:
    def __init__(self) -> None:
        self.sent: list[tuple[int, int, str]] = []
        self.producer = self

    def send(self, rejects):
        self.sent += [(m.partition(), m.offset(), reason) for m, reason in rejects]

    def flush(self, timeout):
        return 0


class FakeSink:
    """One Redis with a per-partition ledger; ``ahead`` moves a partition's ledger before
    the next push lands (another writer got there first), ``failures`` fails pushes."""

    def __init__(self) -> None:
        self.ledger_of: dict[int, int] = {}
        self.jobs: list[tuple[int, int]] = []
        self.ahead: dict[int, int] = {}
        self.failures = 0
        self.conflicts = 0
        self.client = None  # performed mode reads Sidekiq's acknowledgements through it
        self.prefix = ""    # of a namespace
        self.overlap = False
        self.sent = []

    def ledger(self, partitions):
        return {p: self.ledger_of.get(p, 0) for p in partitions}

    def follow(self, partitions):
        self.following = partitions

    def send(self, batch, ranges):
        """Redis applies a batch sent while the worker reads the next (when ``overlap``):
        it lands (or is fenced) when the worker reads the answer."""
        if not self.overlap:
            return False
        self.sent.append((batch, ranges))
        return True

    def answer(self):
        batch, ranges = self.sent.pop()
        return self.push(batch, ranges) == {}  # (RedisUnavailable: the answer was lost)

    def push(self, batch, ranges):
        if self.failures:
            self.failures -= 1
            raise RedisUnavailable("ConnectionError: fake")
        for p, offset in self.ahead.items():  # the other writer's push lands first
            self.ledger_of[p] = max(self.ledger_of.get(p, 0), offset)
        self.ahead = {}
        stale = {r.partition: self.ledger_of[r.partition] for r in ranges
                 if self.ledger_of.get(r.partition, 0) > r.first}
        if stale:
            return stale
        for payloads in batch.queues.values():
            self.jobs += [tuple(json.loads(p)["args"]) for p in payloads]
        for r in ranges:
            self.ledger_of[r.partition] = r.next
        return {}


@pytest.fixture
def make_worker():
    def make(messages, **env):
        settings = config.load(env={"K2S_TOPIC": TOPIC, "K2S_ENCODER": "python", "K2S_RETRY_MAX_SECONDS": "1", **env})
        reports: list[dict[int, int]] = []
        worker = Worker(settings, report=reports.append, source=FakeSource(messages), dead=FakeDead(),
                        sink=FakeSink())
        worker.backoff.first = 0.001
        worker.reports = reports
        return worker
    return make


def test_a_batch_is_pushed_once_and_its_offsets_reported(make_worker):
    messages = [message(p, o) for o in range(5) for p in (0, 1)]
    worker = make_worker(messages)
    worker.assign([0, 1])
    assert worker.deliver(messages) == len(messages)
    assert sorted(worker.sink.jobs) == sorted((m.partition(), m.offset()) for m in messages)
    assert worker.reports == [{0: 5, 1: 5}] and worker.position == {0: 5, 1: 5}


def test_ledger_ahead_on_one_partition_resends_only_what_redis_lacks(make_worker):
    """Another writer pushed partition 0 up to offset 3 meanwhile: offsets 0-2 of it are
    not pushed again; partition 1, untouched, goes in whole."""
    messages = [message(p, o) for o in range(5) for p in (0, 1)]
    worker = make_worker(messages)
    worker.assign([0, 1])
    worker.sink.ahead = {0: 3}
    worker.deliver(messages)
    assert sorted(worker.sink.jobs) == sorted([(0, 3), (0, 4)] + [(1, o) for o in range(5)])
    assert worker.sink.ledger_of == {0: 5, 1: 5}
    assert worker.reports == [{0: 5, 1: 5}]


def test_ledger_past_the_whole_batch_reads_on_from_the_ledger(make_worker):
    """A zombie's batch: Redis has all of it and more. Nothing is pushed, and the worker
    seeks to where the ledger is instead of reading what is in Redis already."""
    messages = [message(0, o) for o in range(5)]
    worker = make_worker(messages)
    worker.assign([0])
    worker.sink.ahead = {0: 9}
    worker.deliver(messages)
    assert worker.sink.jobs == []
    assert worker.position == {0: 9} and worker.source.sought == {0: 9}
    assert worker.reports == []


def test_a_failed_push_is_retried_with_the_same_batch(make_worker):
    messages = [message(0, o) for o in range(3)]
    worker = make_worker(messages)
    worker.assign([0])
    worker.sink.failures = 2
    worker.deliver(messages)
    assert worker.sink.jobs == [(0, 0), (0, 1), (0, 2)]
    assert worker.reports == [{0: 3}]


def test_rejects_go_to_the_dead_letters_before_the_ledger_moves_past_them(make_worker):
    messages = [message(0, 0), message(0, 1, job_class=""), message(0, 2)]
    worker = make_worker(messages)
    worker.assign([0])
    worker.deliver(messages)
    assert worker.dead.sent == [(0, 1, "missing_class")]
    assert worker.sink.jobs == [(0, 0), (0, 2)] and worker.sink.ledger_of == {0: 3}


def test_assignment_starts_at_the_larger_of_ledger_and_committed(make_worker):
    worker = make_worker([])
    worker.sink.ledger_of = {0: 7}
    worker.source.committed = lambda partitions: {0: 4, 1: 12}
    worker.assign([0, 1])
    assert worker.position == {0: 7, 1: 12} and worker.source.assigned == {0: 7, 1: 12}


def test_a_dropped_partition_is_released_where_redis_has_it(make_worker):
    """The supervisor commits a revoked partition at what the worker released: the next
    offset after everything pushed, even when it only learned that from the ledger."""
    messages = [message(0, o) for o in range(4)] + [message(1, o) for o in range(3)]
    worker = make_worker(messages)
    assert worker.assign([0, 1, 2]) == {}
    worker.sink.ahead = {1: 6}  # partition 1: Redis has more than this batch (no report for it)
    worker.deliver(messages)
    assert worker.reports == [{0: 4}]
    assert worker.assign([2]) == {0: 4, 1: 6}  # 2 read nothing: nothing to release for it
    assert worker.position == {2: 0} and worker.source.assigned == {2: -2}
    assert worker.assign([]) == {}


def test_each_plan_is_acknowledged_once_it_is_in_effect(make_worker):
    messages = [message(0, o) for o in range(3)]
    worker = make_worker(messages)
    plans, applied = [None, [1], None], []
    worker.applied = applied.append
    worker.should_stop = lambda: not plans
    worker.run([0, 1], next_plan=lambda: plans.pop(0))
    assert applied == [{}, {0: 3}]
    assert worker.sink.jobs == [(0, 0), (0, 1), (0, 2)]


def test_performed_mode_commits_what_sidekiq_finished(make_worker):
    """K2S_COMMIT_ON=performed: a batch in Redis is reported as pushed, not to commit; the
    offset to commit moves as Sidekiq's acknowledgements come in (any order)."""
    from test_performed import FakeRedis

    messages = [message(0, o) for o in range(4)]
    worker = make_worker(messages, K2S_COMMIT_ON="performed")
    worker.sink.client = worker.performed.client = FakeRedis()
    pushed = []
    worker.on_pushed = pushed.append
    worker.assign([0])
    worker.deliver(messages)
    assert pushed == [{0: 4}] and worker.reports == []
    worker.sink.client.ack(0, 1, 0, 3)
    worker.collect_performed()
    assert worker.reports == [{0: 2}]
    worker.sink.client.ack(0, 2)
    worker.collect_performed()
    assert worker.reports == [{0: 2}, {0: 4}]
    assert worker.assign([]) == {0: 4} and worker.performed.windows == {}


def test_redis_applies_a_batch_while_the_next_is_read_and_it_lands_in_order(make_worker):
    """Overlapped: deliver() returns once the batch is sent; it is reported when its answer
    is read, just before the next batch is sent (or when nothing more has arrived)."""
    first, second = [message(0, o) for o in range(3)], [message(0, o) for o in range(3, 5)]
    worker = make_worker(first + second)
    worker.sink.overlap = True
    worker.assign([0])
    worker.deliver(first)
    assert worker.reports == [] and worker.flight is not None
    worker.deliver(second)
    assert worker.reports == [{0: 3}] and worker.sink.jobs == [(0, 0), (0, 1), (0, 2)]
    worker.land()
    assert worker.reports == [{0: 3}, {0: 5}] and worker.position == {0: 5} and worker.flight is None


def test_a_batch_fenced_in_flight_is_sent_again_only_where_redis_lacks_it(make_worker):
    """Another writer moved partition 0 to offset 3 while the batch was on its way: its
    answer says it did not go in, and only what Redis lacks is pushed."""
    messages = [message(p, o) for o in range(5) for p in (0, 1)]
    worker = make_worker(messages)
    worker.sink.overlap = True
    worker.assign([0, 1])
    worker.deliver(messages)
    worker.sink.ahead = {0: 3}
    worker.land()
    assert sorted(worker.sink.jobs) == sorted([(0, 3), (0, 4)] + [(1, o) for o in range(5)])
    assert worker.reports == [{0: 5, 1: 5}]


def test_a_batch_whose_answer_was_lost_is_pushed_again(make_worker):
    messages = [message(0, o) for o in range(3)]
    worker = make_worker(messages)
    worker.sink.overlap = True
    worker.assign([0])
    worker.deliver(messages)
    worker.sink.failures = 2  # the connection failed before the answer, then once more
    worker.land()
    assert worker.sink.jobs == [(0, 0), (0, 1), (0, 2)] and worker.reports == [{0: 3}]
    assert worker.stats.redis_retries == 2


def test_the_batch_in_flight_lands_before_a_new_plan_and_before_stopping(make_worker):
    messages = [message(0, o) for o in range(3)] + [message(1, 0)]
    worker = make_worker(messages)
    worker.sink.overlap = True
    worker.source.consume = lambda count, wait, taken=[]: [] if taken else taken.append(1) or messages
    plans, applied = [None, [1], None], []
    worker.applied = applied.append
    worker.should_stop = lambda: not plans
    worker.run([0, 1], next_plan=lambda: plans.pop(0))
    assert applied == [{}, {0: 3}]  # partition 0 released where Redis has it: the batch had landed
    assert worker.reports == [{0: 3, 1: 1}] and worker.flight is None
