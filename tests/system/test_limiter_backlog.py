"""The limiter with real processes: the backlog waits in Kafka while Redis is full, and
the bridge resumes on its own once Sidekiq (here: a drain loop) catches up."""

import json
import threading
import time

import redis

from helpers import Bridge, RedisServer, bridge_env, ledger_offsets, numbered_jobs, produce, unchanged, wait_for


class Sampler(threading.Thread):
    """used_memory every 100 ms."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.client = redis.Redis.from_url(url)
        self.samples: list[int] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                self.samples.append(int(self.client.info("memory")["used_memory"]))
            except redis.RedisError:
                pass
            time.sleep(0.1)


def test_backlog_waits_in_kafka_then_drains(bootstrap, make_topic, tmp_path):
    server = RedisServer(tmp_path)
    client = redis.Redis.from_url(server.url)
    base = int(client.info("memory")["used_memory"])
    high, low = base + 24 * 2**20, base + 12 * 2**20
    workers, batch = 2, 1000
    topic = make_topic(8)
    produced = numbered_jobs(2_000_000, keys=1000)
    produce(bootstrap, topic, produced)
    env = bridge_env(bootstrap, server.url, topic, workers=workers, batch_size=batch,
                     limiter_high=str(high), limiter_low=str(low), limiter_jitter_ms="200")
    sampler = Sampler(server.url)
    bridge = Bridge(env, "run")
    try:
        sampler.start()
        wait_for(lambda: "limiter: pausing consumption" in bridge.output(), 60, "the limiter to pause")
        in_redis = unchanged(lambda: client.llen("queue:default"), "a paused host's queue", 3)  # the workers paused
        ledger = sum(ledger_offsets(client, topic).values())
        assert ledger == in_redis < len(produced), "the backlog must wait in Kafka (lag > 0)"
        # what one job costs: in the queue (its list entry), and in Redis's copy of the request
        # that pushes it (the payload and its RESP framing) while the transaction is applied
        per_job = (int(client.info("memory")["used_memory"]) - base) / in_redis
        request = len(client.lindex("queue:default", 0)) + 16
        # Sidekiq catches up: drain until every job went through
        seen = []
        deadline = time.monotonic() + 300
        while len(seen) < len(produced) and time.monotonic() < deadline:
            got = client.rpop("queue:default", 5000)
            if got:
                seen += [tuple(json.loads(p)["args"]) for p in got]
            else:
                time.sleep(0.01)
        assert unchanged(lambda: client.llen("queue:default"), "the drained queue") == 0
    finally:
        sampler.done.set()
        code = bridge.stop()
        client.close()
        server.stop()
    assert code == 0, bridge.output()[-3000:]
    peak = max(sampler.samples)
    bound = high + workers * batch * (per_job + request) * 1.1  # one batch per worker, as the README says
    print(f"\npeak used_memory {peak} bytes, high watermark {high}, bound {int(bound)} "
          f"({per_job:.0f} bytes a job in Redis, {request} in a request), {len(sampler.samples)} samples, "
          f"base {base}")
    assert peak <= bound, f"used_memory peaked at {peak}, above {bound}"
    assert len(seen) == len(produced) and len(set(seen)) == len(produced), "lost or duplicated jobs"
    transitions = bridge.output().count("limiter: pausing") + bridge.output().count("limiter: resuming")
    assert 2 <= transitions <= 400, f"{transitions} transitions: flapping"


def test_redis_unreachable_pauses_then_resumes(bootstrap, make_topic, tmp_path):
    server = RedisServer(tmp_path)
    client = redis.Redis.from_url(server.url)
    topic = make_topic(8)
    produced = numbered_jobs(200_000, keys=100)
    produce(bootstrap, topic, produced[:100_000])
    bridge = Bridge(bridge_env(bootstrap, server.url, topic, workers=2, batch_size=200,
                               limiter_high="1gb", limiter_low="512mb"), "run")
    try:
        wait_for(lambda: client.llen("queue:default") == 100_000, 60, "the first half")
        server.stop()
        wait_for(lambda: "limiter: cannot poll Redis" in bridge.output(), 30, "the limiter to notice")
        produce(bootstrap, topic, produced[100_000:])
        time.sleep(3)
        server.start()
        wait_for(lambda: client.llen("queue:default") >= len(produced), 120, "everything")
        assert unchanged(lambda: client.llen("queue:default"), "the queue") == len(produced)
        jobs = [tuple(json.loads(p)["args"]) for p in client.lrange("queue:default", 0, -1)]
        assert len(set(jobs)) == len(produced)
        assert "limiter: Redis answers again" in bridge.output()
    finally:
        code = bridge.stop()
        client.close()
        server.stop()
    assert code == 0, bridge.output()[-3000:]
