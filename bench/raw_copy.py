"""Raw copy in Python: Kafka bytes -> LPUSH unchanged, no decode, no encode, no ledger,
in PROCESSES forked processes that split the partitions, each reading through the
bridge's own Source (its librdkafka tuning and batching) and writing one redis-py
pipeline per batch. Python calls value() per message: the ceiling of a Python bridge,
not of the bytes (bench/ceiling.py is that).

    python -m bench.raw_copy BOOTSTRAP TOPIC REDIS_URL BATCH_SIZE PROCESSES
"""

import sys

import redis

from . import common


def copy(bootstrap: str, topic: str, redis_url: str, batch_size: int, mine: list[int]) -> None:
    stop = common.stop_flag()
    source = common.tuned_source(bootstrap, topic, "raw-copy", mine)
    client = redis.Redis.from_url(redis_url)
    while not stop:
        values = [m.value() for m in source.consume(batch_size, common.BATCH_WAIT_SECONDS) if m.error() is None]
        if values:
            pipe = client.pipeline(transaction=False)
            pipe.sadd("queues", "default")
            pipe.lpush("queue:default", *values)
            pipe.execute()
    source.close()


def main(bootstrap: str, topic: str, redis_url: str, batch_size: str, processes: str) -> None:
    common.split(bootstrap, topic, int(processes), lambda mine: copy(bootstrap, topic, redis_url, int(batch_size), mine))


if __name__ == "__main__":
    main(*sys.argv[1:])
