"""The straightforward Python bridge the benchmarks compare against: confluent-kafka
consume -> protobuf library decode -> a dict -> msgspec encode -> one redis-py pipeline
(SADD + LPUSH per queue) per batch -> commit. No ledger, no dead letters: what a team
would write in an afternoon, given the bridge's own librdkafka tuning (imported from
kafka2sidekiq.source) so that only the work per job differs. PROCESSES forked processes
split the partitions, as the bridge's workers do.

    python -m bench.baseline_bridge BOOTSTRAP TOPIC GROUP REDIS_URL BATCH_SIZE [PROCESSES]
"""

import secrets
import sys
import time

import msgspec
import redis
from confluent_kafka import Consumer, TopicPartition

from kafka2sidekiq._proto.job_pb2 import Job

from . import common


def bridge(bootstrap, topic, group, redis_url, batch_size, mine) -> None:
    stop = common.stop_flag()
    consumer = Consumer(common.tuned_consumer_config(bootstrap, group))
    consumer.assign([TopicPartition(topic, p, -2) for p in mine])  # a new group: from the beginning
    client = redis.Redis.from_url(redis_url)
    encode, decode = msgspec.json.Encoder().encode, msgspec.json.decode
    while not stop:
        messages = consumer.consume(batch_size, common.BATCH_WAIT_SECONDS)
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


def main(bootstrap, topic, group, redis_url, batch_size, processes="1") -> None:
    common.split(bootstrap, topic, int(processes),
                 lambda mine: bridge(bootstrap, topic, group, redis_url, int(batch_size), mine))


if __name__ == "__main__":
    main(*sys.argv[1:])
