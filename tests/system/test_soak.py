"""The soak: the whole bridge (supervisor, coordinator, 2 workers) against the real Kafka
and Redis for ``--soak-minutes`` (default 2, what CI runs; longer by hand), under
sustained load, then under sustained load with a worker SIGKILLed every 2-5 s.

    .venv/bin/python -m pytest tests/system/test_soak.py --soak-minutes 30 -s

What it holds the bridge to, at the end:
- exactly once, in key order: every produced job reached Redis once, each key's jobs in
  produce order;
- no healthy process killed: the supervisor's liveness check ("made no progress for")
  never fired, though every process was making progress;
- no aborted transaction between workers of disjoint partitions: k2s_ledger_conflicts_total
  is 0 on /metrics, and no "transactions in a row aborted" line.

Volume: the jobs come from producer processes of the test's own (a Python producer does
about 100k jobs/s here, one thread), in waves, at most BACKLOG jobs ahead of what reached
Redis, so the bridge always has a backlog to work on and the run is bounded in Kafka and
Redis whatever its length. The test works the queue as Sidekiq would (RPOP from the
right, as BRPOP does) and checks the jobs as they come: per key, each sequence number
exactly once and in order, which is what ``assert_exactly_once_in_key_order`` checks,
without holding tens of millions of jobs in memory or in Redis.

Every loop is bounded in time and count; on any failure the producers, the bridge and its
children are killed by PID. The test runs in a Redis database of its own (SOAK_DB) of the
harness's test Redis, so that other tests' FLUSHDB of database 0 cannot touch its ledger.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import selectors
import signal
import subprocess
import sys
import time
import urllib.request

import msgspec
import psutil
import pytest

from conftest import SEED
from helpers import REPO, Bridge, bridge_env, free_port, wait_for

from kafka2sidekiq._proto.job_pb2 import Job

pytestmark = [pytest.mark.soak,
              pytest.mark.timeout(0)]  # its length is --soak-minutes: the watchdog below bounds it instead

SOAK_DB = 7
PARTITIONS = 8
KEYS = 1000
PRODUCERS = 2                 # producer processes; keys split between them (k % PRODUCERS)
WAVE_SEQS = 100               # a wave: this many jobs of each of a producer's keys (50,000 jobs)
WAVES_AHEAD = 2               # waves a producer may have in hand
BACKLOG = 1_000_000           # most jobs produced and not yet seen in Redis
MAX_JOBS_PER_SECOND = 2_000_000  # count bound: far above what this machine can do
KILL_EVERY = (2.0, 5.0)       # seconds between worker kills in phase 2
MIN_WORKER_AGE = 1.0          # only kill a worker that has had time to boot
POP = 10_000                  # jobs per RPOP
TURN = 5 * POP                # most jobs taken per turn of the main loop (so kills and samples stay on time)

# A producer process: reads "lo hi" lines on stdin, produces seqs [lo, hi) of its keys (per
# key in order, idempotent producer so retries keep the order), flushes, answers "done hi".
PRODUCER = r"""
import sys
from confluent_kafka import Producer

bootstrap, topic, prefix, first, step, keys = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3]), *map(int, sys.argv[4:7])
mine = [(k, b"k%d" % k) for k in range(first, keys, step)]
failed = []
producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 20,
                     "batch.size": 1000000, "compression.type": "lz4", "queue.buffering.max.messages": 1000000,
                     "queue.buffering.max.kbytes": 1048576, "delivery.report.only.error": True,
                     "on_delivery": lambda err, msg: err is not None and failed.append(str(err))})
produce, poll = producer.produce, producer.poll
for line in sys.stdin:
    lo, hi = map(int, line.split())
    for seq in range(lo, hi):
        for k, key in mine:
            args = b'["k%d",%d]' % (k, seq)
            value = prefix + bytes([len(args)]) + args
            while True:
                try:
                    produce(topic, value, key)
                    break
                except BufferError:
                    poll(0.05)
        poll(0)
    left = producer.flush(120)
    if left or failed:
        print("error", left, "not delivered;", failed[:3], flush=True)
        break
    print("done", hi, flush=True)
"""


class Payload(msgspec.Struct):
    args: tuple[str, int]


class ProducerProc:
    """One producer process and the waves it was given and has acknowledged."""

    def __init__(self, bootstrap: str, topic: str, index: int, selector: selectors.BaseSelector) -> None:
        self.selector = selector
        prefix = Job(job_class="NumberedJob", queue="default").SerializeToString() + b"\x1a"  # field 3 follows
        self.keys = len(range(index, KEYS, PRODUCERS))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", PRODUCER, bootstrap, topic, prefix.hex(), str(index), str(PRODUCERS), str(KEYS)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO)
        os.set_blocking(self.proc.stdout.fileno(), False)
        selector.register(self.proc.stdout, selectors.EVENT_READ, self)
        self.issued = self.acked = 0  # seqs per key
        self.buffer = b""
        self.error = ""

    def issue(self) -> int:
        """Give the next wave; the number of jobs in it."""
        lo, self.issued = self.issued, self.issued + WAVE_SEQS
        self.proc.stdin.write(f"{lo} {self.issued}\n".encode())
        self.proc.stdin.flush()
        return WAVE_SEQS * self.keys

    def read(self) -> None:
        chunk = os.read(self.proc.stdout.fileno(), 4096)
        if not chunk:  # it never leaves on its own
            self.selector.unregister(self.proc.stdout)
            self.error = self.error or f"producer pid {self.proc.pid} exited ({self.proc.wait(10)})"
            return
        self.buffer += chunk
        *done, self.buffer = self.buffer.split(b"\n")
        for line in done:
            word, _, rest = line.decode().partition(" ")
            if word == "done":
                self.acked = int(rest)
            else:
                self.error = line.decode()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass


class Checker:
    """The jobs as Sidekiq would take them (RPOP), checked as they come: per key, every
    sequence number once and in produce order."""

    def __init__(self, client) -> None:
        self.client = client
        self.decode = msgspec.json.Decoder(Payload).decode
        self.next = [0] * KEYS     # per key, the sequence number due next
        self.seen = 0
        self.wrong: list[str] = []  # the first few out-of-order or repeated jobs
        self.wrong_count = 0

    def pop(self, most: int) -> int:
        """Take up to ``most`` jobs from the queue; how many there were."""
        got = 0
        while got < most:
            payloads = self.client.rpop("queue:default", POP)
            if not payloads:
                break
            nxt = self.next
            for payload in payloads:
                key, seq = self.decode(payload).args
                k = int(key[1:])
                if seq == nxt[k]:
                    nxt[k] = seq + 1
                else:
                    self.wrong_count += 1
                    if len(self.wrong) < 10:
                        what = "repeated" if seq < nxt[k] else "ahead of its turn (an earlier one is missing)"
                        self.wrong.append(f"{key} #{seq} {what}, #{nxt[k]} was due")
                    nxt[k] = max(nxt[k], seq + 1)
            got += len(payloads)
            self.seen += len(payloads)
        return got


def worker_processes(bridge: Bridge) -> list[psutil.Process]:
    """The bridge's live workers: children of its supervisor that the supervisor's last
    "started ... (pid P)" line for P names a worker (so a reused pid is never taken)."""
    roles = {int(pid): role for role, pid in
             re.findall(r"supervisor: started (worker \d+|coordinator) \(pid (\d+)\)", bridge.output())}
    try:
        kids = psutil.Process(bridge.proc.pid).children()
    except psutil.NoSuchProcess:
        return []
    out = []
    for kid in kids:
        try:
            if roles.get(kid.pid, "").startswith("worker") and kid.status() != psutil.STATUS_ZOMBIE:
                out.append(kid)
        except psutil.NoSuchProcess:
            pass
    return out


def metric(port: int, name: str) -> float | None:
    """A metric on /metrics, summed over its labels; None when it is not exported."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    values = [float(line.rsplit(None, 1)[1]) for line in text.splitlines()
              if re.match(re.escape(name) + r"(\{|\s)", line)]
    return sum(values) if values else None


class Watchdog:
    """pytest-timeout cannot know --soak-minutes when it arms its timer, so this bounds the test."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def _fire(self, *_):
        pytest.fail(f"the soak test overran its {self.seconds:.0f}s budget", pytrace=True)

    def __enter__(self):
        self.previous = signal.signal(signal.SIGALRM, self._fire)
        signal.setitimer(signal.ITIMER_REAL, self.seconds)
        return self

    def __exit__(self, *exc):
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self.previous)
        return False


def test_soak_sustained_load_then_worker_kills(request, bootstrap, make_topic, redis_url, capsys):
    import redis
    from confluent_kafka.admin import AdminClient

    minutes = request.config.getoption("--soak-minutes")
    assert minutes > 0, "--soak-minutes must be positive"
    phase = minutes * 60 / 2
    max_jobs = int(MAX_JOBS_PER_SECOND * minutes * 60)
    soak_url = re.sub(r"/\d+$", f"/{SOAK_DB}", redis_url)  # the fixture checked that the harness owns this Redis
    client = redis.Redis.from_url(soak_url)
    client.flushdb()
    topic = make_topic(PARTITIONS)
    port = free_port()
    rnd = random.Random(SEED)
    selector = selectors.DefaultSelector()
    producers: list[ProducerProc] = []
    bridge = None
    kills = 0
    kill_times: list[float] = []
    summary = ""
    with Watchdog(minutes * 60 + 600):
        try:
            bridge = Bridge(bridge_env(bootstrap, soak_url, topic, workers=2, http=f"127.0.0.1:{port}"), "run")
            wait_for(lambda: "] assigned" in bridge.output() or bridge.proc.poll() is not None, 60,
                     "the coordinator to join")
            assert bridge.proc.poll() is None, f"the bridge exited:\n{bridge.output()[-3000:]}"
            producers = [ProducerProc(bootstrap, topic, i, selector) for i in range(PRODUCERS)]
            checker = Checker(client)
            issued = 0
            started = time.monotonic()
            kills_from = started + phase
            stop_at = kills_from + phase
            next_kill = kills_from + rnd.uniform(*KILL_EVERY)
            lags: list[float] = []  # the bridge's Kafka lag, once a second: was it kept busy?
            next_sample = started + 1.0

            def produced() -> int:
                return sum(p.acked * p.keys for p in producers)

            def read_acks(timeout: float) -> None:
                for key, _ in selector.select(timeout):
                    key.data.read()
                errors = [p.error for p in producers if p.error]
                assert not errors, f"a producer failed: {errors}"

            # phases 1 and 2: produce in waves, work the queue, and in phase 2 kill workers
            while (now := time.monotonic()) < stop_at:
                assert bridge.proc.poll() is None, f"the bridge exited:\n{bridge.output()[-3000:]}"
                read_acks(0)
                for p in producers:
                    if (p.issued - p.acked < WAVES_AHEAD * WAVE_SEQS and issued - checker.seen < BACKLOG
                            and issued + WAVE_SEQS * p.keys <= max_jobs):
                        issued += p.issue()
                popped = checker.pop(TURN)
                if now >= next_kill:
                    candidates = [w for w in worker_processes(bridge) if time.time() - w.create_time() >= MIN_WORKER_AGE]
                    if candidates:
                        try:
                            rnd.choice(candidates).send_signal(signal.SIGKILL)  # psutil checks it is the same process
                            kills += 1
                            kill_times.append(now)
                        except psutil.NoSuchProcess:
                            pass
                        next_kill = now + rnd.uniform(*KILL_EVERY)
                    else:
                        next_kill = now + 0.2
                if now >= next_sample:
                    try:
                        lag = metric(port, "k2s_consumer_lag_messages")
                    except OSError:  # a sample missed; the scrape before stopping must succeed
                        lag = None
                    if lag is not None:
                        lags.append(lag)
                    next_sample = now + 1.0
                if not popped:
                    time.sleep(0.01)
            producing_seconds = time.monotonic() - started

            # no more waves: wait for the producers, then for every job to reach Redis
            deadline = time.monotonic() + 180
            while any(p.acked < p.issued for p in producers) and time.monotonic() < deadline:
                read_acks(0.05)
                checker.pop(TURN)
            assert all(p.acked == p.issued for p in producers), "the producers did not finish within 180s"
            total = produced()
            deadline = time.monotonic() + 300
            while checker.seen < total and time.monotonic() < deadline:
                assert bridge.proc.poll() is None, f"the bridge exited:\n{bridge.output()[-3000:]}"
                if not checker.pop(TURN):
                    time.sleep(0.05)
            drained_seconds = time.monotonic() - started
            settle_until = time.monotonic() + 2.0  # nothing more may arrive
            while time.monotonic() < settle_until:
                checker.pop(TURN)
                time.sleep(0.05)

            conflicts = metric(port, "k2s_ledger_conflicts_total")  # just before stopping
            assert bridge.stop(timeout=60) == 0, bridge.output()[-3000:]
            out = bridge.output()
            healthy_kills = out.count("made no progress for")
            spacing = [b - a for a, b in zip(kill_times, kill_times[1:])]
            gaps = f"{min(spacing):.1f}-{max(spacing):.1f} s apart" if spacing else "one"
            summary = (f"soak: {total:,} jobs produced in {producing_seconds / 60:.1f} min "
                       f"({minutes:g} min asked; {total / drained_seconds:,.0f} jobs/s produced to all in Redis), "
                       f"{kills} worker kills injected ({gaps}), {out.count('died: signal SIGKILL')} SIGKILL deaths seen, "
                       f"{healthy_kills} healthy kills (liveness), "
                       f"{'not exported' if conflicts is None else f'{conflicts:g}'} ledger conflicts, "
                       f"{out.count('in a row aborted')} 'transactions in a row aborted' lines, "
                       f"{checker.seen:,} jobs seen in Redis, {checker.wrong_count} out of order or repeated; "
                       f"Kafka lag once a second: mean {sum(lags) / max(len(lags), 1):,.0f}, "
                       f"max {max(lags, default=0):,.0f}, zero in {sum(lag == 0 for lag in lags)}/{len(lags)} samples")
            with capsys.disabled():
                print(f"\n{summary}", flush=True)

            assert not checker.wrong_count, f"{checker.wrong_count} jobs repeated or out of order, e.g. {checker.wrong}"
            assert checker.seen == total, f"{checker.seen:,} jobs in Redis, {total:,} produced"
            expected = [producers[k % PRODUCERS].acked for k in range(KEYS)]  # producer i has keys k % PRODUCERS == i
            assert checker.next == expected, "some keys' jobs did not all arrive"
            assert client.llen("queue:default") == 0 and client.zcard("schedule") == 0
            assert kills >= 1, "no worker was killed in phase 2"
            assert healthy_kills == 0, (f"the liveness check SIGKILLed {healthy_kills} process(es) that were "
                                        f"making progress:\n" + "\n".join(
                                            line for line in out.splitlines() if "made no progress for" in line))
            assert conflicts is not None, ("k2s_ledger_conflicts_total is not on /metrics: the soak cannot tell "
                                           "whether workers of disjoint partitions aborted each other's transactions")
            assert conflicts == 0, f"{conflicts:g} ledger transactions aborted between workers of disjoint partitions"
            assert "in a row aborted" not in out, [
                line for line in out.splitlines() if "in a row aborted" in line][:5]
        finally:
            for p in producers:
                p.stop()
            selector.close()
            if bridge is not None and bridge.proc.poll() is None:
                try:
                    left = psutil.Process(bridge.proc.pid).children()
                except psutil.NoSuchProcess:
                    left = []
                bridge.kill()
                for child in left:
                    try:
                        child.kill()
                    except psutil.NoSuchProcess:
                        pass
            if bridge is not None and not summary:
                with capsys.disabled():
                    print(f"\nsoak: failed after {kills} kills; bridge log {bridge.log.name}, last lines:\n"
                          f"{bridge.output()[-3000:]}", flush=True)
            with contextlib.suppress(Exception):  # never hide the failure that got us here
                client.flushdb()
                client.close()
            with contextlib.suppress(Exception):  # the topic holds millions of jobs: free the broker's disk
                AdminClient({"bootstrap.servers": bootstrap}).delete_topics(
                    [topic], operation_timeout=30)[topic].exception(60)
