"""What every benchmark records beside its figures: machine, versions, git sha."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from importlib import metadata
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def git_sha() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             check=True, cwd=RESULTS.parent).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src", "ext"], capture_output=True,
                               text=True, cwd=RESULTS.parent).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> dict:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import psutil
    return {"cpu": model, "cores": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "kernel": platform.release(), "python": platform.python_version()}


def versions() -> dict:
    out = {}
    for dist in ("kafka2sidekiq", "confluent-kafka", "redis", "hiredis", "msgspec", "protobuf", "Cython"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    try:
        import confluent_kafka
        out["librdkafka"] = confluent_kafka.libversion()[0]
    except ImportError:
        pass
    return out


def write(name: str, results: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    doc = {"benchmark": name, "git": git_sha(), "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "machine": machine(), "versions": versions(), **results}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    return path


def median(values: list[float]) -> float:
    return statistics.median(values)
