"""The straightforward single-process Python bridge the benchmarks compare against:
confluent-kafka consume -> protobuf library decode -> a dict -> msgspec encode -> one
redis-py pipeline (SADD + LPUSH per queue) per batch -> commit. No ledger, no dead
letters: what a team would write in an afternoon.

    python -m bench.baseline_bridge BOOTSTRAP TOPIC GROUP REDIS_URL BATCH_SIZE
"""

import secrets
import signal
import sys
import time

import msgspec
import redis
from confluent_kafka import Consumer

from kafka2sidekiq._proto.job_pb2 import Job


def main(bootstrap, topic, group, redis_url, batch_size) -> None:
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    consumer.subscribe([topic])
    client = redis.Redis.from_url(redis_url)
    encode, decode = msgspec.json.Encoder().encode, msgspec.json.decode
    while not stop:
        messages = consumer.consume(int(batch_size), 0.1)
        if not messages:
            continue
        now = time.time()
        queues: dict[str, list[bytes]] = {}
        for m in messages:
            if m.error():
                continue
            job = Job.FromString(m.value())
            payload = {"retry": True, "queue": job.queue or "default", "class": job.job_class,
                       "args": decode(job.args_json or "[]"), "jid": secrets.token_hex(12),
                       "created_at": m.timestamp()[1] / 1000, "enqueued_at": now,
                       **(decode(job.extra_json) if job.extra_json else {})}
            queues.setdefault(payload["queue"], []).append(encode(payload))
        pipe = client.pipeline(transaction=False)
        for queue, payloads in queues.items():
            pipe.sadd("queues", queue)
            pipe.lpush(f"queue:{queue}", *payloads)
        pipe.execute()
        consumer.commit(asynchronous=True)
    consumer.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
