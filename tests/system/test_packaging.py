"""The release as a user gets it: the sdist holds everything the build needs, and a wheel
built from that sdist alone (in build isolation, not from this work tree) installs
into a fresh virtualenv with the compiled encoder, the CLI and job.proto. The build is
deploy/build.sh's (the release fixture), the one the container image runs."""

import tarfile

import pytest

from helpers import REPO, run, user_env
from kafka2sidekiq import __version__

pytestmark = pytest.mark.timeout(600)


def test_the_sdist_holds_what_the_build_needs(release):
    (sdist,) = release[0].glob("*.tar.gz")
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


def test_the_fresh_venv_cli_answers_version_proto_and_middleware(release):
    _, venv = release
    cli = str(venv / "bin" / "kafka2sidekiq")
    assert run([cli, "--version"], env=user_env(), cwd=venv).stdout.strip() == f"kafka2sidekiq {__version__}"
    proto = run([cli, "proto"], env=user_env(), cwd=venv).stdout.strip()
    assert proto.startswith(str(venv)) and proto.endswith("job.proto")
    with open(proto) as f:
        assert "message Job" in f.read()
    rb = run([cli, "middleware"], env=user_env(), cwd=venv).stdout.strip()
    assert rb.startswith(str(venv)) and rb.endswith("kafka2sidekiq_performed.rb")
    with open(rb) as f:
        assert "class Performed" in f.read()
