"""The sink against a real Redis: all or nothing, fenced by the ledger (one key per
partition, so writers of disjoint partitions never abort each other)."""

import time

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from helpers import RedisServer, watches
from kafka2sidekiq.encoder_types import Batch
from kafka2sidekiq.sink import WATCH_ATTEMPTS, Range, RedisUnavailable, Sink, resp

LEDGER = "k2s:ledger:g:t"


def batch_of(n: int, queue: str = "default") -> Batch:
    return Batch(queues={queue: [b'{"n":%d}' % i for i in range(n)]})


def test_applies_once_then_fences(redis_client):
    sink = Sink(redis_client, ledger=LEDGER)
    assert sink.push(batch_of(10), [Range(3, 0, 10)]) == {}
    assert redis_client.llen("queue:default") == 10 and redis_client.get(f"{LEDGER}:3") == b"10"
    assert sink.ledger([3, 4]) == {3: 10, 4: 0}
    # the same offsets again (a retry after an ambiguous timeout, or a zombie): nothing
    assert sink.push(batch_of(10), [Range(3, 0, 10)]) == {3: 10}
    assert sink.push(batch_of(5), [Range(3, 5, 10)]) == {3: 10}
    assert redis_client.llen("queue:default") == 10
    # the next offsets go in
    assert sink.push(batch_of(4), [Range(3, 10, 14)]) == {}
    assert redis_client.llen("queue:default") == 14 and redis_client.get(f"{LEDGER}:3") == b"14"
    assert redis_client.keys("k2s:*") == [f"{LEDGER}:3".encode()]  # no hash, no other partition
    assert sink.conflicts == 0


def test_more_than_a_thousand_jobs_keep_their_order(redis_client):
    Sink(redis_client, ledger=LEDGER).push(batch_of(2500), [Range(0, 0, 2500)])
    assert [redis_client.rpop("queue:default") for _ in range(3)] == [b'{"n":0}', b'{"n":1}', b'{"n":2}']
    assert redis_client.lindex("queue:default", 0) == b'{"n":2499}'


def test_refuses_a_queue_key_of_the_wrong_type_and_writes_nothing(redis_client):
    redis_client.set("queue:broken", "not a list")
    sink = Sink(redis_client, ledger=LEDGER)
    with pytest.raises(redis.ResponseError, match="WRONGTYPE queue:broken is a string"):
        sink.push(Batch(queues={"default": [b"{}"], "broken": [b"{}"]}), [Range(0, 0, 2)])
    assert not redis_client.exists("queue:default", "queues", LEDGER, f"{LEDGER}:0")


def test_refuses_a_ledger_key_of_the_wrong_type_and_writes_nothing(redis_client):
    redis_client.hset(f"{LEDGER}:1", "x", "1")  # MGET would read it as absent and SET would clobber it
    sink = Sink(redis_client, ledger=LEDGER)
    with pytest.raises(redis.ResponseError, match=f"WRONGTYPE {LEDGER}:1 is a hash, not the string"):
        sink.push(batch_of(2), [Range(0, 0, 1), Range(1, 0, 1)])
    assert not redis_client.exists("queue:default", "queues", f"{LEDGER}:0")
    assert redis_client.type(f"{LEDGER}:1") == b"hash"


def test_namespaced_ledger_keys_and_a_batch_without_ranges(redis_client):
    sink = Sink(redis_client, "ns", LEDGER)
    assert sink.ledger_key_of(7) == f"ns:{LEDGER}:7"
    assert sink.push(batch_of(3), [Range(7, 5, 8)]) == {}
    assert redis_client.get(f"ns:{LEDGER}:7") == b"8" and redis_client.llen("ns:queue:default") == 3
    assert sink.ledger([7]) == {7: 8}
    # no ranges (kafka2sidekiq push): no fence, no ledger write, the jobs still go in
    assert Sink(redis_client, "ns").push(batch_of(2), []) == {}
    assert redis_client.llen("ns:queue:default") == 5
    assert sorted(redis_client.keys("*")) == [b"ns:" + LEDGER.encode() + b":7", b"ns:queue:default", b"ns:queues"]


def between_round_trips(sink: Sink, action, times: int = 1 << 30) -> list:
    """Run ``action()`` right after each of ``sink``'s round trips that leave a WATCH
    standing (the fence's own, and each transaction's, which watches for the next batch),
    before the MULTI/EXEC relying on it (at most ``times`` times): another client writing
    while the WATCH is open."""
    calls, real = [], sink._round_trip

    def round_trip(commands, **kw):
        replies = real(commands, **kw)
        if watches(commands) and len(calls) < times:
            calls.append(action())
        return replies

    sink._round_trip = round_trip
    return calls


def test_disjoint_partitions_never_abort_each_other(redis_url):
    a_client, b_client = redis.Redis.from_url(redis_url), redis.Redis.from_url(redis_url)
    try:
        a, b = Sink(a_client, ledger=LEDGER), Sink(b_client, ledger=LEDGER)
        assert a.ledger([0, 2, 4, 6]) == {0: 0, 2: 0, 4: 0, 6: 0}
        assert b.ledger([1, 3, 5, 7]) == {1: 0, 3: 0, 5: 0, 7: 0}
        b_next = iter(range(0, 10_000, 100))

        def b_pushes():  # the other worker, on its own connection, between a's WATCH and EXEC
            first = next(b_next)
            return b.push(batch_of(100, "b"), [Range(p, first, first + 100) for p in (1, 3, 5, 7)])

        calls = between_round_trips(a, b_pushes, times=5)
        for first in range(0, 500, 100):
            assert a.push(batch_of(100, "a"), [Range(p, first, first + 100) for p in (0, 2, 4, 6)]) == {}
        assert calls == [{}] * 5  # b pushed inside each of a's five transactions, once each
        assert a.conflicts == 0 and b.conflicts == 0
        assert a_client.llen("queue:a") == 500 and a_client.llen("queue:b") == 500
        assert a.ledger(list(range(8))) == {p: 500 for p in range(8)}
    finally:
        a_client.close()
        b_client.close()


def test_the_same_partition_conflicts_then_fences(redis_url):
    a_client, b_client = redis.Redis.from_url(redis_url), redis.Redis.from_url(redis_url)
    try:
        a, b = Sink(a_client, ledger=LEDGER), Sink(b_client, ledger=LEDGER)
        # b (a zombie, or the new owner) pushes offsets 0..9 of partition 0 while a's WATCH is open
        calls = between_round_trips(a, lambda: b.push(batch_of(10, "b"), [Range(0, 0, 10)]), times=1)
        assert a.push(batch_of(10, "a"), [Range(0, 0, 10), Range(1, 0, 10)]) == {0: 10}
        assert calls == [{}]
        assert a.conflicts == 1 and b.conflicts == 0  # aborted once, then fenced: nothing of a's went in
        assert not a_client.exists("queue:a", f"{LEDGER}:1")
        assert a_client.llen("queue:b") == 10 and a_client.get(f"{LEDGER}:0") == b"10"
    finally:
        a_client.close()
        b_client.close()


def test_gives_up_naming_the_partition_another_writer_keeps_moving(redis_url):
    a_client, other = redis.Redis.from_url(redis_url), redis.Redis.from_url(redis_url)
    try:
        a = Sink(a_client, ledger=LEDGER)
        moves = iter(range(50, 100))  # below a's first offset: a is never stale, only aborted
        between_round_trips(a, lambda: other.set(f"{LEDGER}:5", next(moves)))
        with pytest.raises(RedisUnavailable, match=r"another writer is moving the ledger of partition\(s\) 5 "):
            a.push(batch_of(10), [Range(4, 0, 10), Range(5, 100, 110)])
        assert a.conflicts == WATCH_ATTEMPTS
        assert not a_client.exists("queue:default", f"{LEDGER}:4")
        # once the other writer stops, the same batch goes in
        a._round_trip = Sink._round_trip.__get__(a)
        assert a.push(batch_of(10), [Range(4, 0, 10), Range(5, 100, 110)]) == {}
        assert a_client.get(f"{LEDGER}:5") == b"110"
    finally:
        a_client.close()
        other.close()


def test_oom_applies_nothing_and_is_retryable(tmp_path):
    server = RedisServer(tmp_path)
    client = redis.Redis.from_url(server.url)
    try:
        client.config_set("maxmemory", 1)  # everything is over the limit
        sink = Sink(client, ledger=LEDGER)
        with pytest.raises(RedisUnavailable, match="OOM"):
            sink.push(batch_of(10), [Range(0, 0, 10)])
        client.config_set("maxmemory", 0)
        assert not client.exists("queue:default", "queues", f"{LEDGER}:0")
        assert sink.push(batch_of(10), [Range(0, 0, 10)]) == {}
        assert client.llen("queue:default") == 10
    finally:
        client.close()
        server.stop()


def test_one_round_trip_a_batch_once_the_fence_is_watched(redis_client):
    sink = Sink(redis_client, ledger=LEDGER)
    sink.follow([0, 1])
    trips, real = [], sink._round_trip
    sink._round_trip = lambda commands, **kw: trips.append(commands) or real(commands, **kw)
    for first in range(0, 1000, 100):
        assert sink.push(batch_of(100), [Range(0, first, first + 100), Range(1, first, first + 50)]) == {}
    assert len(trips) == 11  # the first batch's fence, then one transaction each
    assert redis_client.llen("queue:default") == 1000 and redis_client.mget(f"{LEDGER}:0", f"{LEDGER}:1") == [
        b"1000", b"950"]
    assert sink.conflicts == 0


def test_a_write_to_the_ledger_between_two_batches_is_fenced(redis_url):
    """The fence of a batch is read at the end of the previous one's round trip: another
    writer (a zombie) moving the ledger between the two batches aborts the second, and the
    read after the abort shows the ledger ahead: nothing of it goes in."""
    a_client, zombie = redis.Redis.from_url(redis_url), redis.Redis.from_url(redis_url)
    try:
        a = Sink(a_client, ledger=LEDGER)
        a.follow([0])
        assert a.push(batch_of(10, "a"), [Range(0, 0, 10)]) == {}
        zombie.set(f"{LEDGER}:0", 15)
        assert a.push(batch_of(10, "a"), [Range(0, 10, 20)]) == {0: 15}
        assert a.conflicts == 1 and a_client.llen("queue:a") == 10 and zombie.get(f"{LEDGER}:0") == b"15"
    finally:
        a_client.close()
        zombie.close()


def test_a_new_connection_has_no_watch_and_fences_again(redis_url):
    """The connection dropped between two batches (Redis restarted, a proxy closed it):
    the watch went with it, so the next batch must not trust what was read before, even
    when redis-py's idle health check would have reconnected in place (a client that
    retries: the check's failed PING is followed by a new connection)."""
    a_client = redis.Redis.from_url(redis_url, health_check_interval=1, retry=Retry(NoBackoff(), 3))
    other = redis.Redis.from_url(redis_url)
    try:
        a = Sink(a_client, ledger=LEDGER)
        a.follow([0])
        assert a.push(batch_of(10, "a"), [Range(0, 0, 10)]) == {}
        other.client_kill_filter(_id=a._round_trip([resp([b"CLIENT", b"ID"])])[0])
        time.sleep(1.1)  # idle past the health check's interval
        other.set(f"{LEDGER}:0", 15)
        with pytest.raises(RedisUnavailable):  # the transaction met the closed connection
            a.push(batch_of(10, "a"), [Range(0, 10, 20)])
        assert a.push(batch_of(10, "a"), [Range(0, 10, 20)]) == {0: 15}  # fenced on the new connection
        assert a_client.llen("queue:a") == 10
    finally:
        a_client.close()
        other.close()


def test_a_batch_sent_is_applied_while_the_next_is_read_and_fenced_like_any(redis_url):
    """send() puts the transaction on its way; answer() reads it later. A zombie moving
    the ledger between two sends aborts the second (its fence was read and watched after
    the first EXEC), answer() says so, and push() then finds the ledger ahead."""
    a_client, zombie = redis.Redis.from_url(redis_url), redis.Redis.from_url(redis_url)
    try:
        a = Sink(a_client, ledger=LEDGER)
        a.follow([0])
        assert a.send(batch_of(10, "a"), [Range(0, 0, 10)]) is False  # no fence read yet: push() it
        assert a.push(batch_of(10, "a"), [Range(0, 0, 10)]) == {}
        assert a.send(batch_of(10, "a"), [Range(0, 10, 20)]) is True
        assert a.answer() is True
        assert zombie.llen("queue:a") == 20 and zombie.get(f"{LEDGER}:0") == b"20"
        assert a.send(batch_of(10, "a"), [Range(0, 20, 30)]) is True
        with pytest.raises(RuntimeError, match="answer"):
            a.ledger([0])  # the connection's next reply is the transaction's: refused, and dropped
        with pytest.raises(RedisUnavailable):
            a.answer()  # unknown: push it again, the fence tells
        assert a.push(batch_of(10, "a"), [Range(0, 20, 30)]) == {0: 30}  # it had gone in: not twice
        assert a.push(batch_of(10, "a"), [Range(0, 30, 40)]) == {}
        zombie.set(f"{LEDGER}:0", 45)
        assert a.send(batch_of(10, "a"), [Range(0, 40, 50)]) is True
        assert a.answer() is False and a.conflicts == 1
        assert a.send(batch_of(10, "a"), [Range(0, 40, 50)]) is False  # the read after the abort: ahead
        assert a.push(batch_of(10, "a"), [Range(0, 40, 50)]) == {0: 45}
        assert zombie.llen("queue:a") == 40 and zombie.get(f"{LEDGER}:0") == b"45"
    finally:
        a_client.close()
        zombie.close()
