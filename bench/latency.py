"""Latency, produce -> in Redis, against Kafka's own floor on the same broker, at fixed
offered loads.

Producer processes (as many as the load needs, started once, connected before any clock
starts) send the benchmark job at a set rate from a compiled loop. Two sinks take turns, pass by pass:

    ours    the bridge (kafka2sidekiq run, N workers) moves the jobs into Redis; the
            harness pops them as they land, as Sidekiq would, and compares the time with
            the job's created_at, which is the Kafka timestamp taken when the producer
            called produce();
    floor   N plain consumer processes on the same broker, no Redis, each reading its
            share of the partitions with the bridge's own librdkafka tuning and taking
            whatever has arrived: what any consumer of this Kafka sees. Each message's
            age is its receipt time minus the same Kafka timestamp.

Ours is reported as floor + overhead. The first second of each pass is left out (both
sinks); the idle test looks at exactly that second: the sinks sit idle for two seconds,
then a paced stream starts, and the first second's latencies are compared with the next
two seconds', ours against the floor's.

    python -m bench.latency [--quick] [--max JOBS_PER_SECOND] [--workers N]
    python -m bench.latency produce BOOTSTRAP       (a producer process; commands on stdin)
    python -m bench.latency floor BOOTSTRAP TOPIC PROCESSES DIR   (the floor consumers)
"""

from __future__ import annotations

import argparse
import math
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from array import array
from pathlib import Path

import redis

from . import common, e2e

PER_PRODUCER = 250_000   # jobs/s one producer process is asked for, at most
IDLE_SECONDS = 2.0       # how long the sinks sit idle before the idle test's stream
FIRST_SECOND = 1.0       # left out of each pass; the idle test's subject
RECORD = 16              # bytes per (created ms, latency ms) pair of doubles
SHARES = (0.25, 0.50, 0.90)  # of the most N workers moved, beside 1 k/s and 10 k/s
IDLE_RATE, IDLE_STREAM_SECONDS = 1000.0, 3.0  # the idle test's stream
LATE_SECONDS = 30.0      # a pass waits this long after its stream for the last jobs


# --- the producer processes ------------------------------------------------------------

def produce(bootstrap: str) -> None:
    """A producer process: for each line ``TOPIC RATE SECONDS`` on stdin, send ``RATE``
    jobs a second for ``SECONDS`` and print how many were sent. Connected before the
    first line, so start-up never counts. The pacing loop is compiled (bench/_messages.c
    calling the librdkafka confluent-kafka uses): ~1.3 us of CPU per message against
    ~3.9 with produce() from Python, which leaves the machine to what is measured."""
    from . import compiled
    from .bench_encoder import small_job

    helper = compiled.load()
    producer = helper.producer(compiled.rdkafka_library(), bootstrap)
    value, keys = small_job(), [f"key-{i}".encode() for i in range(1000)]
    print("ready", flush=True)
    for line in sys.stdin:
        topic, rate, seconds = line.split()
        print(helper.pace(producer, topic, value, keys, float(rate), float(seconds)), flush=True)


class Producers:
    """Producer processes, started once; a pass splits its rate between as many as it needs."""

    def __init__(self, bootstrap: str, count: int) -> None:
        from . import compiled

        compiled.load()  # built here once, not by each producer at the same moment
        self.procs = [subprocess.Popen([sys.executable, "-m", "bench.latency", "produce", bootstrap],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=e2e.REPO)
                      for _ in range(count)]
        for p in self.procs:
            if p.stdout.readline().strip() != "ready":
                raise RuntimeError(f"a producer process exited with {p.wait(10)} before it was ready")

    def start(self, topic: str, rate: float, seconds: float) -> list[subprocess.Popen]:
        used = self.procs[:max(1, min(len(self.procs), math.ceil(rate / PER_PRODUCER)))]
        for p in used:
            p.stdin.write(f"{topic} {rate / len(used)} {seconds}\n")
            p.stdin.flush()
        return used

    @staticmethod
    def sent(used: list[subprocess.Popen]) -> int | None:
        """How many the pass sent, once every producer of it has said; None until then."""
        if not all(select.select([p.stdout], [], [], 0)[0] for p in used):
            return None
        return sum(int(p.stdout.readline()) for p in used)

    def close(self) -> None:
        for p in self.procs:
            p.stdin.close()
        for p in self.procs:
            e2e.stop(p)


# --- the sinks -------------------------------------------------------------------------

def floor(bootstrap: str, topic: str, processes: str, out: str) -> None:
    """The floor's consumer processes: each appends (Kafka timestamp ms, age ms) of every
    message of its partitions to DIR/floor-<i>.bin, as doubles."""
    def consume(mine: list[int]) -> None:
        from . import compiled

        stop = common.stop_flag()
        ages = compiled.load().ages
        kind, at = compiled.message_fields()
        source = common.tuned_source(bootstrap, topic, "floor", mine)
        with open(Path(out) / f"floor-{os.getpid()}.bin", "ab", buffering=0) as f:
            while not stop:
                messages = source.consume(1000, common.BATCH_WAIT_SECONDS)
                if messages:
                    f.write(ages(messages, kind, at["timestamp"], at["error"], time.time() * 1000))
        source.close()

    from . import compiled
    compiled.load()  # built once, before the fork
    common.split(bootstrap, topic, int(processes), consume)


class FloorSink:
    """Kafka's floor: the floor consumer processes, and what they have written so far."""
    name = "floor"
    encoded = None  # no stage between Kafka and the sink

    def __init__(self, bootstrap: str, topic: str, processes: int) -> None:
        self.topic = topic
        self.dir = tempfile.TemporaryDirectory(prefix="k2s-floor-")
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.latency", "floor", bootstrap, topic,
                                      str(processes), self.dir.name], stderr=subprocess.PIPE, cwd=e2e.REPO)
        self.read: dict[Path, int] = {}

    def take(self) -> array:
        """The (created ms, latency ms) pairs written since the last call."""
        out = array("d")
        for path in Path(self.dir.name).glob("floor-*.bin"):
            at = self.read.get(path, 0)
            with open(path, "rb") as f:
                f.seek(at)
                data = f.read()
            whole = len(data) // RECORD * RECORD
            out.frombytes(data[:whole])
            self.read[path] = at + whole
        if self.proc.poll() is not None:
            raise RuntimeError(f"the floor consumers exited with {self.proc.returncode}: "
                               f"{self.proc.stderr.read().decode(errors='replace')[-2000:]}")
        return out

    def close(self) -> None:
        e2e.stop(self.proc)
        self.dir.cleanup()


class BridgeSink:
    """Ours: the bridge, and the jobs it has put in Redis, popped as they land."""
    name = "ours"

    def __init__(self, bootstrap: str, topic: str, redis_url: str, workers: int) -> None:
        self.topic = topic
        self.client = redis.Redis.from_url(e2e.db_url(redis_url, 6))
        self.client.flushdb()
        port = _free_port()
        bridge = e2e.ours(bootstrap, topic, e2e.db_url(redis_url, 6), workers, http=f"127.0.0.1:{port}")
        log = e2e.REPO / "build" / "bench-latency-bridge.log"  # kept: what the bridge said, if a pass stalls
        log.parent.mkdir(exist_ok=True)
        with log.open("wb") as out:
            self.proc = subprocess.Popen(bridge.argv, env=bridge.env, stdout=subprocess.DEVNULL, stderr=out,
                                         cwd=e2e.REPO)
        from . import compiled

        # created_at is the Kafka timestamp (when the producer called produce()), enqueued_at
        # when a worker encoded the job's batch; read in C, as the floor reads its messages,
        # so that the harness takes as little of the machine from ours as from the floor
        self.stamps = compiled.load().stamps
        self.encoded = array("d")  # (created ms, ms until a worker encoded it), beside take()'s
        deadline = time.monotonic() + 60
        while not _ready(f"http://127.0.0.1:{port}/readyz"):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("the bridge did not become ready in 60 s")
            time.sleep(0.2)

    def take(self) -> array:
        out = array("d")
        while payloads := self.client.rpop("queue:default", 1000):
            ages, encoded = self.stamps(payloads, time.time() * 1000)
            out.frombytes(ages)
            self.encoded.frombytes(encoded)
        if self.proc.poll() is not None:
            raise RuntimeError(f"the bridge exited with {self.proc.returncode}")
        return out

    def close(self) -> None:
        e2e.stop(self.proc)
        self.client.flushdb()
        self.client.close()


# --- passes ----------------------------------------------------------------------------

def one_pass(sink, producers: Producers, rate: float, seconds: float) -> tuple[int, array]:
    """Offer ``rate`` jobs/s for ``seconds`` through ``sink``: how many were sent, and the
    (created ms, latency ms) of each one received (and, for ours, in sink.encoded, the
    (created ms, ms until a worker encoded it) of each). Jobs not in the sink LATE_SECONDS
    after the stream ended are left out (the caller counts them late). Sets sink.origin,
    when the stream started (ms, the clock of the Kafka timestamps), and sink.cores, the
    CPU the sink's processes used over the pass, in cores."""
    sink.take()  # nothing left over from an earlier pass
    if sink.encoded is not None:
        del sink.encoded[:]
    cpu, started = e2e.cpu_of(sink.proc.pid), time.monotonic()
    sink.origin = time.time() * 1000
    used = producers.start(sink.topic, rate, seconds)
    got, sent = array("d"), None
    stream_end = started + seconds + 60  # the producers flush within 60 s
    give_up = None
    while True:
        fresh = sink.take()
        got.extend(fresh)
        if sent is None and (sent := producers.sent(used)) is not None:
            give_up = time.monotonic() + LATE_SECONDS
        if sent is not None and (len(got) // 2 >= sent or time.monotonic() > give_up):
            break
        if sent is None and time.monotonic() > stream_end:
            raise RuntimeError(f"the producers did not finish a pass of {seconds} s in {seconds + 60} s")
        if not fresh:
            time.sleep(0.0005)
    sink.cores = round((e2e.cpu_of(sink.proc.pid) - cpu) / (time.monotonic() - started), 2)
    return sent, got


def percentiles(latencies: list[float]) -> dict:
    if not latencies:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None, "count": 0}
    s = sorted(latencies)
    return {"p50_ms": round(s[len(s) // 2], 2), "p99_ms": round(s[min(len(s) - 1, int(0.99 * len(s)))], 2),
            "max_ms": round(s[-1], 2), "count": len(s)}


def window(pairs: array, since: float, until: float, origin: float) -> list[float]:
    """Latencies of the jobs created in [since, until) seconds after ``origin`` (ms): an
    earlier pass's late jobs, created before it, are left out."""
    return [lat for created, lat in zip(pairs[0::2], pairs[1::2])
            if since * 1000 <= created - origin < until * 1000]


def _median(rounds: list[dict], key: str):
    values = [r[key] for r in rounds if r[key] is not None]
    return round(statistics.median(values), 2) if values else None


def summarise(rounds: list[dict]) -> dict:
    """Medians over rounds of p50 and p99, the largest max, and the jobs that came too late
    to be counted (LATE_SECONDS after their stream), all rounds together."""
    maxes = [r["max_ms"] for r in rounds if r["max_ms"] is not None]
    return {"p50_ms": _median(rounds, "p50_ms"), "p99_ms": _median(rounds, "p99_ms"),
            "max_ms": max(maxes) if maxes else None, "late": sum(r.get("late", 0) for r in rounds),
            "rounds": rounds}


def run(bootstrap: str, redis_url: str, workers: int, top: float, seconds: float, rounds: int,
        idle_rounds: int, progress=lambda: None) -> dict:
    """Ours against the floor at each offered load (1 k/s, 10 k/s and shares of ``top``),
    ``rounds`` interleaved rounds of ``seconds`` each; then the idle test."""
    loads = [("1k", 1000.0), ("10k", 10_000.0), *((f"{s:.0%}", top * s) for s in SHARES)] if rounds else []
    producers = Producers(bootstrap, max(1, math.ceil(max((rate for _, rate in loads), default=0) / PER_PRODUCER)))
    sinks = []
    try:
        sinks.append(FloorSink(bootstrap, e2e.new_topic(bootstrap), workers))
        sinks.append(BridgeSink(bootstrap, e2e.new_topic(bootstrap), redis_url, workers))
        for sink in sinks:  # a first message through each: connected, assigned, warm
            one_pass(sink, producers, 100, 1.0)
        by_load: dict[str, dict[str, list[dict]]] = {}
        for _ in range(rounds):
            for label, rate in loads:
                for sink in sinks:
                    sent, pairs = one_pass(sink, producers, rate, seconds)
                    counted = window(pairs, 0, seconds + 60, sink.origin)
                    row = percentiles(window(pairs, FIRST_SECOND, seconds + 60, sink.origin))
                    row.update(sent_per_second=round(sent / seconds), received=len(counted), sent=sent,
                               late=sent - len(counted), cores=sink.cores)
                    if sink.encoded is not None:
                        row["to_worker"] = percentiles(window(sink.encoded, FIRST_SECOND, seconds + 60, sink.origin))
                    by_load.setdefault(label, {}).setdefault(sink.name, []).append(row)
                    progress()
        table = []
        for label, rate in loads:
            floor_, ours_ = (summarise(by_load[label][k]) for k in ("floor", "ours"))
            over = {f"{q}_ms": _over(by_load[label], f"{q}_ms") for q in ("p50", "p99", "max")}
            table.append({"load": label, "offered_per_second": round(rate),
                          "sent_per_second": round(statistics.median(
                              r["sent_per_second"] for r in by_load[label]["ours"])),
                          "floor": floor_, "ours": ours_, "overhead": over,
                          "ours_to_worker": summarise([r["to_worker"] for r in by_load[label]["ours"]]),
                          "cores": {k: round(statistics.median(r["cores"] for r in by_load[label][k]), 2)
                                    for k in ("floor", "ours")}})
        idle = idle_test(sinks, producers, idle_rounds, progress)
    finally:
        for sink in sinks:
            sink.close()
        producers.close()
    return {"seconds": seconds, "rounds": rounds, "first_second_left_out": True, "workers": workers,
            "floor_processes": workers, "loads": table, "idle": idle}


def _over(rows: dict[str, list[dict]], key: str):
    """Median over rounds of ours minus the floor of the same round."""
    diffs = [o[key] - f[key] for f, o in zip(rows["floor"], rows["ours"])
             if o[key] is not None and f[key] is not None]
    return round(statistics.median(diffs), 2) if diffs else None


def idle_test(sinks, producers: Producers, rounds: int, progress=lambda: None) -> dict:
    """After IDLE_SECONDS of nothing, a paced IDLE_RATE stream: the first second's
    latencies against the next two seconds', for each sink, ``rounds`` rounds each."""
    out: dict[str, dict[str, list[dict]]] = {}
    for _ in range(rounds):
        for sink in sinks:
            sink.take()
            time.sleep(IDLE_SECONDS)
            _, pairs = one_pass(sink, producers, IDLE_RATE, IDLE_STREAM_SECONDS)
            first = window(pairs, 0, FIRST_SECOND, sink.origin)
            rest = window(pairs, FIRST_SECOND, IDLE_STREAM_SECONDS, sink.origin)
            out.setdefault(sink.name, {}).setdefault("first_second", []).append(percentiles(first))
            out[sink.name].setdefault("after", []).append(percentiles(rest))
            if sink.encoded is not None:
                out[sink.name].setdefault("first_second_to_worker", []).append(
                    percentiles(window(sink.encoded, 0, FIRST_SECOND, sink.origin)))
            out[sink.name].setdefault("worst_100ms", []).append(worst_slots(pairs, sink.origin))
            progress()
    return {"idle_seconds": IDLE_SECONDS, "rate": IDLE_RATE, "stream_seconds": IDLE_STREAM_SECONDS,
            **{name: {key: v[key] if key == "worst_100ms" else summarise(v[key]) for key in v}
               for name, v in out.items()}}


def worst_slots(pairs: array, origin: float, slot_ms: float = 100) -> list[float]:
    """The largest latency in each 100 ms of the stream's first second: where a stall sits."""
    slots = [0.0] * int(FIRST_SECOND * 1000 / slot_ms)
    for created, lat in zip(pairs[0::2], pairs[1::2]):
        k = int((created - origin) // slot_ms)
        if 0 <= k < len(slots):
            slots[k] = max(slots[k], round(lat, 1))
    return slots


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


def cells(row: dict) -> list[str]:
    """One load's row: load, offered/s, sent/s, floor, ours, overhead (p50 / p99 / max),
    ours until a worker encoded it, and the cores the floor's and our processes used."""
    def three(d, keys=("p50_ms", "p99_ms", "max_ms")):
        late = f" ({d['late']:,} too late to count)" if d.get("late") else ""
        return " / ".join(str(d[k]) for k in keys) + late
    return [row["load"], f"{row['offered_per_second']:,}", f"{row['sent_per_second']:,}", three(row["floor"]),
            three(row["ours"]), three(row["overhead"], ("p50_ms", "p99_ms")),
            three(row.get("ours_to_worker") or {"p50_ms": "?", "p99_ms": "?"}, ("p50_ms", "p99_ms")),
            three(row.get("cores") or {"floor": "?", "ours": "?"}, ("floor", "ours"))]


def report(lat: dict) -> str:
    lines = [f"latency, produce -> in Redis (ours) / consumed (Kafka's floor), {lat['workers']} process(es) each, "
             f"median of {lat['rounds']} round(s) of {lat['seconds']} s, first second left out; ms:",
             "load, offered/s, sent/s | floor p50 / p99 / max | ours p50 / p99 / max | overhead p50 / p99 | "
             "ours, until a worker encoded it, p50 / p99 | cores used, floor / ours"]
    lines += ["  " + " | ".join(cells(row)) for row in lat["loads"]]
    idle = lat["idle"]
    lines.append(f"after {idle['idle_seconds']:.0f} s idle, {idle['rate']:,.0f} jobs/s: first second p50/p99/max "
                 f"(then the next two seconds'):")
    for name in ("floor", "ours"):
        a, b = idle[name]["first_second"], idle[name]["after"]
        lines.append(f"  {name:5} {a['p50_ms']} / {a['p99_ms']} / {a['max_ms']} ms  "
                     f"({b['p50_ms']} / {b['p99_ms']} / {b['max_ms']} ms); worst per 100 ms: "
                     + "; ".join(" ".join(f"{x:g}" for x in slots) for slots in idle[name]["worst_100ms"]))
    if "first_second_to_worker" in idle["ours"]:
        w = idle["ours"]["first_second_to_worker"]
        lines.append(f"  ours, first second, until a worker encoded it: {w['p50_ms']} / {w['p99_ms']} / {w['max_ms']} ms")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round of 3 s passes")
    parser.add_argument("--max", type=float, default=500_000, help="the jobs/s the shares are of")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--idle-only", type=int, metavar="ROUNDS", help="only the idle test, this many rounds")
    args = parser.parse_args(argv)
    bootstrap, redis_url = e2e.services()
    plan = (3.0, 1, 1) if args.quick else (6.0, 3, 3)
    if args.idle_only:
        plan = (0.0, 0, args.idle_only)
    lat = run(bootstrap, redis_url, args.workers, args.max, *plan)
    print(report(lat))
    return lat


if __name__ == "__main__":
    if sys.argv[1:2] == ["produce"]:
        produce(sys.argv[2])
    elif sys.argv[1:2] == ["floor"]:
        floor(*sys.argv[2:6])
    else:
        main()
