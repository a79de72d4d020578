"""The README's benchmark table, made from the committed results (bench/results/*.json).

    python -m bench.readme    rewrite the table in README.md
"""

import json

from .common import RESULTS

README = RESULTS.parent.parent / "README.md"
BEGIN, END = "<!-- bench-table:begin", "<!-- bench-table:end"


def table() -> str:
    e2e = json.loads((RESULTS / "e2e.json").read_text())
    enc = json.loads((RESULTS / "encoder.json").read_text())
    m = e2e["machine"]
    small, large = enc["results"]["small"], enc["results"]["large"]
    ns = lambda r, k: f"{r['ns_per_job_median'][k]:,.0f}"  # noqa: E731
    return "\n".join([
        f"Machine: {m['cores']} cores, {m['cpu']}, {m['memory_gb']} GB (Kafka, Redis and the bridge share it); "
        f"git {e2e['git']} / {enc['git']}.",
        "",
        "| what | kafka2sidekiq | baseline | ratio |",
        "|---|---|---|---|",
        f"| end to end, {e2e['workers']} worker, {e2e['jobs']:,} jobs of ~177 B, jobs/s, median of {e2e['runs']} runs "
        f"([e2e.json](bench/results/e2e.json)) | {e2e['jobs_per_second_median']['kafka2sidekiq']:,} | "
        f"{e2e['jobs_per_second_median']['baseline']:,} (straightforward Python bridge) | "
        f"{e2e['kafka2sidekiq_over_baseline']}x (median of per-run ratios "
        f"{', '.join(str(r) for r in e2e['ratio_per_run'])}) |",
        f"| encoder, ~177 B job, ns/job, median of {enc['runs']} runs ([encoder.json](bench/results/encoder.json)) | "
        f"{ns(small, 'compiled')} | {ns(small, 'baseline')} (protobuf library + msgspec) | "
        f"{small['baseline_over_compiled']}x |",
        f"| encoder, ~4.3 KB job, ns/job | {ns(large, 'compiled')} | {ns(large, 'baseline')} | "
        f"{large['baseline_over_compiled']}x |",
    ])


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
