"""Reference envelope encoder: Kafka job messages in, Sidekiq job JSON out.

This module is the specification of record. The compiled encoder (``_encoder_c``) must
produce byte-identical output and the same rejections for every input; the differential
tests hold it to that. Keep this one readable: speed lives in the other.

A message value is a ``kafka2sidekiq.v1.Job`` (src/kafka2sidekiq/proto/kafka2sidekiq/v1/job.proto). It is
read here with a small wire-format reader rather than the protobuf library so that the
rules for malformed input are ours, explicit, and the same in both twins:

* wire types 0 (varint), 1 (64-bit), 2 (length-delimited) and 5 (32-bit) are read;
  groups (3, 4) and the unused types 6, 7 are malformed;
* a tag is a varint below 2**32 with a field number above 0; a varint has at most
  10 bytes and 64 bits;
* a known field with the wrong wire type is malformed; unknown fields are skipped;
* for a field that appears more than once the last one wins (for ``retry`` and
  ``retry_count``, which share a oneof, the last of either).

The payload keys come in the order ``Sidekiq::Client.push`` writes them (its
``normalize_item`` merges the caller's hash over the defaults ``retry``, ``queue``, then
adds ``jid`` and ``created_at``): retry, queue, [k2s_origin], class, [wrapped], args,
[extra keys], jid, created_at, [trace keys], [enqueued_at] (a client middleware such as
OpenTelemetry's adds its keys after normalize_item). A job whose ``at`` is in the future goes to
the schedule set without ``at`` and ``enqueued_at``, as Sidekiq's client does. The extra
keys are checked as the client checks them (``tags`` an Array, ``retry_for`` at most
1,000,000,000) and may not repeat a key.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
import sys
import msgspec

from .encoder_types import (
    MAX_ARGS_DEPTH, MAX_EPOCH_SECONDS, MAX_EXTRA_DEPTH, MAX_NAME_BYTES, MAX_RETRY_FOR, MAX_TRACE_VALUE, REASONS,
    TRACE_HEADERS, WIRE_FORMATS, Batch, EncoderOptions, _QUEUE)
from .sidekiq import RESERVED_KEYS, TIMESTAMPS_MS

# The shared types live in encoder_types; reached through here too, as before.
__all__ = ["REASONS", "TRACE_HEADERS", "WIRE_FORMATS", "Batch", "EncoderOptions", "Encoder"]

JSON_SPACE = b" \t\r\n"

_CONSTANT_PATH = re.compile(rb"[A-Z][A-Za-z0-9_]*(?:::[A-Z][A-Za-z0-9_]*)*\Z")
_JID = re.compile(rb"[0-9a-f]{24}\Z")
# A header value copied into a JSON string as it is: printable ASCII but '"' and '\'.
_TRACE_VALUE = re.compile(rb"[ !#-\[\]-~]*\Z")
# W3C trace context: version-trace_id-parent_id-flags, lowercase hex
_TRACEPARENT = re.compile(rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}\Z")

# Wire format: field number -> (name, wire type).
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_FIELDS = {
    1: ("job_class", _LEN), 2: ("queue", _LEN), 3: ("args_json", _LEN),
    4: ("at", _I64), 5: ("jid", _LEN), 6: ("retry", _VARINT), 7: ("retry_count", _VARINT),
    8: ("created_at", _I64), 9: ("extra_json", _LEN), 10: ("wrapped", _LEN),
}
_MASK64 = (1 << 64) - 1
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_GAMMA = 0x9E3779B97F4A7C15


def fields_of(message) -> tuple | None:
    """(value, timestamp_ms, partition, offset, headers) of a (value, timestamp_ms,
    partition, offset[, headers]) tuple or a confluent-kafka Message; None for a Message
    that carries a consumer error instead of a record. headers: [(name, bytes)] or None."""
    if type(message) is tuple:
        if not all(_INT64_MIN <= n <= _INT64_MAX for n in message[1:4]):  # as the compiled twin
            raise OverflowError(f"timestamp, partition and offset must fit in 64 bits: {message[1:4]}")
        return message if len(message) == 5 else (*message, None)
    if message.error() is not None:
        return None
    return message.value(), message.timestamp()[1], message.partition(), message.offset(), message.headers()


def unframe(value: bytes) -> tuple[int, bytes] | None:
    """(schema id, message) of a value in Confluent's Schema Registry framing for Protobuf:
    magic byte 0, a 4-byte big-endian schema id, the message indexes (a zigzag varint
    count, then that many zigzag varints; a lone 0 for the first message), the message.
    None when the value is not framed so. A Job never starts with 0 (field number 0)."""
    if len(value) < 6 or value[0] != 0:
        return None
    try:
        count, pos = _varint(value, 5)
        if count:
            if count & 1:
                return None  # a negative count
            for _ in range(count >> 1):  # each takes a byte at least: bounded by the value
                index, pos = _varint(value, pos)
                if index & 1:
                    return None  # a negative index
    except Malformed:
        return None
    return int.from_bytes(value[1:5], "big"), value[pos:]


def trace_members(names: tuple[str, ...], headers, extra: bytes) -> bytes:
    """The members ',"name":"value"' that carry the trace context of a job: for each of
    ``names`` in order, the last Kafka header of that name, when its value is at most
    MAX_TRACE_VALUE bytes of printable ASCII without '"' and '\\' (a traceparent in W3C
    form too) and the job's extra keys (the JSON object ``extra``, or b"") do not have
    the key already. b"" when none."""
    found = {name: value for name, value in headers if name in names}
    out = b""
    for name in names:
        value = found.get(name)
        if (type(value) is not bytes or len(value) > MAX_TRACE_VALUE or not _TRACE_VALUE.match(value)
                or (name == "traceparent" and not _traceparent(value))):
            continue
        key = name.encode()
        # the extra keys may name it (as written, or with an escape): then theirs stays
        if extra and (b'"%s"' % key in extra or b"\\" in extra) and name in _top_level_keys(extra):
            continue
        out += b',"%s":"%s"' % (key, value)
    return out


def _traceparent(value: bytes) -> bool:
    m = _TRACEPARENT.match(value)
    return bool(m) and m[1] != b"ff" and m[2] != b"0" * 32 and m[3] != b"0" * 16


class Malformed(Exception):
    pass


class Reject(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


# --- random numbers: splitmix64, the same stream in both twins ----------------------


def mix64(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & _MASK64
    return h


def jid_from(state: int) -> str:
    """The jid at splitmix64 position ``state``: 96 bits from two outputs."""
    hi = mix64((state + _GAMMA) & _MASK64)
    lo = mix64((state + 2 * _GAMMA) & _MASK64)
    return f"{hi:016x}{lo >> 32:08x}"


def origin_seed(topic: str, partition: int) -> int:
    return fnv1a64(f"{topic}/{partition}".encode())


# --- wire format -------------------------------------------------------------------------


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = 0
    for i in range(10):
        if pos >= len(buf):
            raise Malformed
        b = buf[pos]
        pos += 1
        if i == 9 and b > 1:
            raise Malformed  # more than 64 bits
        result |= (b & 0x7F) << (7 * i)
        if b < 0x80:
            return result, pos
    raise Malformed


def parse_job(buf: bytes) -> dict:
    """The fields of a Job message present in ``buf`` (raw bytes, ints, floats)."""
    job: dict = {}
    pos, end = 0, len(buf)
    while pos < end:
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if number == 0 or tag >> 32:
            raise Malformed
        if wire == _VARINT:
            value, pos = _varint(buf, pos)
        elif wire == _I64:
            if end - pos < 8:
                raise Malformed
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == _LEN:
            length, pos = _varint(buf, pos)
            if length > end - pos:
                raise Malformed
            value, pos = buf[pos:pos + length], pos + length
        elif wire == _I32:
            if end - pos < 4:
                raise Malformed
            value, pos = None, pos + 4
        else:
            raise Malformed  # groups and the unused wire types
        known = _FIELDS.get(number)
        if known is None:
            continue
        name, expected = known
        if wire != expected:
            raise Malformed
        if name == "retry":
            job["retry"] = b"true" if value else b"false"
        elif name == "retry_count":
            job["retry"] = str(value & 0xFFFFFFFF).encode()
        elif wire == _I64:
            job[name] = struct.unpack("<d", value)[0]
        else:
            job[name] = value
    return job


# --- JSON checks (shared with the compiled twin, which calls them for hard cases) ------


def _depth(value: object) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def _decode(raw: bytes, kind: type, max_depth: int) -> object | None:
    try:
        value = msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(value, kind) or _depth(value) > max_depth:
        return None
    return value


def int_max_chars() -> int:
    """The longest JSON integer msgspec reads, sign included: Python's int parsing limit."""
    return sys.get_int_max_str_digits() or (1 << 62)


def check_args(raw: bytes) -> str | None:
    """None when ``raw`` is a UTF-8 JSON array nested at most MAX_ARGS_DEPTH deep."""
    return None if _decode(raw, list, MAX_ARGS_DEPTH) is not None else "bad_args"


def _top_level_keys(raw: bytes) -> list[str]:
    """The keys of the JSON object ``raw`` (already known valid) in order, repeats kept."""
    objects: list[list] = []
    json.loads(raw, object_pairs_hook=objects.append, parse_int=len, parse_float=len)
    return [key for key, _ in objects[-1]]  # the outermost object is the last one closed


def check_extra(raw: bytes) -> str | None:
    """None when ``raw`` is a UTF-8 JSON object nested at most MAX_EXTRA_DEPTH deep,
    without a reserved or repeated key, whose ``tags`` and ``retry_for`` pass the checks
    of Sidekiq's client (a false or null one is no option at all there)."""
    value = _decode(raw, dict, MAX_EXTRA_DEPTH)
    if value is None:
        return "bad_extra"
    if not RESERVED_KEYS.isdisjoint(value):
        return "reserved_extra_key"
    if len(_top_level_keys(raw)) != len(value):
        return "duplicate_extra_key"
    tags = value.get("tags")
    if tags is not None and tags is not False and type(tags) is not list:
        return "bad_tags"
    retry_for = value.get("retry_for")
    if retry_for is not None and retry_for is not False and not (type(retry_for) is int and retry_for <= MAX_RETRY_FOR):
        return "bad_retry_for"
    return None


# --- the encoder -------------------------------------------------------------------------


def format_seconds_ms(ms: int) -> bytes:
    """Epoch milliseconds as float seconds, exactly as Python's repr writes them."""
    return repr(ms / 1000).encode()


class Encoder:
    """Turns batches of Kafka messages into Sidekiq payloads grouped by queue."""

    def __init__(self, options: EncoderOptions, seed: int | None = None) -> None:
        self.options = options
        self._state = int.from_bytes(os.urandom(8), "little") if seed is None else seed & _MASK64
        self._class_allow = (None if options.class_allow is None
                             else {c.encode() for c in options.class_allow})
        self._queue_allow = (None if options.queue_allow is None
                             else {q.encode() for q in options.queue_allow})
        if seed is None:  # a forked child must not repeat its parent's jids
            os.register_at_fork(after_in_child=self._reseed)

    def _reseed(self) -> None:
        self._state = int.from_bytes(os.urandom(8), "little")

    def _next_jid(self) -> bytes:
        jid = jid_from(self._state)
        self._state = (self._state + 2 * _GAMMA) & _MASK64
        return jid.encode()

    def encode_batch(self, topic: str, messages, now_ms: int, start: int = 0, max_bytes: int = 0) -> Batch:
        """Encode ``messages[start:]``: (value, timestamp_ms, partition, offset) tuples or
        confluent-kafka Messages, whose indexes the rejects and errors give.

        ``timestamp_ms`` is the Kafka message timestamp (negative when unavailable);
        ``now_ms`` is the push time, epoch milliseconds, the same for the whole batch.
        With ``max_bytes``, the batch stops before the message that would take the values
        taken past it (a larger message travels alone); ``end`` says where it stopped.
        """
        batch = Batch(end=start)
        taken = count = 0
        for index in range(start, len(messages)):
            fields = fields_of(messages[index])
            if fields is None:
                batch.errors.append(index)
                batch.end = index + 1
                continue
            value, timestamp_ms, partition, offset, headers = fields
            value = value or b""
            if max_bytes and count and taken + len(value) > max_bytes:
                break
            taken, count, batch.end = taken + len(value), count + 1, index + 1
            batch.offsets.setdefault(partition, [offset, 0])[1] = offset + 1
            try:
                queue, score, payload = self.encode_one(topic, value, timestamp_ms, partition, offset, now_ms,
                                                        headers)
            except Reject as reject:
                batch.rejects.append((index, reject.reason))
                continue
            batch.size += len(payload)
            if score is not None:
                batch.scheduled.append((score, payload))
            else:
                batch.queues.setdefault(queue, []).append(payload)
        return batch

    def encode_one(self, topic, value, timestamp_ms, partition, offset, now_ms, headers=None):
        """(queue, schedule score or None, payload) for one message, or raise Reject."""
        opts = self.options
        if len(value) > opts.max_message_bytes:
            raise Reject("too_large")
        if opts.wire_format != "plain":
            framed = unframe(value)
            if framed is not None:
                schema_id, value = framed
                if opts.schema_ids is not None and schema_id not in opts.schema_ids:
                    raise Reject("schema_not_allowed")
            elif opts.wire_format == "confluent":
                raise Reject("bad_framing")
        try:
            job = parse_job(value)
        except Malformed:
            raise Reject("not_protobuf") from None

        klass = job.get("job_class", b"")
        if not klass:
            raise Reject("missing_class")
        if len(klass) > MAX_NAME_BYTES or not _CONSTANT_PATH.match(klass):
            raise Reject("bad_class")
        if self._class_allow is not None and klass not in self._class_allow:
            raise Reject("class_not_allowed")

        wrapped = job.get("wrapped", b"")
        if wrapped:
            if len(wrapped) > MAX_NAME_BYTES or not _CONSTANT_PATH.match(wrapped):
                raise Reject("bad_wrapped")
            if self._class_allow is not None and wrapped not in self._class_allow:
                raise Reject("class_not_allowed")

        queue = job.get("queue", b"") or opts.default_queue.encode()
        if len(queue) > MAX_NAME_BYTES or not _QUEUE.match(queue):
            raise Reject("bad_queue")
        if self._queue_allow is not None and queue not in self._queue_allow:
            raise Reject("queue_not_allowed")

        args = job.get("args_json", b"").strip(JSON_SPACE) or b"[]"
        if (reason := check_args(args)) is not None:
            raise Reject(reason)

        extra = job.get("extra_json", b"").strip(JSON_SPACE)
        if extra and (reason := check_extra(extra)) is not None:
            raise Reject(reason)
        trace = trace_members(opts.trace_headers, headers, extra) if headers and opts.trace_headers else b""
        extra = extra[1:-1].strip(JSON_SPACE)  # the members, spliced in below

        at = job.get("at")
        if at is not None and not (math.isfinite(at) and at <= MAX_EPOCH_SECONDS):
            raise Reject("bad_at")
        created = job.get("created_at")
        if created is not None and not (math.isfinite(created) and 0 <= created <= MAX_EPOCH_SECONDS):
            raise Reject("bad_created_at")

        scheduled = at is not None and at > now_ms / 1000
        jid = job.get("jid", b"")
        if not _JID.match(jid):
            jid = (jid_from(origin_seed(topic, partition) + 2 * offset * _GAMMA).encode()
                   if opts.jid == "origin" else self._next_jid())

        ms = opts.timestamps == TIMESTAMPS_MS
        if created is not None:
            created_at = str(int(created * 1000.0)).encode() if ms else repr(created).encode()
        else:
            source_ms = timestamp_ms if timestamp_ms >= 0 else now_ms
            created_at = str(source_ms).encode() if ms else format_seconds_ms(source_ms)

        out = [b'{"retry":', job.get("retry", b"true"), b',"queue":"', queue, b'"']
        if opts.add_origin:
            out += [b',"k2s_origin":"', f"{topic}/{partition}/{offset}".encode(), b'"']
        out += [b',"class":"', klass, b'"']
        if wrapped:
            out += [b',"wrapped":"', wrapped, b'"']
        out += [b',"args":', args]
        if extra:
            out += [b",", extra]
        out += [b',"jid":"', jid, b'","created_at":', created_at, trace]
        if not scheduled:
            enqueued_at = str(now_ms).encode() if ms else format_seconds_ms(now_ms)
            out += [b',"enqueued_at":', enqueued_at]
        out.append(b"}")
        return queue.decode(), repr(at).encode() if scheduled else None, b"".join(out)
