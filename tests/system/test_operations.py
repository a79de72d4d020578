"""What an operator does to a running host, on real processes: the signals of the README's
table (TSTP, TTIN, TTOU, a second TERM, QUIT), the graceful deadline, a K2S_HTTP that
cannot bind, and K2S_MAX_WORKER_RSS. Only the bridge's own children are ever signalled."""

import signal
import socket
import time

import psutil

from helpers import (Bridge, assert_exactly_once_in_key_order, bridge_env, children, numbered_jobs, produce,
                     queue_jobs, settle, unchanged, wait_for, workers_of)


def test_quiet_resize_and_fast_stops_on_live_processes(bootstrap, make_topic, redis_url, redis_client, cleanup):
    topic = make_topic(4)
    env = bridge_env(bootstrap, redis_url, topic, workers=2)
    waves = [numbered_jobs(3000, keys=50)[i::2] for i in range(2)]  # same keys, in order across waves
    produce(bootstrap, topic, waves[0])
    bridge = Bridge(env, "run")
    cleanup(bridge)
    settle(redis_client, "queue:default", len(waves[0]), 60)
    assert len(children(bridge)) == 3  # coordinator and two workers

    bridge.proc.send_signal(signal.SIGTTIN)
    wait_for(lambda: len(children(bridge)) == 4, 30, "a third worker after TTIN")
    bridge.proc.send_signal(signal.SIGTTOU)
    wait_for(lambda: len(children(bridge)) == 3, 30, "two workers again after TTOU")

    bridge.proc.send_signal(signal.SIGTSTP)
    wait_for(lambda: "TSTP" in bridge.output(), 10, "the supervisor to log TSTP")
    def quiet() -> bool:  # each worker's process title says it has had the Quiet message
        titles = [" ".join(w.cmdline()).rstrip() for w in workers_of(bridge)]
        return bool(titles) and all(t.endswith(" quiet") for t in titles)
    wait_for(quiet, 10, "every worker's process title to say quiet")
    produce(bootstrap, topic, waves[1])
    assert unchanged(lambda: redis_client.llen("queue:default"), "the queue", 3) == len(waves[0])
    alive = children(bridge)
    assert len(alive) == 3, "quiet keeps every process"

    bridge.proc.send_signal(signal.SIGQUIT)  # fast: the workers are killed, the ledger keeps it safe
    assert bridge.proc.wait(20) == 0, bridge.output()[-3000:]
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in alive)

    # nothing was lost while quiet: the next run pushes the second wave, once
    bridge = Bridge(env, "run")
    cleanup(bridge)
    settle(redis_client, "queue:default", len(waves[0]) + len(waves[1]), 60)
    alive = children(bridge)
    bridge.proc.send_signal(signal.SIGINT)  # Ctrl-C: graceful, as TERM
    time.sleep(0.2)
    bridge.proc.send_signal(signal.SIGTERM)  # a second signal: fast
    assert bridge.proc.wait(20) == 0, bridge.output()[-3000:]
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in alive)
    assert_exactly_once_in_key_order(queue_jobs(redis_client), waves[0] + waves[1])


def test_a_worker_still_running_at_the_graceful_deadline_is_killed_and_the_run_exits_1(
        bootstrap, make_topic, redis_url, redis_client, cleanup):
    topic = make_topic(2)
    produce(bootstrap, topic, numbered_jobs(100))
    bridge = Bridge(bridge_env(bootstrap, redis_url, topic, workers=1, graceful_seconds=2), "run")
    cleanup(bridge)
    settle(redis_client, "queue:default", 100, 60)
    workers = workers_of(bridge)
    assert len(workers) == 1
    workers[0].suspend()  # SIGSTOP: it cannot finish its batch
    started = time.monotonic()
    bridge.proc.send_signal(signal.SIGTERM)
    assert bridge.proc.wait(30) == 1, bridge.output()[-3000:]
    assert 2 <= time.monotonic() - started < 15
    assert "still running at the deadline: SIGKILL" in bridge.output()
    assert "stopped (exit 1)" in bridge.output().strip().splitlines()[-1]
    assert not workers[0].is_running() or workers[0].status() == psutil.STATUS_ZOMBIE


def test_an_http_address_that_cannot_be_bound_exits_1_naming_it(bootstrap, make_topic, redis_url, cleanup):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        bridge = Bridge(bridge_env(bootstrap, redis_url, make_topic(1), http=f"127.0.0.1:{port}"), "run")
        cleanup(bridge)
        assert bridge.proc.wait(30) == 1, bridge.output()[-3000:]
    assert f"cannot serve K2S_HTTP=127.0.0.1:{port}" in bridge.output()
    assert "Traceback" not in bridge.output()


def test_workers_above_max_worker_rss_are_recycled_and_lose_nothing(bootstrap, make_topic, redis_url, redis_client,
                                                                    cleanup):
    # every worker is above 1 MiB: each is recycled after its batch, every 5 s, mid-stream
    topic = make_topic(4)
    produced = numbered_jobs(60_000, keys=200)
    waves = [produced[i:i + 6_000] for i in range(0, len(produced), 6_000)]
    bridge = Bridge(bridge_env(bootstrap, redis_url, topic, workers=2, max_worker_rss="1mb"), "run")
    cleanup(bridge)
    deadline = time.monotonic() + 60
    for wave in waves:  # ~1 wave a second over ~10 s, so recycling lands while jobs flow
        produce(bootstrap, topic, wave)
        time.sleep(1)
    settle(redis_client, "queue:default", len(produced), max(10, deadline - time.monotonic()))
    assert bridge.stop() == 0, bridge.output()[-3000:]
    assert bridge.output().count("recycling it") >= 2, bridge.output()[-3000:]
    assert_exactly_once_in_key_order(queue_jobs(redis_client), produced)
