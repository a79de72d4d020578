"""The benchmark suite: kafka2sidekiq against the alternatives, side by side, same jobs,
same Kafka, same Redis, interleaved runs.

    python -m bench [--quick] [--jobs N] [--runs N] [--workers-max N]

1. throughput: jobs/s from a pre-filled topic (8 partitions, 1,000 keys) into Redis for
   1, 2 and N workers (the real supervisor), and at each of those process counts the
   straightforward Python bridge, the Python raw copy and the strict ceiling (the
   project's compiled reader and RESP writer, nothing else); Sidekiq's push_bulk in Ruby;
   with the cost of each: CPU seconds per million jobs (the contender's, and Redis's own),
   largest RSS per process, Redis peak memory. Every Kafka contender reads with the
   bridge's own librdkafka tuning;
2. sweep: the same against K2S_BATCH_SIZE (baselines at the same batch size) and
   K2S_BATCH_WAIT_MS, to show where the shipped defaults sit;
3. latency: produce -> in Redis against Kafka's own floor (produce -> consumed, same
   broker, as many plain consumer processes as workers), p50/p99/max at 1 k/s, 10 k/s
   and 25 %, 50 %, 90 % of the throughput N workers reached; and the first second of
   traffic after two seconds idle (bench/latency.py);
4. profile: one worker's CPU per job, by call, by thread and (with perf) by code
   (bench/profile.py).

Uses the local services (scripts/services.py) unless K2S_BOOTSTRAP_SERVERS and
K2S_REDIS_URL are set. Writes bench/results/suite.json and profile.json (suite-quick.json
and profile-quick.json with --quick) and the chart bench/results/suite.png; python -m
bench.readme puts the tables in README.md. The full suite takes about 12 minutes on a
2-core machine (latency and the idle test take a fixed 4 of them), --quick about 2.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics

import redis
from tqdm import tqdm

from . import common, e2e, latency, profile

DEFAULT_BATCH_SIZE, DEFAULT_BATCH_WAIT_MS = 1000, 20
# A drain is timed from the first job in Redis to the last: at ~1 M jobs/s, 400,000 jobs
# took 0.4 s, and the start (a worker taking its partitions a little after the other)
# weighed in the figures. Sidekiq's push_bulk keeps its pace from the first job, and at
# ~50 k/s 2 M jobs would take 40 s a run: it pushes PUSH_BULK_JOBS.
PUSH_BULK_JOBS = 400_000
FULL = {"jobs": 2_000_000, "sweep_jobs": 1_000_000, "runs": 3, "sizes": [100, 300, 1000, 3000, 10000],
        "waits": [5, 20, 100],
        "latency": {"seconds": 6.0, "rounds": 3, "idle_rounds": 3}}
QUICK = {"jobs": 200_000, "sweep_jobs": 100_000, "runs": 1, "sizes": [100, 1000, 5000], "waits": [5, 20, 100],
         "latency": {"seconds": 3.0, "rounds": 1, "idle_rounds": 1}}
CPU_TARGET_US = 0.5  # bridge CPU per job


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer jobs, one run, a short sweep: about 2 minutes")
    parser.add_argument("--jobs", type=int, help="jobs per drain")
    parser.add_argument("--runs", type=int, help="interleaved runs of the throughput section")
    parser.add_argument("--workers-max", type=int, default=os.cpu_count() or 2, help="N (default: CPU count)")
    args = parser.parse_args(argv)
    plan = dict(QUICK if args.quick else FULL)
    plan["jobs"] = args.jobs or plan["jobs"]
    plan["runs"] = args.runs or plan["runs"]
    jobs, n = plan["jobs"], args.workers_max
    sweep_jobs = min(jobs, plan["sweep_jobs"])
    counts = sorted({1, 2, n})

    bootstrap, redis_url = e2e.services()
    url = e2e.db_url(redis_url, 1)
    client = redis.Redis.from_url(url)
    topic = e2e.new_topic(bootstrap)
    print(f"pre-filling {topic}: {jobs:,} jobs of {len(e2e.small_job())} bytes, 8 partitions", flush=True)
    e2e.prefill(bootstrap, topic, jobs)

    def contenders(size: int = DEFAULT_BATCH_SIZE) -> list[e2e.Contender]:
        performed = e2e.ours(bootstrap, topic, url, n, size, commit_on="performed")
        performed.name = f"performed-{n}"  # no Sidekiq acknowledges: the worst case of its bookkeeping
        return [*(e2e.ours(bootstrap, topic, url, w, size) for w in counts), performed,
                *(e2e.python_bridge(bootstrap, topic, url, w, size) for w in counts),
                *(e2e.raw_copy(bootstrap, topic, url, w, size) for w in counts),
                *(e2e.ceiling(bootstrap, topic, url, w, size) for w in counts),
                e2e.push_bulk(url, min(jobs, PUSH_BULK_JOBS), size)]

    best = f"ours-{n}"
    swept = (best, f"python-{n}", f"ceiling-{n}", "push_bulk")
    lat_plan = plan["latency"]
    passes = (len(latency.SHARES) + 2) * lat_plan["rounds"] * 2 + lat_plan["idle_rounds"] * 2
    total = plan["runs"] * (len(contenders()) + len(plan["sizes"]) * len(swept) + len(plan["waits"])) + passes + 1
    bar = tqdm(total=total, unit="run", dynamic_ncols=True)

    def measure(contender: e2e.Contender, count: int = jobs) -> e2e.Drain:
        bar.set_description(contender.name)
        client.flushdb()
        try:
            return e2e.drain(contender, client, min(count, contender.jobs or count))
        finally:
            client.flushdb()
            bar.update()

    # 1. throughput, interleaved so that every contender meets the same noise
    runs: dict[str, list[dict]] = {}
    for r in range(plan["runs"]):
        for contender in contenders():
            d = measure(contender)
            runs.setdefault(contender.name, []).append(d.as_dict())
            bar.write(f"run {r + 1}/{plan['runs']} {contender.name:12} {d.jobs_per_second:10,.0f} jobs/s  "
                      f"{d.cpu_seconds_per_million:6.2f} CPU s/M jobs  Redis peak {d.redis_peak / 2**20:5.0f} MiB")
    throughput = {name: summary(samples) for name, samples in runs.items()}
    ratios = {}
    for w in counts:
        ratios[f"ours_over_python_{w}v{w}"] = paired(runs[f"ours-{w}"], runs[f"python-{w}"])
        ratios[f"ours_share_of_ceiling_{w}v{w}"] = paired(runs[f"ours-{w}"], runs[f"ceiling-{w}"])
        ratios[f"ours_share_of_raw_copy_{w}v{w}"] = paired(runs[f"ours-{w}"], runs[f"raw_copy-{w}"])
    ratios["ours_over_push_bulk"] = paired(runs[best], runs["push_bulk"])
    ratios["performed_share_of_pushed"] = paired(runs[f"performed-{n}"], runs[best])

    # 2. sweep: medians of as many rounds as the throughput section had
    sized: dict[str, dict[int, list[float]]] = {}
    held: dict[int, list[float]] = {}  # batch size -> how long each of our transactions held Redis
    waited: dict[int, list[float]] = {}
    for _ in range(plan["runs"]):
        for size in plan["sizes"]:
            for contender in contenders(size):
                if contender.name not in swept:
                    continue
                d = measure(contender, sweep_jobs)
                sized.setdefault(contender.name, {}).setdefault(size, []).append(d.jobs_per_second)
                if contender.name == best and d.redis_exec_ms is not None:
                    held.setdefault(size, []).append(d.redis_exec_ms)
        for wait in plan["waits"]:
            waited.setdefault(wait, []).append(
                measure(e2e.ours(bootstrap, topic, url, n, DEFAULT_BATCH_SIZE, wait), sweep_jobs).jobs_per_second)
    by_size = {name: {size: round(statistics.median(v)) for size, v in sizes.items()} for name, sizes in sized.items()}
    by_wait = {wait: round(statistics.median(v)) for wait, v in waited.items()}
    exec_ms = {size: round(statistics.median(v), 2) for size, v in held.items()}

    # 3. latency against Kafka's floor, at fixed loads and shares of what N workers did
    bar.set_description("latency")
    lat = latency.run(bootstrap, redis_url, n, throughput[best]["jobs_per_second_median"], lat_plan["seconds"],
                      lat_plan["rounds"], lat_plan["idle_rounds"], bar.update)

    # 4. where one worker's CPU goes
    bar.set_description("profile")
    prof = profile.run(bootstrap, topic, e2e.db_url(redis_url, 7), jobs)
    bar.update()
    bar.close()
    client.close()

    cpu = throughput[best]["cpu_seconds_per_million_median"]  # CPU s per M jobs = us per job
    loads = {row["load"]: row for row in lat["loads"]}
    targets = {f"ours_share_of_ceiling_{w}v{w} >= 0.9": ratios[f"ours_share_of_ceiling_{w}v{w}"]["median"] >= 0.9
               for w in counts}
    targets.update({
        "ours_over_push_bulk >= 4": ratios["ours_over_push_bulk"]["median"] >= 4,
        "performed_share_of_pushed >= 0.85": ratios["performed_share_of_pushed"]["median"] >= 0.85,
        f"bridge CPU per job <= {CPU_TARGET_US} us": cpu <= CPU_TARGET_US,
        **{f"latency at {k}: p50 <= floor + 3 ms, p99 <= floor + 10 ms":
           _at_most(loads[k]["overhead"]["p50_ms"], 3) and _at_most(loads[k]["overhead"]["p99_ms"], 10)
           for k in ("1k", "10k", "25%")},
        "latency at 50%: p99 <= 50 ms": _at_most(loads["50%"]["ours"]["p99_ms"], 50),
    })
    results = {"quick": args.quick, "jobs": jobs, "runs": plan["runs"], "workers": counts,
               "job_bytes": len(e2e.small_job()),
               "defaults": {"batch_size": DEFAULT_BATCH_SIZE, "batch_wait_ms": DEFAULT_BATCH_WAIT_MS},
               "throughput": throughput, "ratios": ratios, "bridge_cpu_us_per_job": cpu, "targets": targets,
               "sweep": {"batch_size": by_size, "batch_wait_ms": by_wait, "redis_exec_ms": exec_ms},
               "latency": lat}
    name = "suite-quick" if args.quick else "suite"
    path = common.write(name, results)
    prof_path = common.write(name.replace("suite", "profile"), {"quick": args.quick, **prof})
    results = json.loads(path.read_text())  # with the machine, versions and git sha
    print(report(results))
    print(profile.report(prof))
    from . import chart
    png = chart.draw(results, path.with_suffix(".png"))
    print(f"wrote {path}, {prof_path} and {png}")
    return results


def _at_most(value, bound) -> bool:
    return value is not None and value <= bound


def summary(samples: list[dict]) -> dict:
    def med(key):
        return round(statistics.median(s[key] for s in samples), 2)
    rss = [max(col) for col in zip(*(s["rss_max_mib"] for s in samples))]
    return {"jobs_per_second_median": round(med("jobs_per_second")),
            "jobs_per_second_runs": [s["jobs_per_second"] for s in samples],
            "cpu_seconds_per_million_median": med("cpu_seconds_per_million"),
            "redis_cpu_seconds_per_million_median": med("redis_cpu_seconds_per_million"),
            "redis_peak_mib_median": med("redis_peak_mib"),
            "rss_max_mib": rss}


def paired(ours: list[dict], theirs: list[dict]) -> dict:
    """Ratios of runs made back to back, then their median: robust to a noisy machine."""
    per_run = [round(a["jobs_per_second"] / b["jobs_per_second"], 2) for a, b in zip(ours, theirs)]
    return {"per_run": per_run, "median": round(statistics.median(per_run), 2)}


def report(r: dict) -> str:
    lines = [f"\n{r['jobs']:,} jobs of {r['job_bytes']} B, median of {r['runs']} run(s)",
             f"{'contender':14} {'jobs/s':>10} {'CPU s/M':>8} {'Redis CPU':>9} {'Redis MiB':>9}  "
             f"RSS MiB of each process"]
    for name, t in r["throughput"].items():
        rss = " ".join(map(str, t["rss_max_mib"]))
        lines.append(f"{name:14} {t['jobs_per_second_median']:>10,} {t['cpu_seconds_per_million_median']:>8} "
                     f"{t.get('redis_cpu_seconds_per_million_median', '?'):>9} "
                     f"{t['redis_peak_mib_median']:>9}  {rss}")
    for key, v in r["ratios"].items():
        lines.append(f"{key}: {v['median']} (per run {', '.join(map(str, v['per_run']))})")
    for key, ok in r["targets"].items():
        lines.append(f"target {key}: {'met' if ok else 'MISSED'}")
    lines.append("sweep K2S_BATCH_SIZE: " + "; ".join(
        f"{name} " + " ".join(f"{s}:{v:,}" for s, v in sizes.items()) for name, sizes in r["sweep"]["batch_size"].items()))
    lines.append("sweep K2S_BATCH_SIZE, ms each EXEC held Redis: " + " ".join(
        f"{s}:{v}" for s, v in r["sweep"].get("redis_exec_ms", {}).items()))
    lines.append("sweep K2S_BATCH_WAIT_MS: " + " ".join(f"{w}:{v:,}" for w, v in r["sweep"]["batch_wait_ms"].items()))
    lines.append(f"bridge CPU per job ({r['workers'][-1]} workers, whole process tree): "
                 f"{r['bridge_cpu_us_per_job']} us")
    lines.append(latency.report(r["latency"]))
    return "\n".join(lines)
