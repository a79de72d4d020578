"""The README's benchmark section, made from the committed results (bench/results/*.json).

    python -m bench.readme    rewrite the section in README.md
"""

import json
import re

from . import latency
from .common import RESULTS

README = RESULTS.parent.parent / "README.md"
BEGIN, END = "<!-- bench-table:begin", "<!-- bench-table:end"
NAMES = {"python": "straightforward Python bridge, 1 process, untuned (an older suite)",
         "push_bulk": "Sidekiq `push_bulk` (Ruby, no Kafka)"}
KINDS = {"ours": "**kafka2sidekiq, {} worker(s)**", "performed": "kafka2sidekiq, {} worker(s), `K2S_COMMIT_ON=performed`",
         "python": "straightforward Python bridge, {} process(es)", "raw_copy": "raw copy in Python, {} process(es)",
         "ceiling": "strict ceiling (compiled reader + RESP writer), {} process(es)"}
RATIOS = (  # ratio key -> how the README says it; {0}: the median, {1}: the process count
    (r"ours_over_python_(\d+)v\d+", "**{0}x** the Python bridge at {1} v {1}"),
    (r"ours_share_of_ceiling_(\d+)v\d+", "**{0:.0%}** of the strict ceiling at {1} v {1}"),
    (r"ours_share_of_raw_copy_(\d+)v\d+", "{0:.0%} of the Python raw copy at {1} v {1}"),
    (r"ours_over_python", "**{0}x** the Python bridge (1 process, untuned)"),
    (r"ours_over_push_bulk", "**{0}x** Sidekiq `push_bulk`"),
    (r"ours_share_of_raw_copy", "**{0:.0%}** of the raw-copy ceiling"),
    (r"performed_share_of_pushed", "`K2S_COMMIT_ON=performed` at **{0:.0%}** of the default"),
)


def _name(key: str) -> str:
    if key in NAMES:
        return NAMES[key]
    kind, count = key.rsplit("-", 1)
    return KINDS.get(kind, kind + ", {}").format(count)


def _compared_with(key: str, suite: dict) -> str:
    """Ours at the same process count for a baseline run at counts, else ours at the most."""
    kind, _, count = key.rpartition("-")
    if kind in ("python", "raw_copy", "ceiling") and f"ours-{count}" in suite["throughput"]:
        return f"ours-{count}"
    return f"ours-{max(suite['workers'])}"


def _ratio(key: str, ratio: dict) -> str:
    for pattern, text in RATIOS:
        m = re.fullmatch(pattern, key)
        if m:
            return text.format(ratio["median"], *m.groups()) + f" ({_runs(ratio)})"
    return f"{key} {ratio['median']} ({_runs(ratio)})"


def table() -> str:
    suite = json.loads((RESULTS / "suite.json").read_text())
    enc = json.loads((RESULTS / "encoder.json").read_text())
    m = suite["machine"]
    n = max(suite["workers"])
    lines = [
        f"Machine: {m['cores']} cores, {m['cpu']}, {m['memory_gb']} GB; Kafka, Redis and the bridge share it. "
        f"git {suite['git']} ([suite.json](bench/results/suite.json)), {suite['jobs']:,} jobs of "
        f"{suite['job_bytes']} B, 8 partitions, median of {suite['runs']} interleaved runs.",
        "",
        "| contender | jobs/s | ours ÷ it (same process count; else ours at the most workers) | CPU s per M jobs "
        "| Redis CPU s per M jobs | Redis peak MiB | RSS MiB, each process |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, t in suite["throughput"].items():
        ours = _compared_with(key, suite)
        ratio = "" if key.startswith("ours-") else \
            f"{suite['throughput'][ours]['jobs_per_second_median'] / t['jobs_per_second_median']:.2f}x"
        lines.append(f"| {_name(key)} | {t['jobs_per_second_median']:,} | {ratio} | "
                     f"{t['cpu_seconds_per_million_median']} | {t.get('redis_cpu_seconds_per_million_median', '')} | "
                     f"{t['redis_peak_mib_median']} | "
                     f"{', '.join(map(str, t['rss_max_mib']))} |")
    lines += ["", "Paired ratios (each run's contenders back to back; ours at the most workers unless a count "
              "is given): " + "; ".join(_ratio(k, v) for k, v in suite["ratios"].items()) + "."]
    if "bridge_cpu_us_per_job" in suite:
        lines += ["", f"Bridge CPU per job, {n} workers, the whole process tree (supervisor, coordinator, "
                  f"workers and their librdkafka threads), first job in Redis to the last: "
                  f"**{suite['bridge_cpu_us_per_job']} µs** (target ≤ 0.5 µs)" + (
                      f"; for scale, the strict ceiling, which neither decodes nor encodes nor keeps a ledger, "
                      f"spends {suite['throughput'][f'ceiling-{n}']['cpu_seconds_per_million_median']} µs "
                      f"at {n} processes." if f"ceiling-{n}" in suite["throughput"] else ".")]
    lines += profile_lines()
    lines += latency_lines(suite)
    sweep = suite["sweep"]
    lines += [
        "",
        f"`K2S_BATCH_SIZE` sweep, {n} workers, jobs/s (how long each batch's `EXEC` held Redis): " + ", ".join(
            f"{size}: {v:,} ({sweep['redis_exec_ms'].get(size, '?')} ms)"
            for size, v in sweep["batch_size"][f"ours-{n}"].items()) + ".",
        "",
        "`K2S_BATCH_WAIT_MS` sweep (batch size 1000), jobs/s: " + ", ".join(
            f"{w} ms: {v:,}" for w, v in sweep["batch_wait_ms"].items()) + ".",
        "",
        "![throughput against batch size; latency against load](bench/results/suite.png)",
        "",
        "| encoder ([encoder.json](bench/results/encoder.json), median of "
        f"{enc['runs']} runs) | compiled ns/job | protobuf library + msgspec ns/job | ratio |",
        "|---|---|---|---|",
    ]
    for label, key in (("{} B job, the same 1,000 times", "small"),
                       ("1,000 different jobs of {} B on average", "varied"), ("{} B job", "large"),
                       ("{} B job as confluent-kafka Messages (what the worker passes)", "messages")):
        e = enc["results"][key]
        size = f"{e['message_bytes']:,}"
        lines.append(f"| {label.format(size)} | {e['ns_per_job_median']['compiled']:,.0f} | "
                     f"{e['ns_per_job_median']['baseline']:,.0f} | {e['baseline_over_compiled']}x |")
    return "\n".join(lines)


def _until_encoded(idle: dict) -> str:
    w = idle["ours"].get("first_second_to_worker")
    return f"; ours' first second until a worker encoded the job: {w['p50_ms']} / {w['p99_ms']} / {w['max_ms']}" \
        if w else ""


def profile_lines() -> list[str]:
    path = RESULTS / "profile.json"
    if not path.exists():
        return []
    p = json.loads(path.read_text())
    lines = ["", f"Where one worker's CPU goes ([profile.json](bench/results/profile.json), git {p['git']}, "
             f"{p['jobs']:,} jobs at {p['jobs_per_second']:,}/s, one worker alone): "
             f"**{p['us_per_job']} µs per job**.", "",
             "| part | µs per job |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in p["us_per_job_by_thread"].items()]
    lines += [f"| worker thread: {k} | {v} |" for k, v in p["us_per_job_by_call"].items()]
    if p.get("perf") and p["perf"].get("share_by_code"):
        lines += ["", "perf, share of the worker process's samples: " + "; ".join(
            f"{k} {v}%" for k, v in p["perf"]["share_by_code"].items() if v >= 1) + "."]
    return lines


def latency_lines(suite: dict) -> list[str]:
    lat = suite["latency"]
    if isinstance(lat, list):  # an older suite: no floor
        lines = ["", "| offered load (share of the maximum above) | jobs/s offered | jobs/s the producer managed "
                 "| p50 ms | p99 ms | max ms |", "|---|---|---|---|---|---|"]
        return lines + [f"| {r['share_of_max']:.0%} | {r['offered_per_second']:,} | {r['sent_per_second']:,} | "
                        f"{r['p50_ms']} | {r['p99_ms']} | {r['max_ms']} |" for r in lat]
    lines = ["", f"Latency, produce → in Redis, against Kafka's own floor on the same broker (produce → "
             f"consumed by {lat['floor_processes']} plain consumer processes with the bridge's tuning, no "
             f"Redis); {lat['workers']} workers; median of {lat['rounds']} interleaved rounds of "
             f"{lat['seconds']:g} s, the first second of each left out; ms:", "",
             "| offered load | jobs/s offered | jobs/s sent | floor p50 / p99 / max | ours p50 / p99 / max "
             "| overhead p50 / p99 | ours until a worker encoded it, p50 / p99 | cores used, floor / ours |",
             "|---|---|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(latency.cells(row)) + " |" for row in lat["loads"]]
    idle = lat["idle"]
    first = {k: idle[k]["first_second"] for k in ("floor", "ours")}
    after = {k: idle[k]["after"] for k in ("floor", "ours")}
    lines += ["", f"After {idle['idle_seconds']:g} s idle, a {idle['rate']:,.0f} jobs/s stream: in its first "
              f"second ours p50 / p99 / max {first['ours']['p50_ms']} / {first['ours']['p99_ms']} / "
              f"{first['ours']['max_ms']} ms against the floor's {first['floor']['p50_ms']} / "
              f"{first['floor']['p99_ms']} / {first['floor']['max_ms']} ms; in the next two seconds "
              f"{after['ours']['p50_ms']} / {after['ours']['p99_ms']} / {after['ours']['max_ms']} against "
              f"{after['floor']['p50_ms']} / {after['floor']['p99_ms']} / {after['floor']['max_ms']} "
              f"(median of {len(idle['ours']['first_second']['rounds'])} rounds)" + _until_encoded(idle) + "."]
    return lines


def _runs(ratio: dict) -> str:
    return ", ".join(str(x) for x in ratio["per_run"])


def section(text: str) -> tuple[int, int]:
    begin = text.index("-->", text.index(BEGIN)) + 3
    return begin, text.index(END)


def main() -> None:
    text = README.read_text()
    begin, end = section(text)
    README.write_text(text[:begin] + "\n" + table() + "\n" + text[end:])
    print(f"updated {README}")


if __name__ == "__main__":
    main()
