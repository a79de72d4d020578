"""Why a job is refused, in words: for ``push`` and ``produce``, which check a job with the
bridge's own encoder before anything is sent, and name the flag and, for JSON, where it
broke. The encoder answers with a reason code only (it runs per message, in C)."""

from __future__ import annotations

import json
import time

from .config import Settings
from .encoder_types import MAX_ARGS_DEPTH, MAX_EXTRA_DEPTH, MAX_RETRY_FOR


class InvalidJob(ValueError):
    """A job the bridge would send to the dead-letter topic; the message says why."""


def check(job: bytes, settings: Settings) -> None:
    """Raise InvalidJob unless the bridge, with these settings, would push ``job``."""
    from . import encoder

    batch = encoder.select(settings.encoder).Encoder(settings.encoder_options()).encode_batch(
        "check", [(job, -1, 0, 0)], time.time_ns() // 1_000_000)
    if batch.rejects:
        reason = batch.rejects[0][1]
        raise InvalidJob(f"the bridge would refuse this job ({reason}): {why(reason, job, settings)}")


def why(reason: str, job: bytes, settings: Settings) -> str:
    from ._proto.job_pb2 import Job

    j = Job.FromString(job)
    names = {"bad_class": ("--class", j.job_class), "bad_wrapped": ("--wrapped", j.wrapped),
             "bad_queue": ("--queue", j.queue)}
    if reason in names:
        flag, value = names[reason]
        what = ("printable ASCII without space, '\"', ',' or '\\', at most 255 bytes" if reason == "bad_queue"
                else "a Ruby constant such as HardJob or Billing::ChargeJob")
        return f"{flag} {value!r} is not {what}"
    if reason == "bad_args":
        return _json_problem("--args", j.args_json, list)
    if reason == "bad_extra":
        return _json_problem("--extra", j.extra_json, dict)
    return {
        "too_large": f"it is {len(job)} bytes, above K2S_MAX_MESSAGE_BYTES ({settings.max_message_bytes})",
        "missing_class": "--class is empty",
        "class_not_allowed": f"--class {j.job_class!r} (or --wrapped) is not in K2S_CLASS_ALLOW",
        "queue_not_allowed": f"--queue {j.queue or settings.default_queue!r} is not in K2S_QUEUE_ALLOW",
        "reserved_extra_key": f"--extra sets {', '.join(sorted(_reserved(j.extra_json)))}, which the bridge "
                              f"writes itself",
        "bad_at": f"--at {j.at} is not a time in epoch seconds (milliseconds?)",
        "bad_created_at": "created_at is not a time in epoch seconds",
        "duplicate_extra_key": f"--extra sets {', '.join(sorted(_twice(j.extra_json)))} more than once",
        "bad_tags": "--extra's tags must be an array (Sidekiq: \"Job tags must be an Array\")",
        "bad_retry_for": f"--extra's retry_for must be a whole number of seconds, at most {MAX_RETRY_FOR:,}",
        "bad_framing": "K2S_WIRE_FORMAT=confluent takes only Schema Registry framed messages, and this command "
                       "sends a plain Job message",
        "schema_not_allowed": "its Schema Registry schema id is not in K2S_SCHEMA_IDS",
    }.get(reason, reason)


def _json_problem(flag: str, text: str, kind: type) -> str:
    """Where ``text`` stops being the JSON ``kind`` the bridge wants."""
    def constant(name: str):
        raise ValueError(f"{name} is not JSON")

    wanted = "an array" if kind is list else "an object"
    try:
        value = json.loads(text, parse_constant=constant)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}" if exc.lineno > 1 else f"column {exc.colno}"
        near = text[max(0, exc.pos - 10):exc.pos + 10]
        return f"{flag} is not valid JSON: {exc.msg} at {where} (near {near!r})"
    except ValueError as exc:
        return f"{flag} is not valid JSON: {exc}"
    except RecursionError:
        return f"{flag} is nested too deeply"
    if not isinstance(value, kind):
        return f"{flag} must be {wanted}, not {_kind(value)}"
    depth = MAX_ARGS_DEPTH if kind is list else MAX_EXTRA_DEPTH
    return f"{flag} is not {wanted} the bridge accepts (nested deeper than {depth}?)"


def _reserved(text: str) -> set[str]:
    from .sidekiq import RESERVED_KEYS

    try:
        return RESERVED_KEYS & set(json.loads(text))
    except (ValueError, TypeError):
        return set(RESERVED_KEYS)


def _twice(text: str) -> set[str]:
    """The top-level keys of the JSON object ``text`` that appear more than once."""
    objects: list[list] = []  # every object's pairs, innermost first: the top level comes last
    try:
        json.loads(text, object_pairs_hook=lambda pairs: objects.append(pairs) or dict(pairs))
    except ValueError:
        return set()
    keys = [key for key, _ in objects[-1]] if objects else []
    return {key for key in keys if keys.count(key) > 1}


def _kind(value) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "true or false",
            type(None): "null"}.get(type(value), "a number")
