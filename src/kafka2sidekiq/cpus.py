"""How many CPUs this process may use: the default number of workers.

``os.cpu_count()`` is the host's count. A container limited to one CPU (a cgroup CPU
quota: Docker's ``--cpus``, a Kubernetes CPU limit) or a process pinned to some CPUs
(``taskset``, a cpuset) gets fewer. So: the CPUs of the affinity mask, lowered to the
cgroup quota (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``) of this
process's cgroup and of every cgroup above it, rounded up (1.5 CPUs: 2 workers, as Java
and .NET count them), at least 1.

Read when the settings are loaded, not at import. ``root`` lets a test hand it a fake
``/proc`` and ``/sys``."""

from __future__ import annotations

import math
import os
from pathlib import Path


def available(root: str | Path = "/", affinity: int | None = None) -> int:
    if affinity is None:
        try:
            affinity = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):  # not Linux
            affinity = os.cpu_count() or 1
    quota = cgroup_quota(Path(root))
    cpus = affinity if quota is None else min(affinity, math.ceil(quota - 1e-9))
    return max(1, cpus)


def cgroup_quota(root: Path) -> float | None:
    """The tightest CPU quota, in CPUs, over this process's cgroups (None: no quota)."""
    try:
        mounts = (root / "proc/self/mountinfo").read_text().splitlines()
        groups = (root / "proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    quotas = []
    for directory, top, version in _cpu_cgroups(root, mounts, groups):
        while True:
            limit = _limit(directory, version)
            if limit is not None:
                quotas.append(limit)
            if directory == top or top not in directory.parents:
                break
            directory = directory.parent
    return min(quotas) if quotas else None


def _cpu_cgroups(root: Path, mounts: list[str], groups: list[str]):
    """(cgroup directory, its mount point, 1 or 2) of each hierarchy with the cpu controller."""
    paths = {}  # "2" or a v1 controller -> this process's cgroup path
    for line in groups:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            paths["2"] = path
        for controller in controllers.split(","):
            paths[controller] = path
    for line in mounts:
        fields = line.split()
        if "-" not in fields:
            continue
        dash = fields.index("-")
        mount_root, point, fstype, options = fields[3], fields[4], fields[dash + 1], fields[dash + 3]
        if fstype == "cgroup2" and "2" in paths:
            path, version = paths["2"], 2
        elif fstype == "cgroup" and "cpu" in options.split(",") and "cpu" in paths:
            path, version = paths["cpu"], 1
        else:
            continue
        if not (path == mount_root or path.startswith(mount_root.rstrip("/") + "/")):
            continue  # our cgroup is outside what this mount shows
        relative = path[len(mount_root.rstrip("/")):].lstrip("/")
        top = root / point.lstrip("/")
        yield (top / relative if relative else top), top, version


def _limit(directory: Path, version: int) -> float | None:
    try:
        if version == 2:
            quota, _, period = (directory / "cpu.max").read_text().partition(" ")
            if quota.strip() == "max":
                return None
            return int(quota) / int(period)
        quota = int((directory / "cpu.cfs_quota_us").read_text())
        period = int((directory / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None
