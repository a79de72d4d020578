"""The README's chart: throughput against K2S_BATCH_SIZE, ours against the baselines; and
beside it latency against offered load, ours against Kafka's own floor."""

from __future__ import annotations

from pathlib import Path

LABELS = {"push_bulk": "Sidekiq push_bulk (Ruby, no Kafka)"}
KINDS = {"ours": "kafka2sidekiq, {} workers", "python": "Python bridge, {} processes",
         "raw_copy": "raw copy in Python, {} processes", "ceiling": "strict ceiling, {} processes"}


def draw(results: dict, path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")  # no display
    import matplotlib.pyplot as plt

    loads = results.get("latency", {}).get("loads") if isinstance(results.get("latency"), dict) else None
    fig, axes = plt.subplots(1, 2 if loads else 1, figsize=(15 if loads else 8, 4.5), dpi=100, squeeze=False)
    throughput(axes[0][0], results)
    if loads:
        latency(axes[0][1], results["latency"])
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def throughput(ax, results: dict) -> None:
    for name, by_size in results["sweep"]["batch_size"].items():
        sizes = sorted(int(s) for s in by_size)
        kind, _, count = name.rpartition("-")
        label = LABELS.get(name) or KINDS.get(kind, kind + ", {}").format(count)
        ax.plot(sizes, [by_size[s if s in by_size else str(s)] for s in sizes], marker="o", label=label,
                linewidth=2.5 if name.startswith("ours") else 1.5)
    ax.axvline(results["defaults"]["batch_size"], color="grey", linestyle="--", linewidth=1)
    ax.annotate("default", (results["defaults"]["batch_size"], 0), textcoords="offset points", xytext=(4, 6),
                color="grey")
    ax.set_xscale("log")
    ax.set_xlabel("batch size (K2S_BATCH_SIZE; push_bulk: jobs per call)")
    ax.set_ylabel("jobs per second into Redis")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{results['jobs']:,} jobs of {results['job_bytes']} B, Kafka + Redis + bridge on one "
                 f"{results['machine']['cores']}-core machine", fontsize=10)


def latency(ax, lat: dict) -> None:
    rates = [row["offered_per_second"] for row in lat["loads"]]
    for sink, label, color in (("ours", "kafka2sidekiq (produce -> in Redis)", "tab:blue"),
                               ("floor", "Kafka's floor (produce -> consumed)", "tab:grey")):
        for q, style in (("p50", "-"), ("p99", "--")):
            ax.plot(rates, [row[sink][f"{q}_ms"] for row in lat["loads"]], style, marker="o", color=color,
                    label=f"{label}, {q}", linewidth=2.5 if sink == "ours" else 1.5)
    for row in lat["loads"]:
        ax.annotate(row["load"], (row["offered_per_second"], row["floor"]["p50_ms"] or 0),
                    textcoords="offset points", xytext=(0, -14), ha="center", fontsize=7, color="grey")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("offered load, jobs per second (shares: of the most N workers moved)")
    ax.set_ylabel("latency, ms")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"latency, {lat['workers']} workers against as many plain consumers "
                 f"(first second of each pass left out)", fontsize=10)
