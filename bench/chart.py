"""The README's chart: throughput against K2S_BATCH_SIZE, ours against the baselines."""

from __future__ import annotations

from pathlib import Path


def draw(results: dict, path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")  # no display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    labels = {"python": "Python bridge (baseline)", "push_bulk": "Sidekiq push_bulk (Ruby, no Kafka)"}
    for name, by_size in results["sweep"]["batch_size"].items():
        sizes = sorted(int(s) for s in by_size)
        label = labels.get(name) or (f"kafka2sidekiq, {name.split('-')[1]} workers" if name.startswith("ours")
                                     else f"raw copy ceiling, {name.split('-')[1]} processes")
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
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
