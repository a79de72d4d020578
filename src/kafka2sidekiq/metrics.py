"""Host-wide metrics and the health endpoints.

Each worker keeps plain cumulative counters (``WorkerStats``) and sends a snapshot to the
supervisor about once a second over the channel it already has. The supervisor adds up
the snapshots of its live workers and of the ones that have exited, and exposes the sum
with prometheus_client's text format on ``K2S_HTTP`` (``/metrics``), next to
``/healthz`` and ``/readyz``.

Why not prometheus_client's multiprocess mode: it wants a directory of per-pid mmap
files, set in the environment before the library is imported, cleaned up by hand when a
pid exits, and gauges that cannot be summed. The workers already report to the
supervisor once per batch, so their counters travel the same way, and the library does
what it is good at: the exposition format.

The HTTP server is the standard library's, driven from the supervisor's select loop
(one request per readiness, a 1-second socket timeout): the supervisor starts no thread.
"""

from __future__ import annotations

import bisect
import http.server
import time
from collections import Counter, deque
from typing import Callable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

from .encoder_types import REASONS

BATCH_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
PUSH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
SNAPSHOT_SECONDS = 1.0
DRAIN_WINDOW_SECONDS = 60.0
# The queue label: without K2S_QUEUE_ALLOW producers choose the queues, so the series they
# can create are bounded. The first MAX_QUEUE_LABELS queues seen keep a label of their own;
# jobs of any other are counted under OTHER_QUEUES (a space: no queue can be named so).
MAX_QUEUE_LABELS = 100
OTHER_QUEUES = "(other queues)"


class WorkerStats:
    """A worker's counters since it started; plain ints, updated once per batch."""

    def __init__(self) -> None:
        self.pushed: Counter[str] = Counter()    # queue -> jobs pushed to run now (MAX_QUEUE_LABELS at most)
        self.scheduled = 0                       # jobs pushed to the schedule set
        self.consumed = 0                        # messages read from Kafka
        self.redis_retries = 0                   # Redis calls failed and tried again
        self.rejected: Counter[str] = Counter()  # reason -> messages sent to the DLQ
        self.batch_buckets = [0] * (len(BATCH_BUCKETS) + 1)
        self.batch_sum = 0
        self.push_buckets = [0] * (len(PUSH_BUCKETS) + 1)
        self.push_sum = 0.0
        self.position: dict[int, int] = {}       # partition -> next offset; all before it is in Redis
        self.ledger_conflicts = 0                # transactions aborted: a watched ledger key moved
        self.performed_expired = 0               # performed mode: jobs counted finished at the hold bound

    def batch(self, batch, push_seconds: float) -> None:
        """Count one batch that Redis has applied."""
        size = len(batch.scheduled) + len(batch.rejects)
        pushed = self.pushed
        for queue, payloads in batch.queues.items():
            if queue not in pushed and len(pushed) >= MAX_QUEUE_LABELS:
                queue = OTHER_QUEUES
            pushed[queue] += len(payloads)
            size += len(payloads)
        self.scheduled += len(batch.scheduled)
        for _, reason in batch.rejects:
            self.rejected[reason] += 1
        self.batch_buckets[bisect.bisect_left(BATCH_BUCKETS, size)] += 1
        self.batch_sum += size
        self.push_buckets[bisect.bisect_left(PUSH_BUCKETS, push_seconds)] += 1
        self.push_sum += push_seconds

    def snapshot(self) -> dict:
        return {"pushed": dict(self.pushed), "scheduled": self.scheduled, "rejected": dict(self.rejected),
                "consumed": self.consumed, "redis_retries": self.redis_retries,
                "batch_buckets": self.batch_buckets, "batch_sum": self.batch_sum,
                "push_buckets": self.push_buckets, "push_sum": self.push_sum,
                "ledger_conflicts": self.ledger_conflicts, "performed_expired": self.performed_expired,
                "position": {str(p): n for p, n in self.position.items()}}


def _add(total: dict, snap: dict) -> None:
    for key, value in snap.items():
        if key == "position":  # a state, not a count
            continue
        if isinstance(value, dict):
            bucket = total.setdefault(key, {})
            for name, n in value.items():
                bucket[name] = bucket.get(name, 0) + n
        elif isinstance(value, list):
            total[key] = [a + b for a, b in zip(total.get(key, [0] * len(value)), value)]
        else:
            total[key] = total.get(key, 0) + value


def _histogram(name: str, help: str, bounds: tuple, counts: list, total: float) -> HistogramMetricFamily:
    cumulative, running = [], 0
    for bound, n in zip((*map(floatToGoString, bounds), "+Inf"), counts):
        running += n
        cumulative.append((bound, running))
    return HistogramMetricFamily(name, help, buckets=cumulative, sum_value=total)


def partition_lag(owned: set[int], high: dict[int, int], in_redis: dict[int, int]) -> dict[int, int]:
    """Messages per owned partition that the broker has and this host's Redis has not:
    the end offset minus the next offset Redis (or the group's commit) has. Partitions
    whose end offset is not known yet are left out."""
    return {p: max(0, high[p] - in_redis.get(p, 0)) for p in sorted(owned) if p in high}


def build_info(choice: str = "auto") -> dict[str, str]:
    """Labels of k2s_build_info: what runs (the workers' encoder for K2S_ENCODER=``choice``)."""
    import platform

    from . import __version__, encoder

    try:
        module = "python" if encoder.select(choice) is encoder._encoder_py else "compiled"
    except encoder.EncoderUnavailable:
        module = "unavailable"
    return {"version": __version__, "python": platform.python_version(), "encoder": module}


class HostMetrics:
    """The supervisor's sum of its workers' counters, plus what the supervisor itself
    knows (restarts, the limiter, the lag, process sizes). A prometheus_client collector."""

    def __init__(self, limiter, processes: Callable[[], list[tuple[str, str, object]]],
                 owned: Callable[[], set[int]] = set, lag: Callable[[], dict[int, int]] = dict,
                 quiet: Callable[[], bool] = lambda: False, encoder: str = "auto") -> None:
        self.limiter = limiter
        self.processes = processes                 # () -> [(role, slot, psutil.Process)]
        self.owned = owned                         # () -> the partitions Kafka gave this host
        self.lag = lag                             # () -> partition -> messages not yet in Redis
        self.quiet = quiet                         # () -> TSTP received
        self.info = build_info(encoder)
        self.queues: set[str] = set()              # the queues with a label of their own
        self.live: dict[int, dict] = {}            # slot -> latest snapshot of its worker
        self.retired: dict = {}                    # the sum of exited workers' last snapshots
        self.restarts: Counter[int] = Counter()
        self.progress: deque[tuple[float, int]] = deque()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def update(self, slot: int, snapshot: dict) -> None:
        self.live[slot] = snapshot

    def exited(self, slot: int, restarted: bool) -> None:
        """A worker left: its counters become history (the next one starts at zero)."""
        _add(self.retired, self.live.pop(slot, {}))
        if restarted:
            self.restarts[slot] += 1

    def total(self) -> dict:
        total: dict = {}
        _add(total, self.retired)
        for snap in self.live.values():
            _add(total, snap)
        return total

    def pushed(self, total: dict) -> dict[str, int]:
        """Jobs per queue label: the first MAX_QUEUE_LABELS queues of the host keep theirs
        for good (a series never moves), the rest add up under OTHER_QUEUES."""
        out: Counter[str] = Counter()
        for queue, n in total.get("pushed", {}).items():
            if queue not in self.queues and queue != OTHER_QUEUES and len(self.queues) < MAX_QUEUE_LABELS:
                self.queues.add(queue)
            out[queue if queue in self.queues else OTHER_QUEUES] += n
        return out

    def tick(self, now: float | None = None) -> None:
        """Sample the messages done (pushed or rejected) for the drain rate."""
        now = time.monotonic() if now is None else now
        if self.progress and now - self.progress[-1][0] < SNAPSHOT_SECONDS:
            return
        total = self.total()
        done = (sum(total.get("pushed", {}).values()) + total.get("scheduled", 0)
                + sum(total.get("rejected", {}).values()))
        self.progress.append((now, done))
        while now - self.progress[0][0] > DRAIN_WINDOW_SECONDS:
            self.progress.popleft()

    def time_to_drain(self, lags: dict[int, int] | None = None) -> float:
        """Seconds until the lag is in Redis at the rate of the last minute (inf: no progress)."""
        lag = sum((self.lag() if lags is None else lags).values())
        if not lag:
            return 0.0
        if len(self.progress) < 2:
            return float("inf")
        (t0, d0), (t1, d1) = self.progress[0], self.progress[-1]
        rate = (d1 - d0) / (t1 - t0) if t1 > t0 else 0.0
        return lag / rate if rate > 0 else float("inf")

    # --- prometheus_client collector ---------------------------------------------------------

    def collect(self):
        total = self.total()
        yield self._build_info()
        yield CounterMetricFamily("k2s_messages_consumed", "Messages read from Kafka by the workers",
                                  value=total.get("consumed", 0))
        pushed = CounterMetricFamily("k2s_jobs_pushed", "Jobs pushed to a Sidekiq queue", labels=["queue"])
        for queue, n in sorted(self.pushed(total).items()):
            pushed.add_metric([queue], n)
        yield pushed
        yield CounterMetricFamily("k2s_jobs_scheduled", "Jobs pushed to the schedule set (a future at)",
                                  value=total.get("scheduled", 0))
        rejected = CounterMetricFamily("k2s_messages_rejected", "Messages sent to the dead-letter topic",
                                       labels=["reason"])
        seen = total.get("rejected", {})
        for reason in REASONS:
            rejected.add_metric([reason], seen.get(reason, 0))
        yield rejected
        yield _histogram("k2s_batch_size_messages", "Messages per batch applied to Redis", BATCH_BUCKETS,
                         total.get("batch_buckets", [0] * (len(BATCH_BUCKETS) + 1)), total.get("batch_sum", 0))
        yield _histogram("k2s_redis_push_seconds", "One batch's Redis transaction, sent to answer read",
                         PUSH_BUCKETS, total.get("push_buckets", [0] * (len(PUSH_BUCKETS) + 1)),
                         total.get("push_sum", 0.0))
        yield CounterMetricFamily("k2s_redis_retries", "Redis calls of the workers that failed and were tried again",
                                  value=total.get("redis_retries", 0))
        yield CounterMetricFamily("k2s_ledger_conflicts",
                                  "Redis transactions of this host aborted because another writer moved "
                                  "a ledger key they watched", value=total.get("ledger_conflicts", 0))
        yield CounterMetricFamily("k2s_performed_expired",
                                  "K2S_COMMIT_ON=performed: jobs Sidekiq did not acknowledge within "
                                  "K2S_PERFORMED_HOLD_SECONDS, counted finished", value=total.get("performed_expired", 0))
        owned = sorted(self.owned())
        yield GaugeMetricFamily("k2s_partitions_owned", "Partitions of the topic Kafka gave this host",
                                value=len(owned))
        each = GaugeMetricFamily("k2s_partition_owned", "1 for each partition this host owns (its keys' home)",
                                 labels=["partition"])
        for partition in owned:
            each.add_metric([str(partition)], 1)
        yield each
        lag = GaugeMetricFamily("k2s_consumer_lag_messages",
                                "Messages in a partition that the broker has and this host's Redis has not",
                                labels=["partition"])
        lags = self.lag()
        for partition, n in sorted(lags.items()):
            lag.add_metric([str(partition)], n)
        yield lag
        yield GaugeMetricFamily("k2s_time_to_drain_seconds",
                                "The host's lag divided by its rate of the last minute",
                                value=self.time_to_drain(lags))
        yield GaugeMetricFamily("k2s_quiet", "1 once the host is quiet (TSTP): workers fetch nothing",
                                value=1 if self.quiet() else 0)
        yield GaugeMetricFamily("k2s_limiter_paused", "1 while the limiter holds consumption",
                                value=1 if self.limiter.paused else 0)
        yield CounterMetricFamily("k2s_limiter_pauses", "Times the limiter paused consumption",
                                  value=self.limiter.pauses)
        yield GaugeMetricFamily("k2s_redis_used_memory_bytes", "Redis used_memory at the last poll",
                                value=self.limiter.used_memory)
        restarts = CounterMetricFamily("k2s_worker_restarts", "Workers restarted after they died",
                                       labels=["slot"])
        for slot, n in sorted(self.restarts.items()):
            restarts.add_metric([str(slot)], n)
        yield restarts
        rss = GaugeMetricFamily("k2s_process_resident_memory_bytes", "RSS of each process of the host",
                                labels=["role", "slot"])
        cpu = CounterMetricFamily("k2s_process_cpu_seconds", "CPU time of each process since it started",
                                  labels=["role", "slot"])
        for role, slot, proc in self.processes():
            try:
                times = proc.cpu_times()
                rss.add_metric([role, slot], proc.memory_info().rss)
                cpu.add_metric([role, slot], times.user + times.system)
            except Exception:  # noqa: BLE001 - a process that just exited is left out
                continue
        yield rss
        yield cpu

    def _build_info(self) -> GaugeMetricFamily:
        info = GaugeMetricFamily("k2s_build_info", "What runs: version, Python, envelope encoder",
                                 labels=list(self.info))
        info.add_metric(list(self.info.values()), 1)
        return info

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class Server:
    """``/metrics``, ``/healthz`` and ``/readyz`` on ``address``; ``handle()`` serves one
    request and is called by the supervisor's loop when ``fileno()`` is readable."""

    def __init__(self, address: tuple[str, int], routes: dict[str, Callable[[], tuple[int, str, bytes]]]) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            timeout = 1.0  # a slow client holds the supervisor's loop for at most this

            def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
                route = routes.get(self.path.split("?", 1)[0])
                status, kind, body = route() if route else (404, "text/plain", b"not found\n")
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:  # probes every few seconds: not worth a line
                pass

        self.http = http.server.HTTPServer(address, Handler)
        self.http.timeout = 0

    def fileno(self) -> int:
        return self.http.fileno()

    def handle(self) -> None:
        self.http.handle_request()

    def close(self) -> None:
        self.http.server_close()
