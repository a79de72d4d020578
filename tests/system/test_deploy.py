"""The deploy kit in deploy/: the container's build script (run for real by the release
fixture, whose venv tests/system/test_packaging.py checks), the Dockerfile, the systemd
unit (systemd-analyze verify) and the Kubernetes manifest, each held to the bridge's own
settings (kafka2sidekiq.config), not to numbers copied here. No docker daemon is assumed:
the image's build steps are deploy/build.sh."""

import re
import shutil
import subprocess
import sys
import tarfile

import pytest
import yaml

from helpers import REPO, user_env
from kafka2sidekiq import __version__, config

DEPLOY = REPO / "deploy"
PREFIX = "/opt/kafka2sidekiq"


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's stages, each a list of (INSTRUCTION, arguments), continuations joined."""
    text = re.sub(r"\\\n\s*", " ", (DEPLOY / "Dockerfile").read_text())
    stages = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            op, _, args = line.strip().partition(" ")
            if op.upper() == "FROM":
                stages.append([])
            stages[-1].append((op.upper(), args.strip()))
    return stages


def test_the_build_script_refuses_an_existing_prefix(tmp_path):
    out = subprocess.run([str(DEPLOY / "build.sh"), str(tmp_path)], capture_output=True, text=True,
                         timeout=30, env=user_env(PYTHON=sys.executable))
    assert out.returncode == 1 and out.stderr == f"deploy/build.sh: {tmp_path} already exists; give a new path\n"


def test_the_image_builds_with_the_script_and_runs_as_a_user_on_the_http_port(release):
    build, final = dockerfile_stages()
    assert ("RUN", f"PIP_NO_CACHE_DIR=1 deploy/build.sh {PREFIX}") in build
    # the build stage has every file the sdist is made of (else the image's sdist lacks it)
    copied = {src for op, args in build if op == "COPY" for src in args.split()[:-1]}
    (sdist,) = release[0].glob("*.tar.gz")
    with tarfile.open(sdist) as tar:
        top = {n.split("/")[1] for n in tar.getnames() if n.count("/") >= 1}
    generated = {"PKG-INFO", "setup.cfg"}
    assert sorted(top - copied - generated) == []
    final = dict(final)  # one of each instruction in the final stage
    assert final["COPY"] == f"--from=build {PREFIX} {PREFIX}"
    uid = final["USER"].split(":")[0]
    assert uid.isdigit() and int(uid) != 0  # numeric: Kubernetes' runAsNonRoot can check it
    env = dict(kv.split("=", 1) for kv in final["ENV"].split())
    assert env["PATH"].startswith(f"{PREFIX}/bin:")
    settings = config.load({"K2S_HTTP": env["K2S_HTTP"]})
    assert settings.http == ("0.0.0.0", 9394) and final["EXPOSE"] == str(settings.http[1])
    assert final["ENTRYPOINT"] == '["kafka2sidekiq"]' and final["CMD"] == '["run"]'
    assert f"127.0.0.1:{settings.http[1]}/healthz" in final["HEALTHCHECK"]


def unit_options() -> dict[str, str]:
    options = {}
    for line in (DEPLOY / "kafka2sidekiq.service").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            options[key] = value
    return options


def test_the_systemd_unit_verifies_and_outlasts_the_graceful_deadline(release, tmp_path):
    _, venv = release
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: scripts/bootstrap installs Debian's systemd"
    # verify checks that ExecStart exists: point it at the venv deploy/build.sh made
    unit = tmp_path / "kafka2sidekiq.service"
    unit.write_text((DEPLOY / "kafka2sidekiq.service").read_text().replace(PREFIX, str(venv)))
    out = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert (out.returncode, out.stdout + out.stderr) == (0, "")  # warnings, too, are failures
    options = unit_options()
    assert options["ExecStart"] == f"{PREFIX}/bin/kafka2sidekiq run"
    assert options["KillSignal"] == "SIGTERM" and options["KillMode"] == "mixed"  # TERM to the supervisor
    assert int(options["TimeoutStopSec"]) > config.load({}).graceful_seconds
    assert options["Restart"] == "on-failure" and "78" in options["RestartPreventExitStatus"].split()
    assert options["User"] not in ("", "root") and options["EnvironmentFile"].startswith("/etc/")


def test_the_kubernetes_manifest_matches_the_settings():
    docs = {d["kind"]: d for d in yaml.safe_load_all((DEPLOY / "kubernetes.yaml").read_text())}
    pod = docs["StatefulSet"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["K2S_INSTANCE_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    settings = config.load({name: e["value"] for name, e in env.items() if "value" in e})
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert settings.http == ("0.0.0.0", ports["http"])
    live, ready = container["livenessProbe"], container["readinessProbe"]
    assert live["httpGet"] == {"path": "/healthz", "port": "http"}
    assert ready["httpGet"] == {"path": "/readyz", "port": "http"}
    for probe in (live, ready):
        assert probe["timeoutSeconds"] <= probe["periodSeconds"]
    # the supervisor replaces a stalled child itself (liveness_seconds) and a child may take
    # boot_seconds to boot: the kubelet restarts the pod only when that did not heal it
    assert live["periodSeconds"] * live["failureThreshold"] > settings.liveness_seconds + settings.boot_seconds
    assert pod["terminationGracePeriodSeconds"] > settings.graceful_seconds
    assert container["args"] == ["run"] and container["image"].endswith(f":{__version__}")
    user = dict(dockerfile_stages()[-1])["USER"].split(":")[0]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == int(user)
    service = docs["Service"]["spec"]
    assert service["ports"][0]["targetPort"] == "http" and docs["StatefulSet"]["spec"]["serviceName"] \
        == docs["Service"]["metadata"]["name"]


@pytest.mark.parametrize("path", ["Dockerfile", "kubernetes.yaml", "kafka2sidekiq.service"])
def test_the_readme_points_at_each_file(path):
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Deploying"):]
    assert f"deploy/{path}" in section[:section.index("\n## ", 1)]
