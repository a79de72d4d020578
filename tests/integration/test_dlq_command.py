"""``kafka2sidekiq dlq``: list and replay dead letters that the bridge itself wrote."""

import json
import subprocess
import sys
import time

from helpers import REPO, Bridge, bridge_env, numbered_jobs, produce, queue_jobs, settle, wait_for

from kafka2sidekiq import Job, __version__


def dlq(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kafka2sidekiq", "dlq", *args], env=env, capture_output=True,
                          text=True, timeout=120, cwd=REPO)


def lines(result: subprocess.CompletedProcess) -> list[str]:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.splitlines()


def letter_headers(bootstrap: str, topic: str) -> set[str]:
    """Header names and the k2s.version value of the first letter in partition 0 of ``topic``."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "headers", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    try:
        msg = wait_for(lambda: consumer.poll(1), 30, "a dead letter")
        headers = dict(msg.headers())
        return set(headers) | {headers["k2s.version"].decode()}
    finally:
        consumer.close()


def test_list_filter_quarantine_and_replay_after_fixing_the_allow_list(bootstrap, make_topic, redis_url,
                                                                       redis_client):
    topic = make_topic(4)
    make_topic(2, name=f"{topic}.dlq")
    good = numbered_jobs(300, keys=10)
    evil = [(f"e{i}".encode(), Job(job_class="EvilJob", queue="critical", args_json=json.dumps([i]))
             .SerializeToString()) for i in range(30)]
    garbage = [(b"g", b"\xff\xfe not protobuf")] * 5
    produced_at = time.time()
    produce(bootstrap, topic, good + evil + garbage)
    env = bridge_env(bootstrap, redis_url, topic, workers=1, class_allow="NumberedJob")
    bridge = Bridge(env, "run")
    try:
        settle(redis_client, "queue:default", len(good), 60)
        wait_for(lambda: len(lines(dlq(env, "list"))) == 36, 60, "35 dead letters")
    finally:
        assert bridge.stop() == 0, bridge.output()[-2000:]

    listed = lines(dlq(env, "list"))
    assert listed[-1] == f"35 dead letter(s) matched in {topic}.dlq"
    assert sum("reason=class_not_allowed" in line and "class=EvilJob queue=critical" in line
               for line in listed) == 30
    assert sum("reason=not_protobuf" in line and "not a Job message" in line for line in listed) == 5
    assert all(f"origin={topic}/" in line for line in listed[:-1])
    assert lines(dlq(env, "list", "--class", "EvilJob"))[-1].startswith("30 dead letter(s)")
    assert lines(dlq(env, "list", "--reason", "not_protobuf"))[-1].startswith("5 dead letter(s)")
    assert lines(dlq(env, "list", "--partition", "0", "--offsets", "0-1"))[-1].startswith("2 dead letter(s)")
    assert lines(dlq(env, "list", "--since", str(time.time() + 3600)))[-1].startswith("0 dead letter(s)")
    assert lines(dlq(env, "list", "--until", "2000-01-01"))[-1].startswith("0 dead letter(s)")
    assert lines(dlq(env, "list", "--since", str(produced_at - 60)))[-1].startswith("35 dead letter(s)")
    assert lines(dlq(env, "list", "--until", str(time.time() + 60)))[-1].startswith("35 dead letter(s)")
    assert lines(dlq(env, "list", "--queue", "critical"))[-1].startswith("30 dead letter(s)")
    assert lines(dlq(env, "list", "--queue", "nowhere"))[-1].startswith("0 dead letter(s)")
    limited = lines(dlq(env, "list", "--limit", "4"))
    assert len(limited) == 5 and limited[-1].startswith("4 dead letter(s)")
    assert letter_headers(bootstrap, f"{topic}.dlq") == {"k2s.reason", "k2s.topic", "k2s.partition", "k2s.offset",
                                                        "k2s.version", __version__}

    # one letter, by where list shows it
    where = next(line for line in listed if "class=EvilJob" in line).split()[0]  # <dlq topic>/<p>@<offset>
    partition, offset = where.rsplit("/", 1)[1].split("@")
    picked = lines(dlq(env, "replay", "--partition", partition, "--offsets", f"{offset}-{offset}", "--to", "queue:one"))
    assert picked[-1] == "1 dead letter(s) matched, 1 replayed to Redis queue 'one'"
    [one] = queue_jobs(redis_client, "one")
    assert f"args={json.dumps(one['args'])} " in next(line for line in listed if line.startswith(f"{where} ")) + " "

    dry = lines(dlq(env, "replay", "--class", "EvilJob", "--to", "queue:quarantine", "--dry-run"))
    assert sum(line.startswith("would replay") for line in dry) == 30
    assert redis_client.llen("queue:quarantine") == 0

    # a quarantined job keeps its Kafka origin: origin jids as the bridge would give them
    origin_env = {**env, "K2S_JID_MODE": "origin", "K2S_ADD_ORIGIN": "true"}
    started = time.monotonic()
    moved = lines(dlq(origin_env, "replay", "--class", "EvilJob", "--to", "queue:quarantine", "--rate", "10"))
    assert time.monotonic() - started >= 29 / 10  # the rate limit held (longer than any start-up)
    assert moved[-1] == "30 dead letter(s) matched, 30 replayed to Redis queue 'quarantine'"
    quarantined = queue_jobs(redis_client, "quarantine")
    assert sorted(j["args"][0] for j in quarantined) == list(range(30))
    assert {j["class"] for j in quarantined} == {"EvilJob"} and {j["queue"] for j in quarantined} == {"quarantine"}
    assert redis_client.llen("queue:critical") == 0
    origins = {line.split(" origin=")[1].split()[0].replace("@", "/")
               for line in listed if "class=EvilJob" in line}
    assert {j["k2s_origin"] for j in quarantined} == origins
    assert len({j["jid"] for j in quarantined}) == 30
    again = lines(dlq(origin_env, "replay", "--class", "EvilJob", "--to", "queue:again"))
    assert {j["k2s_origin"]: j["jid"] for j in queue_jobs(redis_client, "again")} == \
        {j["k2s_origin"]: j["jid"] for j in quarantined}, again  # the same letter, the same jid

    skipped = lines(dlq(env, "replay", "--reason", "not_protobuf", "--to", "queue:quarantine"))
    assert sum("not a Job message" in line for line in skipped) == 5
    assert skipped[-1] == "5 dead letter(s) matched, 0 replayed to Redis queue 'quarantine'"

    # the operator fixes the allow-list, then sends the jobs back through the bridge
    env = bridge_env(bootstrap, redis_url, topic, workers=1, class_allow="NumberedJob,EvilJob")
    bridge = Bridge(env, "run")
    try:
        assert lines(dlq(env, "replay", "--class", "EvilJob"))[-1] == \
            "30 dead letter(s) matched, 30 replayed to the origin topic"
        settle(redis_client, "queue:critical", 30, 60)
        assert sorted(j["args"][0] for j in queue_jobs(redis_client, "critical")) == list(range(30))
    finally:
        assert bridge.stop() == 0, bridge.output()[-2000:]


def test_a_missing_dead_letter_topic_is_named(bootstrap, make_topic, redis_url):
    topic = make_topic(1)
    result = dlq(bridge_env(bootstrap, redis_url, topic), "list")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith(f"kafka2sidekiq dlq: cannot read {topic}.dlq at {bootstrap}")
    assert result.stdout == ""  # a failure is not part of the listing


def test_repeated_dead_letters_of_one_origin_are_listed_and_replayed_once(bootstrap, make_topic, redis_url):
    # A worker that dies between sending its dead letters and recording the batch in Redis
    # leaves them to its successor, which sends them again: the same origin headers, later
    # offsets of the dead-letter topic. Written here directly, as such a crash leaves them.
    from confluent_kafka import Consumer, Producer, TopicPartition

    topic = make_topic(2)
    make_topic(2, name=f"{topic}.dlq")

    def letter(n: int, origin: tuple[int, int] | None) -> tuple[bytes, list]:
        value = Job(job_class="EvilJob", queue="critical", args_json=json.dumps([n])).SerializeToString()
        headers = [("k2s.reason", b"class_not_allowed"), ("k2s.version", b"test")]
        if origin is not None:
            headers += [("k2s.topic", topic.encode()), ("k2s.partition", str(origin[0]).encode()),
                        ("k2s.offset", str(origin[1]).encode())]
        return value, headers

    # dead-letter partition 0: A B A C A N N (N: no origin headers); partition 1: D A
    a, b, c, d, n = (letter(1, (0, 5)), letter(2, (0, 6)), letter(3, (1, 5)), letter(4, (1, 9)), letter(5, None))
    layout = {0: [a, b, a, c, a, n, n], 1: [d, a]}
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    failed = []
    for partition, letters in layout.items():
        for value, headers in letters:
            producer.produce(f"{topic}.dlq", value, b"k", partition=partition, headers=headers,
                             on_delivery=lambda e, m: e and failed.append(e))
    assert producer.flush(30) == 0 and not failed, failed[:3]

    env = bridge_env(bootstrap, redis_url, topic)
    listed = lines(dlq(env, "list", "--partition", "0"))
    assert listed[-1] == f"5 dead letter(s) matched in {topic}.dlq " \
                         f"(2 repeated dead letter(s) of the same origin not shown)"
    assert [line.split()[0] for line in listed[:-1]] == [f"{topic}.dlq/0@{o}" for o in (0, 1, 3, 5, 6)]

    listed = lines(dlq(env, "list"))
    assert listed[-1] == f"6 dead letter(s) matched in {topic}.dlq " \
                         f"(3 repeated dead letter(s) of the same origin not shown)"
    shown = listed[:-1]
    for origin in ("0@5", "0@6", "1@5", "1@9"):
        assert sum(f"origin={topic}/{origin} " in line for line in shown) == 1, (origin, shown)
    assert sum("origin=?/?@?" in line for line in shown) == 2  # no origin: never merged
    # one copy of A: the first read, of partition 0 or 1 (Kafka interleaves partitions as it likes)
    assert sum(line.split()[0] in (f"{topic}.dlq/0@0", f"{topic}.dlq/1@1") for line in shown) == 1

    # --limit counts distinct letters, not the copies skipped on the way
    limited = lines(dlq(env, "list", "--partition", "0", "--limit", "3"))
    assert [line.split()[0] for line in limited[:-1]] == [f"{topic}.dlq/0@{o}" for o in (0, 1, 3)]
    assert limited[-1].startswith("3 dead letter(s) matched")

    dry = lines(dlq(env, "replay", "--dry-run"))
    assert sum(line.startswith("would replay") for line in dry) == 6

    replayed = lines(dlq(env, "replay", "--to", "topic", "--rate", "1000"))
    assert replayed[-1] == ("6 dead letter(s) matched, 6 replayed to the origin topic "
                            "(3 repeated dead letter(s) of the same origin not replayed)")

    # count what arrived in the origin topic: each origin once, the two origin-less letters both
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"count-{topic}", "enable.auto.commit": False})
    try:
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=15)[1] for p in range(2)}
        assert sum(ends.values()) == 6, ends
        consumer.assign([TopicPartition(topic, p, 0) for p in range(2)])
        arrived, deadline = [], time.monotonic() + 30
        while len(arrived) < 6 and time.monotonic() < deadline:
            for m in consumer.consume(100, 1.0):
                assert m.error() is None, m.error()
                arrived.append(json.loads(Job.FromString(m.value()).args_json)[0])
    finally:
        consumer.close()
    assert sorted(arrived) == [1, 2, 3, 4, 5, 5]
