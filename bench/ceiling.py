"""The strict ceiling: the fastest these bytes move from Kafka into a Redis list with
confluent-kafka. Kafka bytes -> LPUSH unchanged, no decode, no encode, no ledger, one
round trip per batch, in PROCESSES forked processes that split the partitions, each
reading through the bridge's own Source (its tuning and batching). Messages are read in
place, at the offsets the project's compiled encoder uses (bench/_messages.c), and the
command is written by the project's compiled RESP writer (kafka2sidekiq._encoder_c.resp),
sent on one redis-py connection as the bridge's sink does. Redis applies each batch while
the next is read from Kafka; its answer is read just before the next is sent, as the
bridge's workers do. What is left is confluent-kafka making Message objects, one list of
values, one copy into the command and Redis itself.

    python -m bench.ceiling BOOTSTRAP TOPIC REDIS_URL BATCH_SIZE PROCESSES
"""

import sys

import redis

from . import common, compiled


def copy(bootstrap: str, topic: str, redis_url: str, batch_size: int, mine: list[int]) -> None:
    from kafka2sidekiq._encoder_c import resp

    stop = common.stop_flag()
    values = compiled.load().values
    kind, at = compiled.message_fields()
    value_at, error_at = at["value"], at["error"]
    source = common.tuned_source(bootstrap, topic, "ceiling", mine)
    connection = redis.Redis.from_url(redis_url).connection_pool.get_connection()
    sadd = resp([b"SADD", b"queues", b"default"])
    waiting = 0  # replies not read yet: Redis applies one batch while the next is read
    while not stop:
        batch = values(source.consume(batch_size, 0 if waiting else common.BATCH_WAIT_SECONDS),
                       kind, value_at, error_at)
        for _ in range(waiting):
            connection.read_response()
        waiting = 0
        if batch:
            connection.send_packed_command([sadd, resp([b"LPUSH", b"queue:default", batch])])
            waiting = 2
    source.close()


def main(bootstrap: str, topic: str, redis_url: str, batch_size: str, processes: str) -> None:
    compiled.load()  # built once, before the fork
    common.split(bootstrap, topic, int(processes), lambda mine: copy(bootstrap, topic, redis_url, int(batch_size), mine))


if __name__ == "__main__":
    main(*sys.argv[1:])
