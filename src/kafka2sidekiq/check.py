"""``kafka2sidekiq check``: reach Kafka and Redis with the configured settings and say,
one line each, what the bridge would meet. Exit 0 when nothing is wrong, 1 otherwise.

Checks: the topic and its partitions, the dead-letter topic; Redis version,
maxmemory and maxmemory-policy; the Sidekiq processes seen in Redis (their heartbeats),
the queues they listen to, and whether their versions read the configured timestamp
format; the consumer group: its members and which partitions this host owns now (its
keys' home, with one Redis per host); then what the bridge would do: where it would
start (the larger of the group's committed offset and the ledger, as a worker does),
how many messages wait, which encoder and timestamps it would use.
"""

from __future__ import annotations

from typing import Callable

import msgspec
import redis
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from .config import Settings, redact
from . import encoder
from .coordinator import instance_id
from .sidekiq import TIMESTAMPS_MS, key_prefix
from .sink import Sink, connect
from .source import committed_offsets, consumer_config
from .worker import start_offsets


def run(settings: Settings, say: Callable[[str], None] = print) -> int:
    problems = 0

    def report(ok: bool | None, what: str) -> None:
        nonlocal problems
        problems += ok is False
        say(f"{'ok  ' if ok else 'warn' if ok is None else 'FAIL'} {what}")

    # Kafka
    partitions: list[int] = []
    errors: list[KafkaError] = []  # what librdkafka met on the way, e.g. refused credentials
    admin = AdminClient(settings.kafka_config("kafka2sidekiq-check", {"error_cb": errors.append}))
    try:
        meta = admin.list_topics(settings.topic, timeout=15).topics.get(settings.topic)
        if meta is None or meta.error is not None:
            report(False, f"kafka: topic {settings.topic!r} not found at {settings.bootstrap_servers}")
        else:
            partitions = sorted(meta.partitions)
            report(True, f"kafka: topic {settings.topic!r} has {len(partitions)} partitions "
                         f"at {settings.bootstrap_servers}")
        dlq = admin.list_topics(settings.dead_letter_topic, timeout=15).topics.get(settings.dead_letter_topic)
        if dlq is not None and dlq.error is None:
            report(True, f"kafka: dead-letter topic {settings.dead_letter_topic!r} exists")
        else:
            report(None, f"kafka: dead-letter topic {settings.dead_letter_topic!r} does not exist "
                         f"(rejected messages need it, unless the broker creates topics)")
        _group(admin, settings, report)
    except KafkaException as exc:
        admin.poll(0)  # serves error_cb
        refused = [e.str() for e in errors if e.code() == KafkaError._AUTHENTICATION]
        if refused:
            report(False, f"kafka: {settings.bootstrap_servers} refused the credentials: {refused[-1]}")
        else:
            report(False, f"kafka: cannot reach {settings.bootstrap_servers}: {exc}")

    # Redis
    where = redact(settings.redis_url)
    client = connect(settings.redis_url, timeout=5, tls=settings.redis_tls)
    try:
        info = client.info()
        report(True, f"redis: {info.get('redis_version')} at {where}, used_memory "
                     f"{info.get('used_memory_human')}, maxmemory {info.get('maxmemory_human', '0B')}")
        policy = info.get("maxmemory_policy")
        report(policy == "noeviction" or None,
               f"redis: maxmemory-policy {policy}" + ("" if policy == "noeviction" else
                                                       ": under memory pressure Redis evicts keys, jobs among them"))
        _sidekiq(client, settings, report)
        if partitions:
            _plan(client, settings, partitions, report)
    except redis.AuthenticationError as exc:
        report(False, f"redis: {where} refused the credentials: {exc}")
    except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError) as exc:
        report(False, f"redis: cannot reach {where}: {exc}")
    finally:
        client.close()
    say(f"{problems} problem(s)")
    return 1 if problems else 0


def _group(admin: AdminClient, settings: Settings, report) -> None:
    """The group's members now, and the partitions of the topic this host owns."""
    group, me = settings.group_id, instance_id(settings)
    try:
        described = admin.describe_consumer_groups([group], request_timeout=15)[group].result()
    except KafkaException as exc:
        report(None, f"kafka: cannot describe group {group!r}: {exc}")
        return
    owned = {}
    for member in described.members:
        name = member.group_instance_id or member.member_id
        owned[name] = sorted(tp.partition for tp in member.assignment.topic_partitions
                             if tp.topic == settings.topic)
    if not owned:
        report(True, f"kafka: group {group!r} has no member now; this host ({me}) would join it")
        return
    report(True, f"kafka: group {group!r}: {len(owned)} member(s): "
                 + ", ".join(f"{name} {len(parts)}" for name, parts in sorted(owned.items())))
    if me in owned:
        report(True, f"kafka: this host ({me}) owns partition(s) {owned[me]} of {settings.topic!r}")
    else:
        report(True, f"kafka: this host ({me}) is not a member now (K2S_INSTANCE_ID, else the host name)")


def _plan(client: redis.Redis, settings: Settings, partitions: list[int], report) -> None:
    """What a worker would do at start: read from max(committed, ledger) to the end."""
    topic = settings.topic
    ledger = Sink(client, settings.redis_namespace, Sink.ledger_name(settings.group_id, topic)).ledger(partitions)
    consumer = Consumer(consumer_config(settings))
    try:
        committed = committed_offsets(consumer, topic, partitions, timeout=15)
        start = start_offsets(partitions, committed, ledger)
        waiting = 0
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=15)
            waiting += max(0, high - max(low, start[p]))
    except KafkaException as exc:
        report(False, f"kafka: cannot read the offsets of group {settings.group_id!r}: {exc}")
        return
    finally:
        consumer.close()
    try:
        which = encoder.describe(encoder.select(settings.encoder))
    except encoder.EncoderUnavailable as exc:
        report(False, f"bridge: K2S_ENCODER=fast: {exc}")
        return
    report(True, f"bridge: {settings.workers} worker(s) would read {len(partitions)} partition(s) as group "
                 f"{settings.group_id!r}, {waiting} message(s) waiting; {which} encoder, "
                 f"{settings.timestamps} timestamps, rejects to {settings.dead_letter_topic!r}")


def _sidekiq(client: redis.Redis, settings: Settings, report) -> None:
    prefix = key_prefix(settings.redis_namespace)
    try:
        identities = sorted(client.smembers(prefix + "processes"))
    except redis.exceptions.NoPermissionError:  # an ACL user with only the keys the bridge writes
        report(None, "sidekiq: this Redis user may not read Sidekiq's heartbeats (the processes set), so "
                     "the Sidekiq versions and queues are not checked (grant %R~* to let check read them)")
        return
    if not identities:
        report(None, "sidekiq: no Sidekiq process is running against this Redis right now")
        return
    versions, queues = set(), set()
    for identity in identities:
        raw = client.hget(prefix + identity.decode(), "info")
        if not raw:
            continue
        data = msgspec.json.decode(raw)
        versions.add(data.get("version") or "unknown (Sidekiq 6 records none)")
        queues.update(data.get("queues") or ())
    report(True, f"sidekiq: {len(identities)} process(es), version(s) {', '.join(sorted(versions))}, "
                 f"queues {', '.join(sorted(queues))}")
    if settings.default_queue not in queues:
        report(None, f"sidekiq: no process listens to the default queue {settings.default_queue!r}")
    if settings.timestamps == TIMESTAMPS_MS:
        old = [v for v in versions if not v[:1].isdigit() or int(v.split(".")[0]) < 8]
        report(not old, "sidekiq: K2S_TIMESTAMPS=ms needs Sidekiq 8 everywhere" +
               (f"; seen {', '.join(old)}: they show ms as dates far ahead" if old else ""))
