"""Log lines: text by default, one JSON object per line on request. Every line names the
role (supervisor, coordinator, worker), the worker slot and the pid, so that the lines
of a host's processes can be told apart in one stream. Nothing is logged per message.

librdkafka repeats itself: with a broker down, its consumer logs the same refused
connection about 20 times a second. Its lines pass through ``Repeats``: each distinct
line once a minute, then with a count of the copies held back."""

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


class Repeats(logging.Filter):
    """Let a line through at most once per ``window`` seconds; the next copy that gets
    through says how many were held back in between."""

    MAX_LINES = 1000  # distinct lines remembered; the oldest are forgotten first

    def __init__(self, window: float = 60.0, clock=time.monotonic) -> None:
        super().__init__()
        self.window, self.clock = window, clock
        self.seen: dict[str, list] = {}  # line -> [when last let through, copies held back]

    def filter(self, record: logging.LogRecord) -> bool:
        text, now = record.getMessage(), self.clock()
        entry = self.seen.get(text)
        if entry is not None and now - entry[0] < self.window:
            entry[1] += 1
            return False
        if entry is not None and entry[1]:
            record.msg, record.args = f"{text} ({entry[1]} more like it in the last {now - entry[0]:.0f} s)", None
        self.seen.pop(text, None)
        self.seen[text] = [now, 0]
        if len(self.seen) > self.MAX_LINES:
            del self.seen[next(iter(self.seen))]
        return True


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
    logging.getLogger("librdkafka").filters[:] = [Repeats()]
