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
