"""`scripts/run --demo` as the README tells a newcomer to try it: the bridge on the local
services and a tiny Sidekiq app (ruby/demo.rb, Debian's Sidekiq) that performs the jobs sent
through Kafka and logs each, in one terminal; Ctrl-C stops everything it started. The
commands are the README's own; only the topic and group are the test's."""

import os
import re
import shutil
import signal
import subprocess
import uuid

import psutil
import pytest

from helpers import REPO, run, wait_for

pytestmark = pytest.mark.skipif(shutil.which("sidekiq") is None, reason="ruby-sidekiq not installed")


def try_it() -> tuple[str, str]:
    """The README's "Try it": the first terminal's command and the second terminal's lines."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("Try it:"):]
    first = re.match(r"Try it: `([^`]+)` in one terminal", section).group(1)
    second = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    return first, second


def performed(log_path, args: str) -> bool:
    return f"HardJob performed: args={args}" in log_path.read_text(errors="replace")


def test_the_demo_performs_jobs_in_ruby_and_stops_on_ctrl_c(services, redis_url, tmp_path):
    first, second = try_it()
    assert first == "scripts/run --demo" and "kafka2sidekiq produce --class HardJob" in second
    # the test services (found running, by K2S_LOCAL_*_PORT); a topic and group of its own
    env = {k: v for k, v in os.environ.items() if k not in ("K2S_BOOTSTRAP_SERVERS", "K2S_REDIS_URL")}
    env.update(K2S_TOPIC=f"demo-{uuid.uuid4().hex[:8]}", K2S_GROUP_ID=f"g-demo-{uuid.uuid4().hex[:8]}")
    log = tmp_path / "terminal.log"
    with open(log, "wb") as out:
        # a session of its own: the process group a terminal sends Ctrl-C to
        demo = subprocess.Popen(["bash", "-c", first], cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    started = []
    try:
        wait_for(lambda: performed(log, '["hello from scripts/run --demo"]'), 120, "the demo's own job in Ruby")
        started = psutil.Process(demo.pid).children(recursive=True)
        names = " ".join(" ".join(p.cmdline()) for p in started)
        assert "sidekiq" in names and "kafka2sidekiq supervisor" in names, names  # its process title
        run(["bash", "-euc", second], cwd=REPO, env=env, timeout=60)  # the other terminal
        wait_for(lambda: performed(log, '[1,"two"]'), 60, "the README's job performed in Ruby")
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C
            try:
                demo.wait(60)
            except subprocess.TimeoutExpired:
                for proc in [psutil.Process(demo.pid), *started]:
                    proc.kill()
                raise
    text = log.read_text(errors="replace")
    assert demo.returncode == 0, text[-3000:]
    assert "stopped (exit 0)" in text and "Bye!" in text, text[-3000:]  # the bridge's and Sidekiq's last words
    left = [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert left == [], f"still running after Ctrl-C: {left}"


def test_the_demo_refuses_services_other_than_the_local_ones():
    """Its Sidekiq performs whatever is queued in 'default': never on someone's real Redis."""
    env = {**os.environ, "K2S_REDIS_URL": "redis://:secret@redis.internal:6379/0"}
    out = subprocess.run([str(REPO / "scripts" / "run"), "--demo"], env=env, capture_output=True, text=True,
                         timeout=30, stdin=subprocess.DEVNULL)
    assert out.returncode == 2 and out.stdout == "" and len(out.stderr.splitlines()) == 1, out.stderr
    assert "unset K2S_BOOTSTRAP_SERVERS and K2S_REDIS_URL" in out.stderr and "secret" not in out.stderr
