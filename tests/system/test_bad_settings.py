"""A bad setting stops every command before it does anything: exactly one line on stderr
naming the variable, exit 78, no traceback, within 5 s; ``run`` forks no child at all.

Each command runs as a real process (``python -m kafka2sidekiq …``) against the test
services, but none of them may reach Kafka or Redis: the settings are refused first."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from helpers import REPO, bridge_env

LIMIT_SECONDS = 5.0
KILL_AFTER_SECONDS = 15.0  # a command that does not stop on its own is killed (with its children)

BAD = {  # id: (setting, value, what the line must name)
    "unknown-librdkafka-key": ("kafka_not_a_setting", "1", "K2S_KAFKA_NOT_A_SETTING"),
    "bad-librdkafka-value": ("kafka_security_protocol", "nonsense", "K2S_KAFKA_SECURITY_PROTOCOL"),
    "redis-port-not-a-number": ("redis_url", "redis://127.0.0.1:notaport/0", "K2S_REDIS_URL"),
    "broker-port-not-a-number": ("bootstrap_servers", "127.0.0.1:notaport", "K2S_BOOTSTRAP_SERVERS"),
    "bad-log-format": ("log_format", "xml", "K2S_LOG_FORMAT"),
}

COMMANDS = {
    "run": ["run"],
    "check": ["check"],
    "push": ["push", "--class", "X", "--queue", "k2s-bad-settings"],
    "produce": ["produce", "--class", "X"],
    "dlq-list": ["dlq", "list"],
    "dlq-replay": ["dlq", "replay", "--dry-run"],
    "worker": ["worker", "--partitions", "0"],
}

# What the supervisor logs as it starts (supervisor.py): none of it may appear.
STARTED = ("supervisor: started", "started worker", "started coordinator", "worker(s), topic")


def _run(env: dict, *args: str) -> tuple[int, str, str, float]:
    """(exit code, stdout, stderr, seconds) of one command; killed, whole process group and
    all, when it outlives KILL_AFTER_SECONDS."""
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "kafka2sidekiq", *args], env=env, cwd=REPO,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=KILL_AFTER_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=10)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # a child the command left behind
        except ProcessLookupError:
            pass
    return proc.returncode, out, err, time.monotonic() - started


@pytest.fixture
def env_of(services):
    """bridge_env for the test services. The Redis database is one no other test uses (and
    nothing may be written into it): this test never flushes the shared Redis."""
    bootstrap, redis_url = services

    def make(**settings: str) -> dict:
        env = bridge_env(bootstrap, redis_url.rsplit("/", 1)[0] + "/15", "k2s-bad-settings")
        env.update({f"K2S_{k.upper()}": v for k, v in settings.items()})
        return env

    return make


@pytest.mark.parametrize("command", COMMANDS, ids=list(COMMANDS))
@pytest.mark.parametrize("bad", BAD, ids=list(BAD))
def test_a_bad_setting_is_one_line_and_exit_78(env_of, bad, command):
    name, value, variable = BAD[bad]
    code, out, err, seconds = _run(env_of(**{name: value}), *COMMANDS[command])
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 78, f"exit {code} after {seconds:.1f}s; stderr:\n{err[-3000:]}"
    assert "Traceback" not in err + out, err[-3000:]
    assert len(lines) == 1 and len(err.strip().splitlines()) == 1, f"not one line:\n{err[-3000:]}"
    assert variable in lines[0], lines[0]
    assert lines[0].startswith("kafka2sidekiq: "), lines[0]
    assert seconds < LIMIT_SECONDS, f"took {seconds:.1f}s"
    if command == "run":
        assert not any(s in out + err for s in STARTED), f"a child was started:\n{out}{err}"
        assert out == "", f"the bridge announced itself before its settings were checked:\n{out}"


@pytest.mark.parametrize("command", ["run", "worker"])
def test_run_forks_nothing_for_a_bad_kafka_setting(env_of, command):
    """No respawns: the supervisor never starts, so it never gives up with exit 4 either."""
    args = COMMANDS[command]
    code, out, err, seconds = _run(env_of(kafka_not_a_setting="1", crash_budget="5"), *args)
    assert code == 78 and seconds < LIMIT_SECONDS, (code, seconds, err[-3000:])
    assert err.strip() == ("kafka2sidekiq: K2S_KAFKA_NOT_A_SETTING='1' (librdkafka not.a.setting) is not "
                           "valid: No such configuration property: \"not.a.setting\"")
    assert "restarting" not in out + err and "crash" not in out + err


def test_the_password_of_a_bad_redis_url_is_not_shown(env_of):
    code, out, err, _ = _run(env_of(redis_url="redis://bridge:hunter2@127.0.0.1:notaport/0"), "check")
    assert code == 78 and "hunter2" not in out + err and "bridge:***@" in err


def test_an_unknown_name_is_a_warning_with_the_nearest_name(env_of):
    """check only reads Kafka and Redis: the warning comes first, then the command runs."""
    code, out, err, _ = _run(env_of(batch_siz="3"), "check")
    assert code != 78, err[-3000:]
    warnings = [line for line in err.splitlines() if "K2S_BATCH_SIZ " in line]
    assert len(warnings) == 1 and "did you mean K2S_BATCH_SIZE?" in warnings[0], err[-3000:]
    assert "Traceback" not in err
