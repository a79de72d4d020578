"""What both encoder twins share: the rejection reasons, the limits, the options and the
Batch they return (kafka2sidekiq._encoder_py, the reference, and kafka2sidekiq._encoder_c, the
compiled one, import them from here; shared/sidekiq-format.md has the facts behind them)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .sidekiq import RESERVED_KEYS, TIMESTAMPS_FLOAT, TIMESTAMPS_MS

# Rejection reasons: stable codes, written to the dead-letter topic and metrics.
# The compiled encoder returns indexes into this tuple; never reorder, only append.
REASONS = (
    "too_large",           # the value is larger than max_message_bytes
    "not_protobuf",        # not a well-formed Job message
    "missing_class",       # job_class is empty
    "bad_class",           # job_class is not a Ruby constant path
    "class_not_allowed",   # job_class (or wrapped) is not on the class allow-list
    "bad_wrapped",         # wrapped is not a Ruby constant path
    "bad_queue",           # queue has a character outside the allowed set, or is too long
    "queue_not_allowed",   # queue is not on the queue allow-list
    "bad_args",            # args_json is not a UTF-8 JSON array
    "bad_extra",           # extra_json is not a UTF-8 JSON object
    "reserved_extra_key",  # extra_json repeats a key the bridge writes itself
    "bad_at",              # at is not finite, or beyond MAX_EPOCH_SECONDS
    "bad_created_at",      # created_at is not finite, negative or beyond MAX_EPOCH_SECONDS
    "duplicate_extra_key",  # extra_json has a top-level key twice
    "bad_tags",            # extra_json's tags is not an array (Sidekiq: "Job tags must be an Array")
    "bad_retry_for",       # extra_json's retry_for is not an integer of at most 1,000,000,000
    "bad_framing",         # K2S_WIRE_FORMAT=confluent, and the value is not Schema Registry framed
    "schema_not_allowed",  # framed with a schema id that is not on the allow-list
)

WIRE_FORMATS = ("auto", "plain", "confluent")
TRACE_HEADERS = ("traceparent", "tracestate")
MAX_TRACE_VALUE = 512  # bytes of one trace header's value (W3C: tracestate up to 512)

MAX_NAME_BYTES = 255            # job_class, wrapped and queue
# Ruby's JSON reads and writes a job nested at most 100 deep (JSON::NestingError beyond):
# args sit one level down in it, extra keys at its top.
MAX_ARGS_DEPTH = 99
MAX_EXTRA_DEPTH = 100
MAX_RETRY_FOR = 1_000_000_000   # Sidekiq 7.1.3+: "retry_for must be a relative amount of time"
MAX_EPOCH_SECONDS = 1e10        # 2286-11-20: larger is almost surely milliseconds

# Printable ASCII without space, '"', ',' (Sidekiq's "name,weight") and '\': a queue
# name never needs JSON escaping.
_QUEUE = re.compile(rb"[!#-+\--\[\]-~]+\Z")
_TRACE_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")


def parse_schema_ids(raw: str) -> frozenset[int] | None:
    """K2S_SCHEMA_IDS: '1,7' -> {1, 7}; empty -> None (any)."""
    ids = frozenset(int(part) for part in raw.split(",") if part.strip())
    if not all(0 <= i < 1 << 32 for i in ids):
        raise ValueError
    return ids or None


parse_schema_ids.expected = "comma-separated schema ids (whole numbers below 2**32), or empty for any"


def parse_trace_headers(raw: str) -> tuple[str, ...]:
    """K2S_TRACE_HEADERS: 'traceparent,tracestate' -> ('traceparent', 'tracestate')."""
    names = tuple(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))
    if not all(_TRACE_NAME.match(n) and n not in RESERVED_KEYS for n in names):
        raise ValueError
    return names


parse_trace_headers.expected = ("comma-separated header names of letters, digits, '.', '_' and '-', none a key "
                                "the bridge writes itself (class, args, queue, jid, retry, …), or empty for none")


@dataclass(frozen=True)
class EncoderOptions:
    timestamps: str = TIMESTAMPS_FLOAT       # "float" (Sidekiq 6/7/8) or "ms" (8 only)
    default_queue: str = "default"
    class_allow: frozenset[str] | None = None  # None: any class
    queue_allow: frozenset[str] | None = None  # None: any queue
    max_message_bytes: int = 1 << 20
    jid: str = "random"                       # "random", or "origin": from topic/partition/offset
    add_origin: bool = False                  # add "k2s_origin":"<topic>/<partition>/<offset>"
    wire_format: str = "auto"                 # "plain", "confluent" (Schema Registry framing) or both
    schema_ids: frozenset[int] | None = None  # framed values: the schema ids allowed (None: any)
    trace_headers: tuple[str, ...] = TRACE_HEADERS  # Kafka headers copied into the job as keys

    def __post_init__(self) -> None:
        if self.wire_format not in WIRE_FORMATS:
            raise ValueError(f"wire format must be one of {', '.join(WIRE_FORMATS)}, not {self.wire_format!r}")
        for name in self.trace_headers:
            if not _TRACE_NAME.match(name) or name in RESERVED_KEYS:
                raise ValueError(f"trace header {name!r} is not a name of letters, digits, '.', '_' and '-' "
                                 f"that the bridge does not write itself")
        if self.schema_ids is not None and not all(0 <= i < 1 << 32 for i in self.schema_ids):
            raise ValueError("schema ids are 32-bit unsigned numbers")
        if self.timestamps not in (TIMESTAMPS_FLOAT, TIMESTAMPS_MS):
            raise ValueError(f"timestamps must be 'float' or 'ms', not {self.timestamps!r}")
        if self.jid not in ("random", "origin"):
            raise ValueError(f"jid must be 'random' or 'origin', not {self.jid!r}")
        q = self.default_queue.encode()
        if not _QUEUE.match(q) or len(q) > MAX_NAME_BYTES:
            raise ValueError(f"default queue {self.default_queue!r} is not a valid queue name")
        if self.max_message_bytes < 1:
            raise ValueError("max_message_bytes must be positive")


@dataclass
class Batch:
    """What one call makes of a run of messages: the jobs, and the bookkeeping the push
    needs (which offsets it covers, how many payload bytes it carries)."""
    # queue -> payloads, in order: a list here; the compiled encoder's Payloads, read the
    # same way, hold them as the RESP frames the sink sends
    queues: dict[str, list[bytes]] = field(default_factory=dict)
    scheduled: list[tuple[bytes, bytes]] = field(default_factory=list)  # (score, payload)
    rejects: list[tuple[int, str]] = field(default_factory=list)  # (index in messages, reason)
    errors: list[int] = field(default_factory=list)  # indexes of consumer errors (no job)
    offsets: dict[int, list[int]] = field(default_factory=dict)  # partition -> [first, next)
    size: int = 0  # payload bytes, immediate and scheduled
    end: int = 0   # index after the last message taken
