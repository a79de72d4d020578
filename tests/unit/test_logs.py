"""Every log line names its role, slot and pid, as text or as JSON."""

import json
import logging
import os

import pytest

from kafka2sidekiq import logs


@pytest.fixture(autouse=True)
def restore_logging():
    handlers, level = logging.root.handlers[:], logging.root.level
    yield
    logging.root.handlers[:], logging.root.level = handlers, level


def test_json_lines_carry_role_slot_pid_and_errors(capsys):
    logs.configure("json", "worker", 3)
    logging.getLogger("kafka2sidekiq.worker").info("pushed %d jobs", 7)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("x").exception("failed")
    first, second = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert first["role"] == "worker" and first["slot"] == 3 and first["pid"] == os.getpid()
    assert first["message"] == "pushed 7 jobs" and first["level"] == "INFO"
    assert first["time"].endswith("Z")
    assert second["level"] == "ERROR" and "RuntimeError: boom" in second["error"]


def test_text_lines_carry_role_slot_pid(capsys):
    logs.configure("text", "worker", 1)
    logging.getLogger("a").warning("slow")
    logs.configure("text", "coordinator")
    logging.getLogger("b").info("joined")
    worker, coordinator = capsys.readouterr().err.splitlines()
    assert worker.endswith(f"WARNING worker-1[{os.getpid()}] slow")
    assert coordinator.endswith(f"INFO coordinator[{os.getpid()}] joined")


def test_librdkafka_repeats_are_held_back_and_counted(capsys):
    logs.configure("text", "coordinator")
    [installed] = logging.getLogger("librdkafka").filters  # what configure() put in every process
    assert isinstance(installed, logs.Repeats) and installed.window == 60
    clock = [0.0]
    installed.clock = lambda: clock[0]  # the test's clock, the process's own filter
    refused = "FAIL [consumer-1] [thrd:127.0.0.1:1/bootstrap]: Connect to ipv4#127.0.0.1:1 failed: Connection refused"
    for _ in range(200):  # ten seconds of a broker that is down
        logging.getLogger("librdkafka").error(refused)
        clock[0] += 0.05
    logging.getLogger("librdkafka").error("another line")
    logging.getLogger("kafka2sidekiq.supervisor").warning("worker 0 died")
    logging.getLogger("kafka2sidekiq.supervisor").warning("worker 0 died")  # ours are never held
    clock[0] = 61.0
    logging.getLogger("librdkafka").error(refused)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split("] ", 1)[1] for line in lines] == [
        refused, "another line", "worker 0 died", "worker 0 died", f"{refused} (199 more like it in the last 61 s)"]
