"""The default number of workers: the CPUs this process may use, from fake /proc and
/sys trees (cgroup v2 and v1, inside a container and not)."""

from pathlib import Path

from kafka2sidekiq import config, cpus

V2_MOUNT = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
V1_MOUNTS = ("31 23 0:28 / /sys/fs/cgroup ro - tmpfs tmpfs ro,mode=755\n"
             "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
             "33 31 0:30 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n")


def tree(root: Path, mountinfo: str, cgroup: str, files: dict[str, str]) -> Path:
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/mountinfo").write_text(mountinfo)
    (root / "proc/self/cgroup").write_text(cgroup)
    for name, text in files.items():
        path = root / name.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_v2_container_limited_to_one_cpu(tmp_path):
    root = tree(tmp_path, V2_MOUNT, "0::/\n", {"/sys/fs/cgroup/cpu.max": "100000 100000\n"})
    assert cpus.available(root, affinity=16) == 1


def test_v2_quota_rounds_up_and_affinity_can_be_lower(tmp_path):
    root = tree(tmp_path, V2_MOUNT, "0::/\n", {"/sys/fs/cgroup/cpu.max": "150000 100000\n"})
    assert cpus.available(root, affinity=16) == 2  # 1.5 CPUs
    assert cpus.available(root, affinity=1) == 1    # pinned to one CPU


def test_v2_limit_of_a_parent_cgroup_applies(tmp_path):
    files = {"/sys/fs/cgroup/kubepods/cpu.max": "300000 100000\n",
             "/sys/fs/cgroup/kubepods/pod1/cpu.max": "max 100000\n",
             "/sys/fs/cgroup/kubepods/pod1/app/cpu.max": "max 100000\n"}
    root = tree(tmp_path, V2_MOUNT, "0::/kubepods/pod1/app\n", files)
    assert cpus.available(root, affinity=64) == 3


def test_v2_without_a_quota_is_the_affinity(tmp_path):
    root = tree(tmp_path, V2_MOUNT, "0::/\n", {"/sys/fs/cgroup/cpu.max": "max 100000\n"})
    assert cpus.available(root, affinity=6) == 6


def test_v1_cpu_quota(tmp_path):
    files = {"/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "50000\n",
             "/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
             "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "-1\n",
             "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n"}
    root = tree(tmp_path, V1_MOUNTS, "4:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n", files)
    assert cpus.available(root, affinity=8) == 1  # half a CPU: still one worker


def test_v1_without_a_quota_and_no_cgroup_files_at_all(tmp_path):
    files = {"/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "-1\n",
             "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n"}
    root = tree(tmp_path / "a", V1_MOUNTS, "2:cpu,cpuacct:/\n", files)
    assert cpus.available(root, affinity=4) == 4
    assert cpus.available(tmp_path / "nothing", affinity=3) == 3


def test_workers_default_is_auto_and_a_number_still_wins(monkeypatch):
    monkeypatch.setattr(cpus, "available", lambda: 3)
    assert config.load({}).workers == 3
    assert config.load({"K2S_WORKERS": "auto"}).workers == 3
    assert config.load({"K2S_WORKERS": "7"}).workers == 7
