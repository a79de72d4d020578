"""Upgrade from the released ledger (one hash per group and topic, field = partition) to
one key per partition: ledger() moves the partitions a worker takes into their keys, the
larger value wins, and nothing is pushed twice or skipped."""

import threading

import pytest
import redis

from helpers import watches
from kafka2sidekiq.encoder_types import Batch
from kafka2sidekiq.sink import Range, Sink
from kafka2sidekiq.worker import start_offsets

LEDGER = "k2s:ledger:g:t"


def batch_of(n: int, queue: str = "default") -> Batch:
    return Batch(queues={queue: [b'{"n":%d}' % i for i in range(n)]})


def released_format(client: redis.Redis, prefix: str = "") -> None:
    """What the released version left behind: the hash it HSET after each batch, plus
    (after a first, partial upgrade) two partitions with keys of their own already."""
    client.hset(prefix + LEDGER, mapping={"0": 100, "1": 200, "2": 300, "3": 400})
    client.set(f"{prefix}{LEDGER}:1", 250)  # ahead of the hash: kept
    client.set(f"{prefix}{LEDGER}:2", 150)  # behind the hash: raised to 300
    client.set(f"{prefix}{LEDGER}:5", 7)    # never in the hash


EXPECTED = {0: 100, 1: 250, 2: 300, 3: 400, 5: 7, 6: 0}


def test_ledger_moves_the_hash_into_keys_taking_the_larger(redis_client):
    released_format(redis_client)
    sink = Sink(redis_client, ledger=LEDGER)
    assert sink.ledger([0, 1, 2, 3, 5, 6]) == EXPECTED
    assert not redis_client.exists(LEDGER)  # every field moved: the hash is gone
    assert {p: redis_client.get(f"{LEDGER}:{p}") for p in EXPECTED} == {
        0: b"100", 1: b"250", 2: b"300", 3: b"400", 5: b"7", 6: None}
    assert sink.ledger([0, 1, 2, 3, 5, 6]) == EXPECTED  # again: nothing left to move, same answer
    assert sink.conflicts == 0


def test_after_the_upgrade_nothing_is_pushed_twice_or_skipped(redis_client):
    released_format(redis_client)
    sink = Sink(redis_client, ledger=LEDGER)
    ledger = sink.ledger([0, 1, 2, 3])
    # where the worker starts: the ledger wins over an older Kafka commit
    assert start_offsets([0, 1, 2, 3], {0: 90, 1: 200, 2: 310}, ledger) == {0: 100, 1: 250, 2: 310, 3: 400}
    # offsets below the migrated values were pushed by the released version: fenced
    assert sink.push(batch_of(10), [Range(0, 90, 100)]) == {0: 100}
    assert sink.push(batch_of(10), [Range(1, 200, 210)]) == {1: 250}
    assert sink.push(batch_of(10), [Range(2, 299, 309), Range(3, 400, 410)]) == {2: 300}
    assert sink.push(batch_of(10), [Range(3, 399, 409)]) == {3: 400}
    assert not redis_client.exists("queue:default")
    # exactly at the migrated values: in, each once
    assert sink.push(batch_of(10), [Range(0, 100, 110)]) == {}
    assert sink.push(batch_of(10), [Range(1, 250, 260), Range(2, 300, 310), Range(3, 400, 410)]) == {}
    assert redis_client.llen("queue:default") == 20
    assert sink.ledger([0, 1, 2, 3]) == {0: 110, 1: 260, 2: 310, 3: 410}
    assert not redis_client.exists(LEDGER)


def test_only_the_partitions_asked_for_move(redis_client):
    released_format(redis_client)
    sink = Sink(redis_client, ledger=LEDGER)
    assert sink.ledger([2]) == {2: 300}
    assert redis_client.hgetall(LEDGER) == {b"0": b"100", b"1": b"200", b"3": b"400"}
    assert Sink(redis_client, ledger=LEDGER).ledger([1, 3]) == {1: 250, 3: 400}
    assert redis_client.hgetall(LEDGER) == {b"0": b"100"}
    assert sink.ledger([0]) == {0: 100}
    assert not redis_client.exists(LEDGER)


def test_a_namespaced_ledger_moves_too(redis_client):
    released_format(redis_client, "ns:")
    sink = Sink(redis_client, "ns", LEDGER)
    assert sink.ledger([0, 1, 2, 3, 5, 6]) == EXPECTED
    assert not redis_client.exists(f"ns:{LEDGER}") and redis_client.get(f"ns:{LEDGER}:2") == b"300"
    assert not redis_client.keys("k2s:*")


def test_refuses_an_old_ledger_that_is_not_a_hash(redis_client):
    redis_client.set(LEDGER, "something else")
    with pytest.raises(redis.ResponseError, match=f"WRONGTYPE {LEDGER} is a string, not the hash"):
        Sink(redis_client, ledger=LEDGER).ledger([0])
    assert redis_client.get(LEDGER) == b"something else" and not redis_client.exists(f"{LEDGER}:0")


def test_two_migrations_interleaved_agree(redis_url):
    a_client, b_client = redis.Redis.from_url(redis_url), redis.Redis.from_url(redis_url)
    try:
        released_format(a_client)
        a, b = Sink(a_client, ledger=LEDGER), Sink(b_client, ledger=LEDGER)
        results, real = [], a._round_trip

        def round_trip(commands, **kw):  # b migrates all of it while a's WATCH is open
            replies = real(commands, **kw)
            if watches(commands) and not results:
                results.append(b.ledger([0, 1, 2, 3, 5, 6]))
            return replies

        a._round_trip = round_trip
        assert a.ledger([0, 1, 2, 3, 5, 6]) == EXPECTED
        assert results == [EXPECTED]
        assert a.conflicts == 1 and b.conflicts == 0  # a's transaction aborted, then a read b's result
        assert not a_client.exists(LEDGER)
        assert a_client.get(f"{LEDGER}:2") == b"300" and a_client.get(f"{LEDGER}:1") == b"250"
    finally:
        a_client.close()
        b_client.close()


def test_concurrent_migrations_agree(redis_url):
    setup = redis.Redis.from_url(redis_url)
    released_format(setup)
    clients = [redis.Redis.from_url(redis_url) for _ in range(8)]
    sinks = [Sink(c, ledger=LEDGER) for c in clients]
    start = threading.Barrier(len(sinks), timeout=10)
    results: list = [None] * len(sinks)

    def migrate(i: int) -> None:
        start.wait()
        results[i] = sinks[i].ledger([0, 1, 2, 3, 5, 6])

    threads = [threading.Thread(target=migrate, args=(i,)) for i in range(len(sinks))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not any(t.is_alive() for t in threads)
        assert results == [EXPECTED] * len(sinks)
        assert not setup.exists(LEDGER)
        assert {p: int(setup.get(f"{LEDGER}:{p}") or 0) for p in EXPECTED} == EXPECTED
    finally:
        for c in clients:
            c.close()
        setup.close()
