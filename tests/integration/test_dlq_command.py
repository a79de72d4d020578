"""``kafka2sidekiq dlq``: list and replay dead letters that the bridge itself wrote."""

import json
import subprocess
import sys
import time

from helpers import REPO, Bridge, bridge_env, numbered_jobs, produce, queue_jobs, settle, wait_for

from kafka2sidekiq._proto.job_pb2 import Job


def dlq(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kafka2sidekiq", "dlq", *args], env=env, capture_output=True,
                          text=True, timeout=120, cwd=REPO)


def lines(result: subprocess.CompletedProcess) -> list[str]:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.splitlines()


def test_list_filter_quarantine_and_replay_after_fixing_the_allow_list(bootstrap, make_topic, redis_url,
                                                                       redis_client):
    topic = make_topic(4)
    make_topic(2, name=f"{topic}.dlq")
    good = numbered_jobs(300, keys=10)
    evil = [(f"e{i}".encode(), Job(job_class="EvilJob", queue="critical", args_json=json.dumps([i]))
             .SerializeToString()) for i in range(30)]
    garbage = [(b"g", b"\xff\xfe not protobuf")] * 5
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

    dry = lines(dlq(env, "replay", "--class", "EvilJob", "--to", "queue:quarantine", "--dry-run"))
    assert sum(line.startswith("would replay") for line in dry) == 30
    assert redis_client.llen("queue:quarantine") == 0

    started = time.monotonic()
    moved = lines(dlq(env, "replay", "--class", "EvilJob", "--to", "queue:quarantine", "--rate", "40"))
    assert time.monotonic() - started >= 29 / 40  # the rate limit held
    assert moved[-1] == "30 dead letter(s) matched, 30 replayed to Redis queue 'quarantine'"
    quarantined = queue_jobs(redis_client, "quarantine")
    assert sorted(j["args"][0] for j in quarantined) == list(range(30))
    assert {j["class"] for j in quarantined} == {"EvilJob"} and {j["queue"] for j in quarantined} == {"quarantine"}
    assert redis_client.llen("queue:critical") == 0

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
    assert f"cannot read {topic}.dlq at {bootstrap}" in result.stdout
