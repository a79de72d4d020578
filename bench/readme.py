"""The README's benchmark section, made from the committed results (bench/results/*.json).

    python -m bench.readme    rewrite the section in README.md
"""

import json

from .common import RESULTS

README = RESULTS.parent.parent / "README.md"
BEGIN, END = "<!-- bench-table:begin", "<!-- bench-table:end"
NAMES = {"python": "straightforward Python bridge", "push_bulk": "Sidekiq `push_bulk` (Ruby, no Kafka)"}


def _name(key: str) -> str:
    if key in NAMES:
        return NAMES[key]
    kind, count = key.rsplit("-", 1)
    if kind == "performed":
        return f"kafka2sidekiq, {count} worker(s), `K2S_COMMIT_ON=performed`"
    return f"**kafka2sidekiq, {count} worker(s)**" if kind == "ours" else f"raw-copy ceiling, {count} process(es)"


def table() -> str:
    suite = json.loads((RESULTS / "suite.json").read_text())
    enc = json.loads((RESULTS / "encoder.json").read_text())
    m = suite["machine"]
    best = f"ours-{max(suite['workers'])}"
    top = suite["throughput"][best]["jobs_per_second_median"]
    r = suite["ratios"]
    lines = [
        f"Machine: {m['cores']} cores, {m['cpu']}, {m['memory_gb']} GB; Kafka, Redis and the bridge share it. "
        f"git {suite['git']} ([suite.json](bench/results/suite.json)), {suite['jobs']:,} jobs of "
        f"{suite['job_bytes']} B, 8 partitions, median of {suite['runs']} interleaved runs.",
        "",
        "| contender | jobs/s | ours (most workers) ÷ it, of the medians | CPU s per M jobs | Redis peak MiB | RSS MiB, each process |",
        "|---|---|---|---|---|---|",
    ]
    for key, t in suite["throughput"].items():
        ratio = "" if key == best else f"{top / t['jobs_per_second_median']:.2f}x"
        lines.append(f"| {_name(key)} | {t['jobs_per_second_median']:,} | {ratio} | "
                     f"{t['cpu_seconds_per_million_median']} | {t['redis_peak_mib_median']} | "
                     f"{', '.join(map(str, t['rss_max_mib']))} |")
    lines += [
        "",
        f"Paired ratios (each run's contenders back to back), {max(suite['workers'])} workers: "
        f"**{r['ours_over_python']['median']}x** the Python bridge (runs: {_runs(r['ours_over_python'])}), "
        f"**{r['ours_over_push_bulk']['median']}x** Sidekiq `push_bulk` ({_runs(r['ours_over_push_bulk'])}), "
        f"**{r['ours_share_of_raw_copy']['median']:.0%}** of the raw-copy ceiling "
        f"({_runs(r['ours_share_of_raw_copy'])})" + (
            f"; `K2S_COMMIT_ON=performed` runs at **{r['performed_share_of_pushed']['median']:.0%}** of the "
            f"default ({_runs(r['performed_share_of_pushed'])})." if "performed_share_of_pushed" in r else "."),
        "",
        "| offered load (share of the maximum above) | jobs/s offered | jobs/s the producer managed | p50 ms | p99 ms | max ms |",
        "|---|---|---|---|---|---|",
    ]
    for row in suite["latency"]:
        lines.append(f"| {row['share_of_max']:.0%} | {row['offered_per_second']:,} | {row['sent_per_second']:,} | "
                     f"{row['p50_ms']} | "
                     f"{row['p99_ms']} | {row['max_ms']} |")
    sweep, n = suite["sweep"], max(suite["workers"])
    lines += [
        "",
        f"`K2S_BATCH_SIZE` sweep, {n} workers, jobs/s (how long each batch's `EXEC` held Redis): " + ", ".join(
            f"{size}: {v:,} ({sweep['redis_exec_ms'].get(size, '?')} ms)"
            for size, v in sweep["batch_size"][f"ours-{n}"].items()) + ".",
        "",
        "`K2S_BATCH_WAIT_MS` sweep (batch size 1000), jobs/s: " + ", ".join(
            f"{w} ms: {v:,}" for w, v in sweep["batch_wait_ms"].items()) + ".",
        "",
        "![throughput against batch size](bench/results/suite.png)",
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
