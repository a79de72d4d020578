"""The limiter's decisions, with a fake Redis (the system tests use a real one)."""

import random

import redis

from kafka2sidekiq import config
from kafka2sidekiq.limiter import Limiter, Page


class FakeRedis:
    def __init__(self, used=0, maxmemory=1000):
        self.used, self.maxmemory, self.down = used, maxmemory, False

    def info(self, section):
        if self.down:
            raise redis.ConnectionError("Connection refused")
        return {"used_memory": self.used, "maxmemory": self.maxmemory}

    def config_get(self, name):
        return {"maxmemory-policy": "noeviction"}


def limiter(**env):
    settings = config.load(env={"K2S_LIMITER_JITTER_MS": "0", **{f"K2S_{k.upper()}": v for k, v in env.items()}})
    page = Page()
    lim = Limiter(settings, page)
    lim.client = FakeRedis()
    return lim, page


def step(lim, used, now):
    lim.client.used = used
    lim.poll(now)
    return lim.paused


def test_pauses_at_high_resumes_below_low_without_flapping():
    lim, page = limiter()  # 80% / 70% of maxmemory 1000
    t = iter(range(1, 1000))
    assert not step(lim, 500, next(t))
    assert step(lim, 800, next(t)) and page.paused(60)
    # hovering between the marks: stays paused, no flapping
    for used in (790, 760, 799, 720, 701, 795):
        assert step(lim, used, next(t))
    assert not step(lim, 699, next(t)) and not page.paused(60)
    for used in (705, 790, 750):  # and stays running until the high mark again
        assert not step(lim, used, next(t))
    assert lim.pauses == 1


def test_absolute_marks():
    lim, _ = limiter(limiter_high="512kb", limiter_low="256kb")
    assert step(lim, 600 * 1024, 1) and not step(lim, 255 * 1024, 2)


def test_no_maxmemory_means_fraction_marks_are_off():
    lim, _ = limiter()
    lim.client.maxmemory = 0
    assert not step(lim, 10 ** 12, 1)


def test_redis_that_cannot_be_polled_means_pause_then_resume():
    lim, page = limiter()
    lim.client.down = True
    assert step(lim, 0, 1) and page.paused(60)
    lim.client.down = False
    assert not step(lim, 0, 2)


def test_an_oom_reply_pauses_at_once():
    lim, page = limiter()
    assert not step(lim, 100, 1)
    page.report_oom()
    assert step(lim, 100, 2)  # memory looks fine, but Redis said OOM
    assert not step(lim, 100, 3)  # below low: back to running


def test_resume_waits_a_random_moment():
    # Many hosts resuming together must spread over the jitter, not come back at once.
    random.seed(7)
    delays = []
    for _ in range(40):
        lim, _ = limiter(limiter_jitter_ms="1000")
        assert step(lim, 900, 1.0)
        lim.client.used = 100
        t = 1.0
        while lim.paused and t < 6:
            t = round(t + 0.01, 2)
            lim.poll(t)
        assert not lim.paused
        delays.append(t - 1.0)
    # polls are 0.2 s apart: "under" is seen one poll after the drop, the resume comes at
    # the first poll past the random moment
    assert max(delays) <= 0.2 + 1.0 + 0.2 + 0.01  # within the jitter
    assert min(delays) < 0.45 and max(delays) > 1.0 and len({round(d, 1) for d in delays}) >= 5  # spread over it


def test_workers_wait_for_the_first_poll():
    """A worker can get its partitions before the supervisor first polls Redis (~10 ms
    apart on an idle machine): with no verdict yet, it must not push."""
    from kafka2sidekiq.limiter import Budget
    lim, page = limiter()
    assert page.paused(60) and Budget(page, stale_seconds=60).exhausted()
    step(lim, 100, now=1.0)
    assert not page.paused(60) and not Budget(page, stale_seconds=60).exhausted()


def test_a_stale_verdict_means_pause():
    page = Page()
    page.publish(False)
    assert not page.paused(60)
    assert page.paused(-1)  # older than the limit


def test_a_worker_spends_at_most_its_share_of_the_headroom_per_verdict():
    from kafka2sidekiq.limiter import Budget
    page = Page()
    page.publish(False, headroom=1000.0, workers=2)  # 500 bytes each
    budget = Budget(page, stale_seconds=60)
    assert not budget.exhausted()
    budget.spend(300)  # counts 375 with Redis overhead
    assert not budget.exhausted()
    budget.spend(300)
    assert budget.exhausted()  # over its share: wait for the next verdict
    page.publish(False, headroom=1000.0, workers=2)
    assert not budget.exhausted()  # a fresh verdict, a fresh share
    page.publish(True, headroom=1000.0, workers=2)
    assert budget.exhausted()


class FakeQueues(FakeRedis):
    """Adds the queues set and the lists the depth and latency marks read."""

    def __init__(self, lists):
        super().__init__(used=0, maxmemory=0)
        self.lists = lists  # queue name -> payloads, newest first (as LPUSH leaves them)

    def smembers(self, key):
        assert key == "queues"
        return {name.encode() for name in self.lists}

    def pipeline(self, transaction=False):
        fake, calls = self, []

        class Pipe:
            def llen(self, key):
                calls.append(len(fake.lists[key.split(":", 1)[1]]))

            def lindex(self, key, index):
                items = fake.lists[key.split(":", 1)[1]]
                calls.append(items[index] if items else None)

            def execute(self):
                return calls
        return Pipe()


def job_enqueued(seconds_ago: float, ms: bool = False) -> bytes:
    import json
    import time
    at = time.time() - seconds_ago
    return json.dumps({"class": "A", "enqueued_at": int(at * 1000) if ms else at}).encode()


def test_queue_depth_mark_with_hysteresis():
    lim, _ = limiter(limiter_max_queue="100")
    lim.client = FakeQueues({"a": [b"{}"] * 60, "b": [b"{}"] * 40})
    lim.poll(1)
    assert lim.paused and "100 jobs queued" in lim.reason
    lim.client.lists = {"a": [b"{}"] * 60, "b": [b"{}"] * 35}  # 95: above 90% of the mark
    lim.poll(2)
    assert lim.paused
    lim.client.lists = {"a": [b"{}"] * 50, "b": []}
    lim.poll(3)
    assert not lim.paused


def test_oldest_job_age_mark_reads_seconds_and_milliseconds():
    lim, _ = limiter(limiter_max_latency_seconds="30")
    lim.client = FakeQueues({"a": [job_enqueued(1), job_enqueued(45, ms=True)]})  # the oldest is last
    lim.poll(1)
    assert lim.paused and "oldest job" in lim.reason
    lim.client.lists = {"a": [job_enqueued(1), job_enqueued(5)]}
    lim.poll(2)
    assert not lim.paused
