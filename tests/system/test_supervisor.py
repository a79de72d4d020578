"""The supervisor as a whole process tree against real Kafka and Redis: crashes,
hangs, shutdowns and a second host, each bounded in time."""

import os
import random
import re
import signal
import threading
import time

import psutil
import pytest
from confluent_kafka import Consumer, TopicPartition

from conftest import SEED
from helpers import (Bridge, assert_exactly_once_in_key_order, bridge_env, children, ledger_offsets, numbered_jobs,
                     produce, queue_jobs, settle, wait_for, workers_of)


def committed_total(bootstrap: str, group: str, topic: str, partitions: int = 8) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=20)
        return sum(max(tp.offset, 0) for tp in tps)
    finally:
        consumer.close()


def test_random_worker_sigkills_every_two_seconds(bootstrap, make_topic, redis_url, redis_client, cleanup):
    # The jobs arrive in ten waves over ~14 s while the bridge runs, so the kills land
    # mid-stream however fast the machine drains a backlog.
    topic = make_topic(8)
    produced = numbered_jobs(1_000_000, keys=1000)
    waves = [produced[i:i + 100_000] for i in range(0, len(produced), 100_000)]
    produce(bootstrap, topic, waves[0])
    failures = []

    def produce_rest():
        try:
            for wave in waves[1:]:
                time.sleep(1.5)
                produce(bootstrap, topic, wave)
        except BaseException as exc:  # surfaced by the assertion below
            failures.append(exc)

    bridge = Bridge(bridge_env(bootstrap, redis_url, topic, workers=2, batch_size=500), "run")
    cleanup(bridge)
    producer = threading.Thread(target=produce_rest, daemon=True)
    producer.start()
    rnd = random.Random(SEED)
    kills = 0
    deadline = time.monotonic() + 300
    while (producer.is_alive() or redis_client.llen("queue:default") < len(produced)) and time.monotonic() < deadline:
        time.sleep(2)
        pids = [p.pid for p in workers_of(bridge)]
        if pids and (producer.is_alive() or redis_client.llen("queue:default") < len(produced)):
            os.kill(rnd.choice(pids), signal.SIGKILL)
            kills += 1
    producer.join(60)
    assert not failures, failures
    settle(redis_client, "queue:default", len(produced), 60)
    assert bridge.stop() == 0, bridge.output()[-3000:]
    assert kills >= 5, f"only {kills} kills landed while the jobs were arriving"
    out = bridge.output()
    assert out.count("died: signal SIGKILL") >= kills - 1
    # the kills changed only the local plan: the group never rebalanced
    assert out.count("coordinator[") and out.count("] assigned") == 1, out[-3000:]
    assert "revoked" not in out.split("supervisor: SIGTERM")[0]
    assert_exactly_once_in_key_order(queue_jobs(redis_client), produced)


def test_coordinator_sigkill_is_respawned(bootstrap, make_topic, redis_url, redis_client, cleanup):
    topic = make_topic(8)
    produced = numbered_jobs(200_000, keys=100)
    produce(bootstrap, topic, produced)
    bridge = Bridge(bridge_env(bootstrap, redis_url, topic, workers=2, batch_size=200), "run")
    cleanup(bridge)
    wait_for(lambda: redis_client.llen("queue:default") > 20_000, 60, "progress")
    coordinator = int(re.search(r"started coordinator \(pid (\d+)\)", bridge.output()).group(1))
    os.kill(coordinator, signal.SIGKILL)
    settle(redis_client, "queue:default", len(produced), 120)
    wait_for(lambda: bridge.output().count("started coordinator") == 2, 30, "a new coordinator")
    assert bridge.stop() == 0, bridge.output()[-3000:]
    assert_exactly_once_in_key_order(queue_jobs(redis_client), produced)


def test_sigterm_under_load_then_restart(bootstrap, make_topic, redis_url, redis_client, cleanup):
    topic = make_topic(8)
    produced = numbered_jobs(300_000, keys=100)
    produce(bootstrap, topic, produced)
    env = bridge_env(bootstrap, redis_url, topic, workers=2, batch_size=200, graceful_seconds=20)
    bridge = Bridge(env, "run")
    cleanup(bridge)
    wait_for(lambda: redis_client.llen("queue:default") > 50_000, 60, "progress")
    started = time.monotonic()
    assert bridge.stop(timeout=30) == 0, bridge.output()[-3000:]
    assert time.monotonic() - started < 20
    in_redis = redis_client.llen("queue:default")
    assert in_redis < len(produced), "finished before the SIGTERM: grow the test"
    ledger = sum(ledger_offsets(redis_client, topic).values())
    assert ledger == in_redis == committed_total(bootstrap, f"g-{topic}", topic)
    restarted = Bridge(env, "run")
    cleanup(restarted)
    settle(redis_client, "queue:default", len(produced), 120)
    assert restarted.stop() == 0
    assert_exactly_once_in_key_order(queue_jobs(redis_client), produced)


def test_hung_worker_is_replaced(bootstrap, make_topic, redis_url, redis_client, cleanup):
    topic = make_topic(8)
    produced = numbered_jobs(100_000, keys=100)
    produce(bootstrap, topic, produced[:50_000])
    bridge = Bridge(bridge_env(bootstrap, redis_url, topic, workers=2, liveness_seconds=3), "run")
    cleanup(bridge)
    settle(redis_client, "queue:default", 50_000, 60)
    hung = workers_of(bridge)[0].pid
    os.kill(hung, signal.SIGSTOP)
    wait_for(lambda: "made no progress for" in bridge.output(), 30, "the hang to be seen")
    wait_for(lambda: not psutil.pid_exists(hung) or psutil.Process(hung).status() == psutil.STATUS_ZOMBIE,
             10, "the hung worker to be killed")
    produce(bootstrap, topic, produced[50_000:])
    settle(redis_client, "queue:default", len(produced), 60)
    assert bridge.stop() == 0, bridge.output()[-3000:]
    assert_exactly_once_in_key_order(queue_jobs(redis_client), produced)


def booting_workers(bridge: Bridge) -> list[int]:
    """Live worker children of this bridge (never another process that reused a pid)."""
    coordinators = set(re.findall(r"started coordinator \(pid (\d+)\)", bridge.output()))
    return [c.pid for c in children(bridge) if str(c.pid) not in coordinators]


@pytest.mark.parametrize("away", ["kafka", "redis"])
def test_services_away_at_boot_and_outside_kills_never_end_the_run(away, bootstrap, make_topic, redis_url, cleanup):
    """The crash budget is for a child that cannot boot. Kafka or Redis unreachable, and
    SIGKILLs from outside to workers still booting, are causes outside the bridge: it
    keeps trying (with back-off) however many times that exceeds the budget."""
    topic = make_topic(1)
    env = bridge_env("127.0.0.1:1" if away == "kafka" else bootstrap,
                     "redis://127.0.0.1:1/0" if away == "redis" else redis_url,
                     topic, workers=2, boot_seconds=2, crash_budget=2)
    bridge = Bridge(env, "run")
    cleanup(bridge)
    kills, deadline = 0, time.monotonic() + 25
    while time.monotonic() < deadline and bridge.proc.poll() is None:
        time.sleep(1)
        pids = booting_workers(bridge)
        if pids and kills < 4:
            os.kill(pids[0], signal.SIGKILL)
            kills += 1
    out = bridge.output()
    assert bridge.proc.poll() is None, f"the supervisor gave up (exit {bridge.proc.returncode}):\n{out[-3000:]}"
    unreachable = out.count("exit 75")
    assert kills >= 2 and unreachable >= 2, (kills, unreachable, out[-3000:])  # both beyond the budget of 2
    assert f"cannot {'read topic' if away == 'kafka' else 'reach Redis'}" in out
    assert "giving up" not in out
    assert bridge.stop(timeout=30) == 0, out[-3000:]
    wait_for(lambda: not children(bridge), 10, "no child left")


def test_a_child_that_cannot_boot_ends_the_run_with_exit_3_and_the_reason(bootstrap, redis_url, cleanup):
    """No such topic: nothing outside will fix it; the supervisor backs off, then exits 3
    once the budget is spent, its last line naming the cause."""
    topic = f"no-such-topic-{time.time_ns()}"
    bridge = Bridge(bridge_env(bootstrap, redis_url, topic, workers=1, boot_seconds=1, crash_budget=3), "run")
    cleanup(bridge)
    started = time.monotonic()
    bridge.proc.wait(60)
    out = bridge.output()
    assert bridge.proc.returncode == 3, out[-3000:]
    assert "restarting in 0.5s" in out and "restarting in 1.0s" in out  # it backed off
    last = out.strip().splitlines()[-1]
    assert "stopped (exit 3)" in last and "failed at boot 3 times in a row" in last, last
    assert f"cannot read topic '{topic}'" in last, last
    assert time.monotonic() - started < 60
    wait_for(lambda: not children(bridge), 10, "no child left")


def test_two_hosts_split_then_one_takes_over(bootstrap, make_topic, redis_url, redis_client, cleanup):
    topic = make_topic(8)
    produced = numbered_jobs(300_000, keys=100)
    host = dict(workers=1, batch_size=200, session_timeout_ms=6000)
    a = Bridge(bridge_env(bootstrap, redis_url, topic, instance_id="host-a", **host), "run")
    cleanup(a)
    wait_for(lambda: "] assigned" in a.output(), 30, "host a to join")
    b = Bridge(bridge_env(bootstrap, redis_url, topic, instance_id="host-b", **host), "run")
    cleanup(b)
    wait_for(lambda: "] assigned" in b.output(), 60, "host b to join")
    produce(bootstrap, topic, produced)
    wait_for(lambda: redis_client.llen("queue:default") > 30_000, 60, "progress")
    assert "reading" in a.output() and "reading" in b.output()
    a_children = children(a)
    a.kill()  # the supervisor dies; its children notice and leave
    wait_for(lambda: not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in a_children),
             30, "host a's children to exit")
    settle(redis_client, "queue:default", len(produced), 180)
    assert b.stop() == 0, b.output()[-3000:]
    assert_exactly_once_in_key_order(queue_jobs(redis_client), produced)


def test_partitions_added_to_the_topic_are_picked_up(bootstrap, make_topic, redis_url, redis_client, cleanup):
    from confluent_kafka.admin import AdminClient, NewPartitions

    topic = make_topic(4)
    bridge = Bridge(bridge_env(bootstrap, redis_url, topic, workers=2), "run")
    cleanup(bridge)
    wait_for(lambda: "assigned [0, 1, 2, 3]" in bridge.output(), 30, "the coordinator to join")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_partitions([NewPartitions(topic, 8)])[topic].result(30)
    wait_for(lambda: "assigned [4, 5, 6, 7]" in bridge.output(), 60, "the new partitions")
    produced = numbered_jobs(20_000, keys=200)
    produce(bootstrap, topic, produced)
    settle(redis_client, "queue:default", len(produced), 60)
    assert bridge.stop() == 0, bridge.output()[-3000:]
    ledger = ledger_offsets(redis_client, topic)
    assert set(ledger) == set(range(8)), "jobs of the new partitions were not read"
    assert_exactly_once_in_key_order(queue_jobs(redis_client), produced)


def test_a_lone_worker_that_cannot_reach_redis_exits_75_with_the_reason(bootstrap, make_topic, cleanup):
    # alone, nobody starts it again: it says why and leaves, EX_TEMPFAIL (the cause may pass)
    topic = make_topic(1)
    bridge = Bridge(bridge_env(bootstrap, "redis://127.0.0.1:1/0", topic, boot_seconds=1), "worker", "--partitions", "0")
    cleanup(bridge)
    assert bridge.proc.wait(30) == 75, bridge.output()[-3000:]
    out = bridge.output()
    assert out.strip().splitlines()[-1].startswith("kafka2sidekiq worker: cannot reach Redis at redis://127.0.0.1:1/0: ")
    assert "Traceback" not in out
