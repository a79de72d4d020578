"""The sink against a real Redis: all or nothing, fenced by the ledger."""

import pytest
import redis

from helpers import RedisServer
from kafka2sidekiq.encoder_py import Batch
from kafka2sidekiq.sink import Range, RedisUnavailable, Sink

LEDGER = "k2s:ledger:g:t"


def batch_of(n: int, queue: str = "default") -> Batch:
    return Batch(queues={queue: [b'{"n":%d}' % i for i in range(n)]})


def test_applies_once_then_fences(redis_client):
    sink = Sink(redis_client, ledger=LEDGER)
    assert sink.push(batch_of(10), [Range(3, 0, 10)]) == {}
    assert redis_client.llen("queue:default") == 10 and redis_client.hget(LEDGER, "3") == b"10"
    # the same offsets again (a retry after an ambiguous timeout, or a zombie): nothing
    assert sink.push(batch_of(10), [Range(3, 0, 10)]) == {3: 10}
    assert sink.push(batch_of(5), [Range(3, 5, 10)]) == {3: 10}
    assert redis_client.llen("queue:default") == 10
    # the next offsets go in
    assert sink.push(batch_of(4), [Range(3, 10, 14)]) == {}
    assert redis_client.llen("queue:default") == 14 and redis_client.hget(LEDGER, "3") == b"14"


def test_more_than_a_thousand_jobs_keep_their_order(redis_client):
    Sink(redis_client, ledger=LEDGER).push(batch_of(2500), [Range(0, 0, 2500)])
    assert [redis_client.rpop("queue:default") for _ in range(3)] == [b'{"n":0}', b'{"n":1}', b'{"n":2}']
    assert redis_client.lindex("queue:default", 0) == b'{"n":2499}'


def test_refuses_a_queue_key_of_the_wrong_type_and_writes_nothing(redis_client):
    redis_client.set("queue:broken", "not a list")
    sink = Sink(redis_client, ledger=LEDGER)
    with pytest.raises(redis.ResponseError, match="WRONGTYPE queue:broken is a string"):
        sink.push(Batch(queues={"default": [b"{}"], "broken": [b"{}"]}), [Range(0, 0, 2)])
    assert not redis_client.exists("queue:default", "queues", LEDGER)


def test_oom_applies_nothing_and_is_retryable(tmp_path):
    server = RedisServer(tmp_path)
    client = redis.Redis.from_url(server.url)
    try:
        client.config_set("maxmemory", 1)  # everything is over the limit
        sink = Sink(client, ledger=LEDGER)
        with pytest.raises(RedisUnavailable, match="OOM"):
            sink.push(batch_of(10), [Range(0, 0, 10)])
        client.config_set("maxmemory", 0)
        assert not client.exists("queue:default", "queues", LEDGER)
        assert sink.push(batch_of(10), [Range(0, 0, 10)]) == {}
        assert client.llen("queue:default") == 10
    finally:
        client.close()
        server.stop()
