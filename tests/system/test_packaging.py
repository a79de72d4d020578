"""The release as a user gets it: the sdist holds everything the build needs, and a wheel
built from that sdist alone (in pip's build isolation, not from this work tree) installs
into a fresh virtualenv with the compiled encoder, the CLI and job.proto."""

import os
import shutil
import subprocess
import sys
import tarfile
import time

import pytest

from kafka2sidekiq import __version__
from helpers import REPO

pytestmark = pytest.mark.timeout(600)


def run(argv, **kw):
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300, **kw)
    assert out.returncode == 0, f"{argv} exited {out.returncode}:\n{out.stdout[-3000:]}{out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """(sdist path, fresh venv) built the way a release is: sdist, then a wheel from it."""
    tmp = tmp_path_factory.mktemp("release")
    start = time.monotonic()
    # a checkout of this tree: what git would commit, no build leftovers (an egg-info's
    # SOURCES.txt or a generated .c) that could make a broken MANIFEST.in look right
    files = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO).stdout
    for name in filter(None, files.split("\0")):
        if (REPO / name).is_file():
            (tmp / "src" / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, tmp / "src" / name)
    run([sys.executable, "-m", "build", "--sdist", "--outdir", str(tmp / "dist"), str(tmp / "src")])
    (sdist,) = (tmp / "dist").glob("*.tar.gz")
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp / "dist"), str(sdist)])
    (wheel,) = (tmp / "dist").glob("*.whl")
    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q", str(wheel)])
    print(f"sdist -> wheel -> fresh venv: {time.monotonic() - start:.1f}s")
    return sdist, venv


def user_env():
    """What a user's shell has: none of this work tree's settings or import paths."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("K2S_", "PYTHON"))}


def test_the_sdist_holds_what_the_build_needs(release):
    sdist, _ = release
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    tracked = run(["git", "ls-files", "ext", "*.proto"], cwd=REPO).stdout.split()
    needed = {*tracked, "README.md", "LICENSE", "CHANGELOG.md", "pyproject.toml", "setup.py"}
    assert any(n.endswith(".pyx") for n in tracked) and any(n.endswith(".proto") for n in tracked)
    assert sorted(needed - names) == []
    # generated C would be used as is by a build where it is newer than the .pyx
    assert [n for n in names if n.startswith("ext/") and n.endswith(".c")] == []


def test_the_fresh_venv_runs_the_compiled_encoder(release):
    _, venv = release
    probe = ("from kafka2sidekiq import encoder; m = encoder.select('fast'); "
             "print(m.__file__); print(encoder.describe(m))")
    # -I: only the venv's own site-packages, never this work tree's src/
    out = run([str(venv / "bin" / "python"), "-I", "-c", probe], env=user_env(), cwd=venv)
    path, described = out.stdout.splitlines()
    assert path.startswith(str(venv)) and path.endswith(".so"), path
    assert described.startswith("compiled"), described


def test_the_fresh_venv_cli_answers_version_and_proto(release):
    _, venv = release
    cli = str(venv / "bin" / "kafka2sidekiq")
    assert run([cli, "--version"], env=user_env(), cwd=venv).stdout.strip() == f"kafka2sidekiq {__version__}"
    proto = run([cli, "proto"], env=user_env(), cwd=venv).stdout.strip()
    assert proto.startswith(str(venv)) and proto.endswith("job.proto")
    with open(proto) as f:
        assert "message Job" in f.read()
