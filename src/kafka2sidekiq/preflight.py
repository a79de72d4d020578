"""Before anything starts: let librdkafka read the Kafka settings of every role.

``config.load`` checks the bridge's own settings; the ``K2S_KAFKA_*`` passthrough only
librdkafka can judge (is there such a key, does the value fit it, do the keys fit
together). Building a client with the exact config a role will use answers that without
contacting a broker: ``Consumer(cfg)`` / ``Producer(cfg)`` raise KafkaException on an
unknown key or a bad value. Done here, once, before anything forks, a bad setting is one
line and exit 78 instead of children that die at boot until the crash budget is spent.

The process that calls ``check`` (for ``run``, the supervisor-to-be) stays Kafka-free:
librdkafka is not fork-safe, so the clients are built in a short-lived forked child that
sends back the error in one line and leaves with ``os._exit``. The parent does not even
import confluent_kafka.
"""

from __future__ import annotations

import faulthandler
import os
import re
import select
import signal
import sys
import time
from typing import Mapping

from .config import KAFKA_PASSTHROUGH, SECRET, ConfigError, Settings, kafka_variable

PROBE_SECONDS = 10.0
MAX_ANSWER_BYTES = 4096

# librdkafka keys the bridge fills in from its own settings, so that an error about one
# of them names the variable the operator set.
FROM_SETTINGS = {
    "bootstrap.servers": "K2S_BOOTSTRAP_SERVERS",
    "group.id": "K2S_GROUP_ID",
    "group.instance.id": "K2S_INSTANCE_ID",
    "session.timeout.ms": "K2S_SESSION_TIMEOUT_MS",
    "queued.max.messages.kbytes": "K2S_QUEUED_MAX_KBYTES",
    "fetch.wait.max.ms": "K2S_BATCH_WAIT_MS",
    "fetch.queue.backoff.ms": "K2S_BATCH_WAIT_MS",
}


def check(settings: Settings, env: Mapping[str, str] | None = None, timeout: float = PROBE_SECONDS) -> None:
    """Return when librdkafka accepts the config of every role; otherwise raise
    ConfigError, one line naming the variable, the librdkafka key and librdkafka's reason."""
    env = dict(os.environ if env is None else env)
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        try:
            os.close(read_fd)
            _child(settings, env, write_fd)
        finally:
            os._exit(70)
    os.close(write_fd)
    try:
        answer, status = _collect(pid, read_fd, timeout)
    finally:
        os.close(read_fd)
    if status is None:
        raise ConfigError(f"{KAFKA_PASSTHROUGH}*: librdkafka did not finish reading the Kafka settings "
                          f"within {timeout:.0f} s")
    if answer:
        raise ConfigError(answer)
    if status != 0:
        how = (f"signal {signal.Signals(-status).name}" if status < 0 and -status in signal.valid_signals()
               else f"exit {status}")
        raise ConfigError(f"{KAFKA_PASSTHROUGH}*: librdkafka failed while reading the Kafka settings ({how})")


def _collect(pid: int, fd: int, timeout: float) -> tuple[str, int | None]:
    """The child's answer and exit status (None: it took longer than ``timeout`` and was killed)."""
    deadline = time.monotonic() + timeout
    data = b""
    for _ in range(MAX_ANSWER_BYTES + 2):  # every turn reads a byte at least, or ends
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            ready, _, _ = select.select([fd], [], [], left)
        except InterruptedError:
            continue
        if not ready:
            break
        chunk = os.read(fd, MAX_ANSWER_BYTES)
        if not chunk:  # end of file: the child is leaving
            break
        data = (data + chunk)[:MAX_ANSWER_BYTES]
    status = None
    while True:
        done, raw = os.waitpid(pid, os.WNOHANG)
        if done:
            status = os.waitstatus_to_exitcode(raw)
            break
        if time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            break
        time.sleep(0.01)
    return data.decode(errors="replace").strip(), status


def _child(settings: Settings, env: dict, fd: int) -> None:
    # librdkafka may print warnings itself (no logger here): the answer goes through the pipe only
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    faulthandler.disable()  # it may hold a copy of the parent's stderr (pytest's does)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        answer = probe(settings, env)
    except BaseException as exc:  # anything else: still one line
        answer = f"{KAFKA_PASSTHROUGH}*: the Kafka settings could not be checked: {type(exc).__name__}: {exc}"
    os.write(fd, " ".join((answer or "").split()).encode()[:MAX_ANSWER_BYTES])
    os.close(fd)
    os._exit(0)


def role_configs(settings: Settings) -> list[tuple[str, str, dict]]:
    """(role, kind, librdkafka config) of every client the bridge's processes build."""
    from .coordinator import consumer_config as coordinator_config
    from .source import admin_config, consumer_config as worker_config, producer_config

    return [("coordinator", "consumer", coordinator_config(settings)),
            ("worker", "consumer", worker_config(settings)),
            ("dead-letter", "producer", producer_config(settings)),
            ("watermark", "producer", admin_config(settings))]  # an admin client is a producer handle


def probe(settings: Settings, env: Mapping[str, str]) -> str | None:
    """Build (and close) each role's client; None, or the error line of the first that
    librdkafka refuses. Creates Kafka clients: call it only in a process that will not fork."""
    from confluent_kafka import Consumer, KafkaException, Producer

    for role, kind, cfg in role_configs(settings):
        cfg = {k: v for k, v in cfg.items() if k != "logger"}  # a Python logger needs polling; nothing to log
        try:
            client = (Consumer if kind == "consumer" else Producer)(cfg)
        except KafkaException as exc:
            error = exc.args[0]
            reason = error.str() if hasattr(error, "str") else str(error)
            return describe(reason, f"{role} {kind}", cfg, settings, env)
        if kind == "consumer":
            client.close()
        del client
    return None


def describe(reason: str, client: str, cfg: Mapping, settings: Settings, env: Mapping[str, str]) -> str:
    """librdkafka's ``reason`` as one line naming the variable behind the key it is about."""
    reason = " ".join(reason.split())
    keys = re.findall(r"[\"`']([A-Za-z0-9_.\-]+)[\"`']", reason)  # property names librdkafka quotes
    keys += [k for k in cfg if re.search(rf"(?<![\w.]){re.escape(k)}(?![\w.])", reason) and k not in keys]
    for key in keys:
        if key in settings.kafka:
            variable, value = kafka_variable(key, env), settings.kafka[key]
        elif key in FROM_SETTINGS and key in cfg:
            variable, value = FROM_SETTINGS[key], str(cfg[key])
        else:
            continue
        if SECRET.search(key):
            reason, value = reason.replace(value, "***") if value else reason, "***"
        return f"{variable}={value!r} (librdkafka {key}) is not valid: {reason}"
    for key, value in settings.kafka.items():  # a combination: hide secrets all the same
        if SECRET.search(key) and value:
            reason = reason.replace(value, "***")
    # the keys the reason mentions (say, "sasl.username and sasl.password must be set")
    mentioned = keys + re.findall(r"(?<![\w.])[a-z][a-z0-9]*(?:\.[a-z0-9]+)+(?![\w.])", reason)
    named = [FROM_SETTINGS[k] if k in FROM_SETTINGS and k not in settings.kafka else kafka_variable(k, env)
             for k in mentioned if re.fullmatch(r"[a-z][a-z0-9]*(\.[a-z0-9]+)+", k)]
    where = ", ".join(dict.fromkeys(named)) or f"{KAFKA_PASSTHROUGH}*"
    return f"{where}: librdkafka refused the settings of the {client}: {reason}"
