"""Shared fixtures. Tiers by folder: unit (no servers), integration (real Kafka + Redis),
system (whole processes). The servers are the test instance of scripts/services.py
(ports 29092/26379 unless K2S_LOCAL_*_PORT say otherwise): started here when
scripts/test has not started them, and then stopped here too."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SEED = int(os.environ.get("K2S_TEST_SEED", "20261125"))

os.environ.setdefault("K2S_SERVICES_NAME", "test")
os.environ.setdefault("K2S_LOCAL_KAFKA_PORT", "29092")
os.environ.setdefault("K2S_LOCAL_REDIS_PORT", "26379")


def pytest_addoption(parser):
    parser.addoption("--soak-minutes", type=float, default=2.0, metavar="MINUTES",
                     help="how long tests/system/test_soak.py runs the bridge under load and kills "
                          "(default 2, what CI runs; longer by hand)")


def pytest_report_header(config):
    return f"kafka2sidekiq: random seed {SEED} (set K2S_TEST_SEED to replay)"


def _services(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "services.py"), *args],
                          capture_output=True, text=True)


@pytest.fixture(scope="session")
def services():
    """(bootstrap servers, redis url) of the running test services."""
    started = _services("status").returncode != 0
    if started:
        up = _services("up")
        if up.returncode != 0:
            pytest.fail(f"could not start the local services:\n{up.stdout}{up.stderr}")
    kafka = f"127.0.0.1:{os.environ['K2S_LOCAL_KAFKA_PORT']}"
    redis_url = f"redis://127.0.0.1:{os.environ['K2S_LOCAL_REDIS_PORT']}/0"
    yield kafka, redis_url
    if started:
        _services("down")


@pytest.fixture(scope="session")
def bootstrap(services):
    return services[0]


@pytest.fixture
def redis_url(services):
    """A clean database on the test Redis, which the test harness created itself."""
    import redis

    name = os.environ.get("K2S_SERVICES_NAME", "test")  # where scripts/services.py keeps its state
    pid_file = Path(os.environ.get("K2S_SERVICES_DIR", REPO / ".k2s" / name)) / "redis.pid"
    client = redis.Redis.from_url(services[1])
    if str(client.info("server")["process_id"]) != pid_file.read_text().strip():
        pytest.fail("the Redis on the test port was not started by scripts/services.py; "
                    "refusing to flush it")
    client.flushdb()
    client.close()
    return services[1]


@pytest.fixture
def redis_client(redis_url):
    import redis

    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def make_topic(bootstrap):
    """Create a fresh topic: make_topic(partitions=8) -> name."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})

    def make(partitions: int = 8, name: str | None = None) -> str:
        name = name or f"t-{uuid.uuid4().hex[:12]}"
        futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
        futures[name].result(timeout=30)
        return name

    return make


@pytest.fixture
def cleanup():
    """cleanup(bridge): when the test ends, kill whatever the bridge left (its children first)."""
    from helpers import children

    bridges = []
    yield bridges.append
    for bridge in bridges:
        for child in children(bridge):
            child.kill()
        bridge.kill()


@pytest.fixture(scope="session")
def release(tmp_path_factory):
    """(dist folder, venv) made by deploy/build.sh from a checkout of this tree: the sdist, a
    wheel built from that sdist alone, a fresh venv with it. Built once per session."""
    from helpers import run, user_env

    tmp = tmp_path_factory.mktemp("release")
    # what git would commit, and no build leftovers (an egg-info's SOURCES.txt, a generated
    # .c) that could make a broken MANIFEST.in look right
    files = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO).stdout
    for name in filter(None, files.split("\0")):
        if (REPO / name).is_file():
            (tmp / "src" / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, tmp / "src" / name)
    start = time.monotonic()
    run([str(tmp / "src" / "deploy" / "build.sh"), str(tmp / "venv"), str(tmp / "dist")],
        env=user_env(PYTHON=sys.executable))
    print(f"deploy/build.sh: sdist -> wheel -> fresh venv in {time.monotonic() - start:.1f}s")
    return tmp / "dist", tmp / "venv"
