"""Where a worker's CPU goes, per job: one bridge worker (kafka2sidekiq.worker.Worker, the
real class and loop, set up as the supervisor's child sets it up) drains a pre-filled
topic in a process of its own, and three views of its CPU are taken:

- by call: CPU time of the worker's thread in Source.consume (confluent-kafka making
  Message objects, librdkafka handing them over), Encoder.encode_batch (the compiled
  encoder) and Sink.send, answer and push (the RESP writer, the socket, hiredis reading
  replies), and the rest of the loop;
- by thread: the worker's thread against librdkafka's own (fetching, decompressing);
- by code, when perf can sample this machine: perf record (software clock, no hardware
  counters needed) of the whole process, split by shared object and symbol.

The supervisor, the coordinator and the worker's channel to them are not in it (the
suite's end-to-end figure, CPU of the whole process tree per job, has them).

    python -m bench.profile [--jobs N]   pre-fills a topic; writes bench/results/profile.json
    python -m bench.profile worker BOOTSTRAP TOPIC REDIS_URL JOBS   (the profiled process)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter

from . import common, e2e

PERF_HZ = 1999


# --- the profiled process ----------------------------------------------------------------

def _threads() -> dict[int, tuple[str, float]]:
    """This process's threads: tid -> (name, CPU seconds so far, user + system)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                stat = f.read()
            name = stat[stat.index("(") + 1:stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2:].split()
            out[int(tid)] = (name, (int(fields[11]) + int(fields[12])) / tick)
        except (OSError, ValueError):
            pass
    return out


class _Timed:
    """Stands in for ``target``; calls of the named methods add their thread CPU time up."""

    def __init__(self, target, spent: Counter, **names: str) -> None:
        self._target, self._spent, self._names = target, spent, names

    def __getattr__(self, attr):
        method = getattr(self._target, attr)
        if attr not in self._names:
            return method
        key, spent, clock = self._names[attr], self._spent, time.thread_time_ns

        def timed(*args, **kwargs):
            start = clock()
            try:
                return method(*args, **kwargs)
            finally:
                spent[key] += clock() - start
        return timed


def worker(bootstrap: str, topic: str, redis_url: str, jobs: str) -> None:
    """Boot a worker, say ready, wait for a line on stdin, drain ``jobs`` jobs, print JSON."""
    import gc

    from kafka2sidekiq import config
    from kafka2sidekiq.sink import Sink, connect
    from kafka2sidekiq.source import Source, keep_fetch_memory
    from kafka2sidekiq.worker import Worker

    jobs = int(jobs)
    settings = config.load({"K2S_BOOTSTRAP_SERVERS": bootstrap, "K2S_TOPIC": topic, "K2S_REDIS_URL": redis_url,
                            "K2S_GROUP_ID": f"profile-{uuid.uuid4().hex[:8]}", "K2S_WORKERS": "1",
                            "K2S_ENCODER": "fast"})
    keep_fetch_memory(settings.queued_max_kbytes)
    spent: Counter = Counter()
    source = _Timed(Source(settings), spent, consume="consume")
    sink = _Timed(Sink(connect(settings.redis_url), settings.redis_namespace,
                       Sink.ledger_name(settings.group_id, settings.topic)), spent,
                  send="push", answer="push", push="push")
    deadline = [time.monotonic() + 600]
    w = Worker(settings, source=source, sink=sink,
               should_stop=lambda: sum(w.stats.pushed.values()) >= jobs or time.monotonic() > deadline[0])
    w.encoder = _Timed(w.encoder, spent, encode_batch="encode")
    w.boot()
    gc.freeze()  # as the supervisor's child does (worker.main)
    gc.set_threshold(100_000, 50, 100)
    print("ready", flush=True)
    sys.stdin.readline()
    deadline[0] = time.monotonic() + 300
    before, main_before, wall = _threads(), time.thread_time_ns(), time.perf_counter()
    w.run()
    main_ns, wall = time.thread_time_ns() - main_before, time.perf_counter() - wall
    after = _threads()
    pushed = sum(w.stats.pushed.values())
    w.close()
    by_thread: Counter = Counter()
    me = os.getpid()
    for tid, (name, cpu) in after.items():
        if tid != me:
            by_thread["librdkafka threads" if name.startswith("rdk:") else f"thread {name}"] += \
                cpu - before.get(tid, (name, 0.0))[1]
    per_job = {"worker thread": main_ns / 1e9 / pushed * 1e6,
               **{k: v / pushed * 1e6 for k, v in by_thread.items()}}
    calls = {"Source.consume (confluent-kafka Messages)": spent["consume"],
             "Encoder.encode_batch (compiled encoder)": spent["encode"],
             "Sink.send, answer and push (RESP writer, socket, replies)": spent["push"]}
    calls["the rest of the loop (freeing each batch's Messages among it)"] = main_ns - sum(calls.values())
    print(json.dumps({"jobs": pushed, "seconds": round(wall, 3), "jobs_per_second": round(pushed / wall),
                      "us_per_job_by_thread": {k: round(v, 3) for k, v in per_job.items()},
                      "us_per_job": round(sum(per_job.values()), 3),
                      "us_per_job_by_call": {k: round(v / 1e3 / pushed, 3) for k, v in calls.items()}}), flush=True)


# --- perf ------------------------------------------------------------------------------

def perf_usable() -> bool:
    """perf is installed and may sample a process of ours with the software clock."""
    if not shutil.which("perf"):
        return False
    probe = subprocess.run(["perf", "stat", "-e", "task-clock", "-x,", "true"], capture_output=True, text=True)
    return probe.returncode == 0 and "task-clock" in probe.stderr


DSO_KINDS = (  # shared object -> what it is, in the order they are matched
    (r"cimpl", "confluent-kafka (Message objects, consume)"),
    (r"librdkafka", "librdkafka"),
    (r"_encoder_c", "compiled encoder + RESP writer"),
    (r"hiredis", "hiredis (Redis replies)"),
    (r"libpython|^python", "Python interpreter (the loop, redis-py, bookkeeping)"),
    (r"^libc[.-]|libm[.-]|ld-linux", "libc (malloc, memcpy)"),
    (r"kernel", "kernel (socket I/O, page faults, scheduling)"),
    (r"liblz4|libz|libzstd|libcrypto|libssl", "compression and TLS libraries"),
)


def kind_of(dso: str) -> str:
    return next((kind for pattern, kind in DSO_KINDS if re.search(pattern, dso)), "other")


def perf_split(data: str, top: int = 15) -> dict:
    """Shares of the samples by thread (worker or librdkafka), kind of code, and the top symbols."""
    report = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "-q", "-t", "\t",
                             "--sort", "comm,dso,sym"], capture_output=True, text=True, timeout=300)
    by_kind: Counter = Counter()
    symbols: Counter = Counter()
    for line in report.stdout.splitlines():
        parts = [p.strip() for p in line.split("\t")]
        if len(parts) < 4 or not parts[0].endswith("%"):
            continue
        share, comm, dso, sym = float(parts[0].rstrip("%")), parts[1], parts[2], parts[3]
        thread = "librdkafka threads" if comm.startswith("rdk:") else "worker thread"
        by_kind[f"{thread}: {kind_of(dso)}"] += share
        symbols[f"{thread}: {dso} {sym.removeprefix('[.] ').removeprefix('[k] ')}"] += share
    return {"samples_hz": PERF_HZ,
            "share_by_code": {k: round(v, 1) for k, v in by_kind.most_common()},
            "top_symbols": {k: round(v, 1) for k, v in symbols.most_common(top)}}


# --- the harness -----------------------------------------------------------------------

def run(bootstrap: str, topic: str, redis_url: str, jobs: int) -> dict:
    """Profile one worker draining ``jobs`` jobs of ``topic`` (from its beginning) into
    ``redis_url``'s database; flushed before and after."""
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    proc = subprocess.Popen([sys.executable, "-m", "bench.profile", "worker", bootstrap, topic, redis_url,
                             str(jobs)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=e2e.REPO)
    perf = None
    try:
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the profiled worker exited with {proc.wait(30)} before it was ready")
        with tempfile.TemporaryDirectory(prefix="k2s-profile-") as tmp:
            data = os.path.join(tmp, "perf.data")
            if perf_usable():
                perf = subprocess.Popen(["perf", "record", "-e", "task-clock", "-F", str(PERF_HZ), "-p",
                                         str(proc.pid), "-o", data], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
                time.sleep(1.0)  # attached before the first fetch
            proc.stdin.write("go\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"the profiled worker exited with {proc.wait(30)} before it reported")
            result = json.loads(line)
            proc.wait(60)
            if perf is not None:
                perf.wait(60)  # perf record -p ends with its process
                result["perf"] = perf_split(data) if perf.returncode == 0 else {"error": f"perf exited {perf.returncode}"}
            else:
                result["perf"] = None
    finally:
        for p in (proc, perf):
            if p is not None:
                e2e.stop(p)
        client.flushdb()
        client.close()
    return result


def report(r: dict) -> str:
    lines = [f"one worker, {r['jobs']:,} jobs at {r['jobs_per_second']:,}/s: {r['us_per_job']} us of CPU per job"]
    lines += [f"  {k}: {v} us/job" for k, v in r["us_per_job_by_thread"].items()]
    lines += ["  worker thread by call:"] + [f"    {k}: {v} us/job" for k, v in r["us_per_job_by_call"].items()]
    if r.get("perf") and "share_by_code" in r["perf"]:
        lines += ["  perf, share of all samples:"] + [f"    {v:5.1f}%  {k}" for k, v in r["perf"]["share_by_code"].items()]
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=400_000)
    args = parser.parse_args(argv)
    bootstrap, redis_url = e2e.services()
    topic = e2e.new_topic(bootstrap)
    e2e.prefill(bootstrap, topic, args.jobs)
    result = run(bootstrap, topic, e2e.db_url(redis_url, 7), args.jobs)
    print(report(result))
    print(f"wrote {common.write('profile', {'quick': False, **result})}")
    return result


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        worker(*sys.argv[2:6])
    else:
        main()
