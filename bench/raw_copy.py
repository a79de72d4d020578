"""The raw-copy ceiling: Kafka bytes -> LPUSH unchanged, no decode, no encode, no ledger,
with the same batching as the bridge, in PROCESSES forked processes that split the
partitions. No bridge can be faster on the same services.

    python -m bench.raw_copy BOOTSTRAP TOPIC REDIS_URL BATCH_SIZE PROCESSES
"""

import os
import signal
import sys

import redis
from confluent_kafka import Consumer, TopicPartition


def copy(bootstrap: str, topic: str, redis_url: str, batch_size: int, mine: list[int]) -> None:
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "raw-copy", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, -2) for p in mine])  # from the beginning
    client = redis.Redis.from_url(redis_url)
    while not stop:
        values = [m.value() for m in consumer.consume(batch_size, 0.02) if m.error() is None]
        if values:
            pipe = client.pipeline(transaction=False)
            pipe.sadd("queues", "default")
            pipe.lpush("queue:default", *values)
            pipe.execute()
    consumer.close()


def main(bootstrap: str, topic: str, redis_url: str, batch_size: str, processes: str) -> None:
    from confluent_kafka.admin import AdminClient

    # the partition count, from a client that is gone before anything forks
    partitions = sorted(AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=15)
                        .topics[topic].partitions)
    n = int(processes)
    pids = []
    for i in range(n):
        pid = os.fork()
        if pid == 0:
            try:
                copy(bootstrap, topic, redis_url, int(batch_size), partitions[i::n])
            finally:
                os._exit(0)
        pids.append(pid)
    signal.signal(signal.SIGTERM, lambda *_: [os.kill(p, signal.SIGTERM) for p in pids])
    for pid in pids:
        while True:
            try:
                os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue


if __name__ == "__main__":
    main(*sys.argv[1:])
