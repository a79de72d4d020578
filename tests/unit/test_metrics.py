"""The host's metrics: workers' snapshots summed, history kept across restarts, the
drain estimate, and the exposition the scrape returns."""

from types import SimpleNamespace

from prometheus_client.parser import text_string_to_metric_families

from kafka2sidekiq.encoder_types import REASONS
from kafka2sidekiq.metrics import MAX_QUEUE_LABELS, OTHER_QUEUES, HostMetrics, WorkerStats, partition_lag


def batch(queues: dict[str, int], scheduled: int = 0, rejects: tuple[str, ...] = ()):
    return SimpleNamespace(queues={q: [b"{}"] * n for q, n in queues.items()},
                           scheduled=[(b"1", b"{}")] * scheduled,
                           rejects=[(i, r) for i, r in enumerate(rejects)])


def scrape(metrics: HostMetrics) -> dict:
    text = metrics.exposition().decode()
    return {(s.name, *sorted(s.labels.items())): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def host() -> HostMetrics:
    return HostMetrics(SimpleNamespace(paused=True, pauses=3, used_memory=1234), lambda: [])


def test_snapshots_add_up_and_survive_a_restart():
    a, b = WorkerStats(), WorkerStats()
    a.batch(batch({"default": 10, "mailers": 2}, scheduled=1, rejects=("bad_args",)), 0.003)
    b.batch(batch({"default": 5}), 0.2)
    a.consumed, b.consumed, a.redis_retries = 15, 5, 4
    m = host()
    m.update(0, a.snapshot())
    m.update(1, b.snapshot())
    m.exited(1, restarted=True)  # worker 1 died; its replacement starts from zero
    fresh = WorkerStats()
    fresh.batch(batch({"default": 1}), 0.001)
    m.update(1, fresh.snapshot())
    s = scrape(m)
    assert s[("k2s_jobs_pushed_total", ("queue", "default"))] == 16
    assert s[("k2s_jobs_pushed_total", ("queue", "mailers"))] == 2
    assert s[("k2s_jobs_scheduled_total",)] == 1
    assert s[("k2s_messages_rejected_total", ("reason", "bad_args"))] == 1
    assert all(("k2s_messages_rejected_total", ("reason", r)) in s for r in REASONS)
    assert s[("k2s_batch_size_messages_count",)] == 3 and s[("k2s_batch_size_messages_sum",)] == 14 + 5 + 1
    assert s[("k2s_batch_size_messages_bucket", ("le", "10.0"))] == 2  # the batches of 5 and 1
    assert s[("k2s_batch_size_messages_bucket", ("le", "50.0"))] == 3
    assert s[("k2s_redis_push_seconds_bucket", ("le", "0.005"))] == 2
    assert s[("k2s_redis_push_seconds_bucket", ("le", "+Inf"))] == 3
    assert s[("k2s_worker_restarts_total", ("slot", "1"))] == 1
    assert s[("k2s_limiter_paused",)] == 1 and s[("k2s_limiter_pauses_total",)] == 3
    assert s[("k2s_messages_consumed_total",)] == 15 + 5 and s[("k2s_redis_retries_total",)] == 4
    assert s[("k2s_quiet",)] == 0
    info = next(k for k in s if k[0] == "k2s_build_info")
    assert dict(info[1:])["version"] and dict(info[1:])["encoder"] in ("compiled", "python")


def test_lag_is_the_end_offset_minus_what_redis_has():
    assert partition_lag({0, 1, 2}, {0: 10, 1: 6, 5: 9}, {0: 4, 1: 9}) == {0: 6, 1: 0}  # 2: end unknown
    assert partition_lag({3}, {3: 6}, {}) == {3: 6}  # nothing in Redis, nothing committed


def test_queue_labels_are_bounded():
    w = WorkerStats()
    w.batch(batch({f"q{i}": 1 for i in range(MAX_QUEUE_LABELS + 30)}), 0.001)
    assert len(w.pushed) == MAX_QUEUE_LABELS + 1 and w.pushed[OTHER_QUEUES] == 30
    m = host()
    m.update(0, w.snapshot())
    other = WorkerStats()  # another worker, other queues: the host's labels are bounded too
    other.batch(batch({"late": 7}), 0.001)
    m.update(1, other.snapshot())
    pushed = {k[1][1]: v for k, v in scrape(m).items() if k[0] == "k2s_jobs_pushed_total"}
    assert len(pushed) == MAX_QUEUE_LABELS + 1 and sum(pushed.values()) == MAX_QUEUE_LABELS + 30 + 7
    assert pushed[OTHER_QUEUES] == 30 + 7 or pushed.get("late") == 7


def test_time_to_drain_from_the_rate_of_the_last_minute():
    lags = {0: 0}
    m, w = HostMetrics(SimpleNamespace(paused=False, pauses=0, used_memory=0), lambda: [], lag=lambda: lags), WorkerStats()
    m.update(0, w.snapshot())
    m.tick(100.0)
    assert m.time_to_drain() == 0.0  # no lag
    lags[0] = 500
    m.update(0, w.snapshot())
    m.tick(101.0)
    assert m.time_to_drain() == float("inf")  # lag and no progress
    w.batch(batch({"default": 100}), 0.001)
    m.update(0, w.snapshot())
    m.tick(111.0)  # 100 done in 11 s
    assert abs(m.time_to_drain() - 500 / (100 / 11)) < 1e-9


def test_ledger_conflicts_are_summed_across_workers_and_restarts():
    a, b = WorkerStats(), WorkerStats()
    a.ledger_conflicts, b.ledger_conflicts = 2, 5
    m = host()
    assert scrape(m)[("k2s_ledger_conflicts_total",)] == 0  # exposed before any worker reports
    m.update(0, a.snapshot())
    m.update(1, b.snapshot())
    m.exited(1, restarted=True)  # its 5 stay in the host's total
    fresh = WorkerStats()
    fresh.ledger_conflicts = 1
    m.update(1, fresh.snapshot())
    text = m.exposition().decode()
    assert "# TYPE k2s_ledger_conflicts_total counter" in text
    assert "another writer moved a ledger key they watched" in text
    assert scrape(m)[("k2s_ledger_conflicts_total",)] == 2 + 5 + 1


def test_the_partitions_this_host_owns():
    owned = {7, 2}
    m = HostMetrics(SimpleNamespace(paused=False, pauses=0, used_memory=0), lambda: [], lambda: owned)
    s = scrape(m)
    assert s[("k2s_partitions_owned",)] == 2
    assert {k[1][1] for k in s if k[0] == "k2s_partition_owned"} == {"2", "7"}
    owned.clear()
    s = scrape(m)
    assert s[("k2s_partitions_owned",)] == 0 and not any(k[0] == "k2s_partition_owned" for k in s)
