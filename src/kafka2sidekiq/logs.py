"""Log lines: text by default, one JSON object per line on request. Every line names the
role (supervisor, coordinator, worker), the worker slot and the pid, so that the lines
of a host's processes can be told apart in one stream. Nothing is logged per message."""

from __future__ import annotations

import logging
import time

import msgspec

FORMATS = ("text", "json")


class _Json(logging.Formatter):
    def __init__(self, role: str, slot: int | None) -> None:
        super().__init__()
        self.role, self.slot = role, slot

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                    + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "role": self.role,
            "slot": self.slot,
            "pid": record.process,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return msgspec.json.encode(line).decode()


def configure(fmt: str, role: str, slot: int | None = None) -> None:
    """Route every log record of this process to stderr in ``fmt``, tagged with ``role``
    and ``slot``. Called again in each forked child with its own role."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(_Json(role, slot))
    else:
        name = role if slot is None else f"{role}-{slot}"
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s {name}[%(process)d] %(message)s"))
    logging.root.handlers[:] = [handler]
    logging.root.setLevel(logging.INFO)
