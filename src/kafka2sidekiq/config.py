"""Settings: each declared once (name, type, default, environment variable, help).

Built once, in the process that starts the bridge, from defaults < environment
(``K2S_<NAME>``) < command-line flags, validated, frozen and passed explicitly to every
role. Nothing else in the package reads ``os.environ``.

``K2S_KAFKA_<librdkafka.key>`` passes any librdkafka setting through, with dots written
as underscores: ``K2S_KAFKA_SECURITY_PROTOCOL=SASL_SSL`` sets ``security.protocol``.
Loading is pure and cheap: librdkafka itself reads those keys and values later, in
``preflight`` (before anything forks). Unknown ``K2S_*`` names are not errors, but
``unknown_names`` says which they are and what was probably meant.
"""

from __future__ import annotations

import logging
import os
import re
import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from . import exits
from .encoder_types import WIRE_FORMATS, parse_schema_ids, parse_trace_headers
from .sidekiq import TIMESTAMPS_FLOAT, TIMESTAMPS_MS

EXIT_CONFIG = exits.CONFIG  # EX_CONFIG from sysexits.h: the configuration is wrong


class ConfigError(ValueError):
    """An invalid setting; the message names the variable, the value and what fits."""


class _Invalid(ValueError):
    """A value that does not parse, with the reason (shown before the expected form)."""


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise ValueError
    return value


def _workers(raw: str) -> int:
    """'auto': the CPUs this process may use (affinity and cgroup quota); else a count."""
    if raw.strip().lower() == "auto":
        from .cpus import available
        return available()
    return _positive_int(raw)


def _byte_size(raw: str) -> int:
    """'512mb', '1gb', '65536' -> bytes."""
    m = re.fullmatch(r"\s*(\d+)\s*(b|kb|mb|gb)?\s*", raw.lower())
    if not m:
        raise ValueError
    return int(m.group(1)) * {None: 1, "b": 1, "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30}[m.group(2)]


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError
    return value


def _mark(raw: str) -> tuple[str, float]:
    """A limiter mark: '80%' -> ('fraction', 0.8) of maxmemory; '512mb' -> ('bytes', …)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%\s*", raw)
    if m and 0 < float(m.group(1)) <= 100:
        return "fraction", float(m.group(1)) / 100
    return "bytes", float(_byte_size(raw))


def _choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in options:
            raise ValueError
        return raw
    parse.expected = " or ".join(options)  # type: ignore[attr-defined]
    return parse


def _name_list(raw: str) -> frozenset[str] | None:
    names = frozenset(n.strip() for n in raw.split(",") if n.strip())
    return names or None


def _listen(raw: str) -> tuple[str, int] | None:
    """'127.0.0.1:9394' -> ('127.0.0.1', 9394); empty -> None (off)."""
    if not raw.strip():
        return None
    host, sep, port = raw.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError
    return host.strip("[]") or "0.0.0.0", int(port)


def _port(text: str, what: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise _Invalid(f"{what} {text!r} is not a number from 1 to 65535")
    return int(text)


def _servers(raw: str) -> str:
    """Kafka brokers: host:port[,host:port] (a listener name such as SSL:// may lead)."""
    servers = [part.strip() for part in raw.split(",")]
    if not any(servers):
        raise _Invalid("no broker given")
    for server in servers:
        if not server:
            raise _Invalid("an empty entry between commas")
        address = re.sub(r"^[A-Za-z_]+://", "", server)
        host, sep, port = address.rpartition(":")
        if not sep or not host.strip("[]") or ("]" not in host and ":" in host):
            raise _Invalid(f"{server!r} is not host:port")
        _port(port, f"{server!r}: port")
    return raw


def _redis_url(raw: str) -> str:
    """redis://[[user]:password@]host[:port][/db], rediss://… or unix://[[user]:password@]/path[?db=N],
    read the way redis-py reads it, but strictly: a port or database that is not a number
    is an error here, not a failure to connect later (or, for the database, db 0)."""
    from urllib.parse import parse_qs, unquote, urlsplit

    scheme, sep, rest = raw.partition("://")
    if not sep or scheme not in ("redis", "rediss", "unix"):
        raise ValueError  # the expected form says it all
    try:
        url = urlsplit(raw)
    except ValueError as exc:  # e.g. an unclosed [ of an IPv6 address
        raise _Invalid(str(exc)) from None
    query = parse_qs(url.query, keep_blank_values=True)
    if "db" in query:
        db = query["db"][-1]
        if not db.isdigit():
            raise _Invalid(f"database {db!r} is not a whole number")
    if url.fragment:
        raise _Invalid(f"'#{url.fragment}' has no meaning in a Redis URL")
    if scheme == "unix":
        if not unquote(url.path).strip("/"):
            raise _Invalid("no socket path")
        if url.netloc.rpartition("@")[2]:
            raise _Invalid(f"host {url.netloc.rpartition('@')[2]!r} given, but a unix:// URL names a socket path")
    else:
        hostport = url.netloc.rpartition("@")[2]
        port = hostport.rpartition("]")[2] if hostport.startswith("[") else hostport
        if ":" in port:
            _port(port.rpartition(":")[2], "port")
        db = unquote(url.path).strip("/")
        if db and not db.isdigit():
            raise _Invalid(f"database {db!r} is not a whole number")
    if url.query:
        from redis.connection import parse_url  # the client's own reading of what remains

        try:
            parse_url(raw)
        except ValueError as exc:
            raise _Invalid(str(exc).rstrip(".")) from None
    return raw


def _file(raw: str) -> str:
    """A path to a readable file, or empty."""
    if raw and not os.access(raw, os.R_OK):
        raise ValueError
    return raw


def _flag(raw: str) -> bool:
    low = raw.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off", ""):
        return False
    raise ValueError


_EXPECTED = {
    _positive_int: "a whole number above 0",
    _workers: "a whole number above 0, or auto",
    _byte_size: "a size such as 65536, 512kb, 64mb or 1gb",
    _name_list: "a comma-separated list of names",
    _non_negative_int: "a whole number, 0 or more",
    _mark: "a share of Redis maxmemory such as 80%, or a size such as 512mb",
    _flag: "true or false",
    _file: "the path of a readable file",
    _listen: "host:port such as 127.0.0.1:9394, or empty for off",
    _servers: "host:port[,host:port] with numeric ports",
    _redis_url: "redis://[user:password@]host:port/db, rediss://… or unix:///path/to/redis.sock",
    str: "text",
}


@dataclass(frozen=True)
class Setting:
    name: str
    parse: Callable[[str], Any]
    default: str
    help: str

    @property
    def env(self) -> str:
        return "K2S_" + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def expected(self) -> str:
        return getattr(self.parse, "expected", None) or _EXPECTED[self.parse]


SETTINGS: tuple[Setting, ...] = (
    Setting("bootstrap_servers", _servers, "127.0.0.1:9092", "Kafka brokers, host:port[,host:port]"),
    Setting("topic", str, "sidekiq_out", "Kafka topic of Job messages"),
    Setting("group_id", str, "kafka2sidekiq", "Kafka consumer group; also names the offset ledger"),
    Setting("dlq_topic", str, "", "dead-letter topic for rejected messages (empty: <topic>.dlq)"),
    Setting("redis_url", _redis_url, "redis://127.0.0.1:6379/0",
            "Redis of the Sidekiq app: redis://, rediss:// or unix:///path/to/redis.sock; user:password@ for ACL users"),
    Setting("redis_tls_ca", _file, "", "CA certificates (PEM) to verify a rediss:// server (empty: the system's)"),
    Setting("redis_tls_cert", _file, "", "client certificate (PEM), for a Redis with tls-auth-clients"),
    Setting("redis_tls_key", _file, "", "key (PEM) of the client certificate"),
    Setting("redis_namespace", str, "", "key prefix of a namespaced Sidekiq 6 install (empty: none)"),
    Setting("batch_size", _positive_int, "1000",
            "most messages consumed and pushed at once (a batch is what has arrived, up to this)"),
    Setting("batch_wait_ms", _positive_int, "20",
            "when nothing has arrived, longest wait for the first message, milliseconds"),
    Setting("batch_max_bytes", _byte_size, "16mb", "most message bytes pushed to Redis at once"),
    Setting("workers", _workers, "auto",
            "worker processes on this host (auto: the CPUs this process may use: its CPU affinity, "
            "lowered to its cgroup's CPU quota, rounded up)"),
    Setting("timestamps", _choice(TIMESTAMPS_FLOAT, TIMESTAMPS_MS), TIMESTAMPS_FLOAT,
            "created_at/enqueued_at: float seconds (Sidekiq 6, 7, 8) or ms (8 only)"),
    Setting("encoder", _choice("auto", "fast", "python"), "auto",
            "envelope encoder: auto, fast (compiled, or fail) or python"),
    Setting("default_queue", str, "default", "queue of jobs that name none"),
    Setting("class_allow", _name_list, "", "job classes allowed (empty: any); ActiveJob: wrapper and job"),
    Setting("queue_allow", _name_list, "", "queues allowed (empty: any)"),
    Setting("max_message_bytes", _byte_size, "1mb", "larger messages go to the dead-letter topic"),
    Setting("jid_mode", _choice("random", "origin"), "random",
            "jid of jobs that bring none: random, or origin (from topic/partition/offset)"),
    Setting("add_origin", _flag, "false", "add k2s_origin (topic/partition/offset) to each job"),
    Setting("trace_headers", parse_trace_headers, "traceparent,tracestate",
            "Kafka headers copied into each job as top-level keys (trace context; empty: none)"),
    Setting("wire_format", _choice(*WIRE_FORMATS), "auto",
            "message values: plain Job bytes, confluent (Schema Registry framing), or auto (either)"),
    Setting("schema_ids", parse_schema_ids, "", "framed values: schema ids allowed (empty: any)"),
    Setting("queued_max_kbytes", _positive_int, "16384",
            "librdkafka prefetch bound per worker, KiB (queued.max.messages.kbytes)"),
    Setting("retry_max_seconds", _positive_int, "10", "longest back-off between Redis retries"),
    Setting("commit_interval_ms", _positive_int, "1000",
            "how often offsets are committed to Kafka, milliseconds (the ledger is the truth)"),
    Setting("commit_on", _choice("pushed", "performed"), "pushed",
            "the offset committed per partition: after the last job pushed, or the first job Sidekiq has "
            "not finished (performed: needs the Sidekiq middleware, `kafka2sidekiq middleware`; jids default to origin)"),
    Setting("performed_hold_seconds", _positive_int, "300",
            "performed: longest a job not yet finished holds its partition's committed offset back"),
    Setting("instance_id", str, "", "static group.instance.id of this host (empty: the host name)"),
    Setting("session_timeout_ms", _positive_int, "30000", "Kafka group session timeout, milliseconds"),
    Setting("leave_on_stop", _flag, "false",
            "on stop, leave the group: the other hosts take the partitions at once (a host leaving for good)"),
    Setting("liveness_seconds", _positive_int, "30", "a child that makes no progress this long is replaced"),
    Setting("graceful_seconds", _positive_int, "30", "longest graceful shutdown before SIGKILL"),
    Setting("boot_seconds", _positive_int, "15", "longest a worker waits for Redis and Kafka at start"),
    Setting("crash_budget", _positive_int, "5", "boot failures in a row of one slot before giving up"),
    Setting("max_worker_rss", _byte_size, "0", "recycle (gracefully) a worker above this RSS (0: never)"),
    Setting("http", _listen, "", "serve /metrics, /healthz and /readyz on host:port (empty: off)"),
    Setting("stall_seconds", _positive_int, "10", "/healthz fails when a process's loop has not turned for this long"),
    Setting("broker_timeout_seconds", _positive_int, "30",
            "/readyz fails when no Kafka broker has answered the host for this long"),
    Setting("limiter_high", _mark, "80%", "pause consuming when Redis used_memory reaches this"),
    Setting("limiter_low", _mark, "70%", "resume when used_memory is back below this"),
    Setting("limiter_max_queue", _non_negative_int, "0", "also pause at this many jobs queued (0: off)"),
    Setting("limiter_max_latency_seconds", _non_negative_int, "0",
            "also pause when the oldest queued job is this old (0: off)"),
    Setting("limiter_interval_ms", _positive_int, "200", "how often the limiter polls Redis, milliseconds"),
    Setting("limiter_stale_ms", _positive_int, "2000", "workers pause when the verdict is older than this"),
    Setting("limiter_jitter_ms", _non_negative_int, "500", "random delay before resuming, at most"),
)

KAFKA_PASSTHROUGH = "K2S_KAFKA_"

# K2S_* names that are not settings of the bridge, yet are no mistake: read by the CLI
# itself, or by the project's own scripts, build and tests. One place; a name ending in _
# stands for every name it begins. None of them passes through to librdkafka
# (K2S_KAFKA_VERSION is the Kafka version scripts/services.py runs).
NOT_SETTINGS: tuple[str, ...] = (
    "K2S_LOG_FORMAT",                                       # cli.py
    "K2S_LOCAL_", "K2S_SERVICES_", "K2S_KAFKA_VERSION",     # scripts/services.py, scripts/run
    "K2S_TEST_", "K2S_REQUIRE_COMPILED",                    # scripts/test, tests/
    "K2S_NO_EXTENSIONS", "K2S_DEBUG_BUILD", "K2S_SANITIZE",  # setup.py
)


def _not_a_setting(name: str) -> bool:
    return any(name.startswith(n) if n.endswith("_") else name == n for n in NOT_SETTINGS)


def unknown_names(env: Mapping[str, str] | None = None) -> list[str]:
    """One warning per K2S_* name in ``env`` that nothing reads (a typo, or a setting
    that no longer exists), with the nearest valid name when one is near."""
    env = os.environ if env is None else env
    known = {s.env for s in SETTINGS}
    valid = sorted(known | {n for n in NOT_SETTINGS if not n.endswith("_")})
    out = []
    for name in sorted(env):
        if (not name.startswith("K2S_") or name in known or _not_a_setting(name)
                or name.startswith(KAFKA_PASSTHROUGH)):
            continue
        near = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
        hint = f"did you mean {near[0]}?" if near else "see kafka2sidekiq run --help for the settings"
        out.append(f"{name} is not a setting of kafka2sidekiq and is ignored: {hint}")
    return out


def kafka_variable(key: str, env: Mapping[str, str] | None = None) -> str:
    """The K2S_KAFKA_* variable that set librdkafka's ``key`` (the name as written in
    ``env``; the usual spelling when ``env`` has none)."""
    env = os.environ if env is None else env
    for name in env:
        if name.startswith(KAFKA_PASSTHROUGH) and _kafka_key(name) == key and not _not_a_setting(name):
            return name
    return KAFKA_PASSTHROUGH + key.upper().replace(".", "_")


def _kafka_key(name: str) -> str:
    return name[len(KAFKA_PASSTHROUGH):].lower().replace("_", ".")


class _SettingsMethods:
    @property
    def redis_tls(self) -> dict:
        """The ssl_* options of the Redis client (none for a redis:// URL)."""
        files = {"ssl_ca_certs": self.redis_tls_ca, "ssl_certfile": self.redis_tls_cert,
                 "ssl_keyfile": self.redis_tls_key}
        return {k: v for k, v in files.items() if v}

    @property
    def dead_letter_topic(self) -> str:
        return self.dlq_topic or f"{self.topic}.dlq"

    def encoder_options(self):
        from .encoder_types import EncoderOptions
        return EncoderOptions(
            timestamps=self.timestamps, default_queue=self.default_queue,
            class_allow=self.class_allow, queue_allow=self.queue_allow,
            max_message_bytes=self.max_message_bytes, jid=self.jid_mode,
            add_origin=self.add_origin or self.commit_on == "performed",  # the middleware reads k2s_origin
            trace_headers=self.trace_headers, wire_format=self.wire_format, schema_ids=self.schema_ids)

    def kafka_config(self, client_id: str, role: Mapping[str, Any]) -> dict:
        """librdkafka settings of one client: the brokers, its id, what its role needs,
        then the K2S_KAFKA_* passthrough (which wins: security and tuning are the
        operator's)."""
        return {"bootstrap.servers": self.bootstrap_servers, "client.id": client_id,
                "logger": logging.getLogger("librdkafka"),  # its lines carry our role, slot, pid
                **role, **self.kafka}


# The frozen settings object: one field per declaration above, plus the librdkafka
# passthrough. Built from SETTINGS so that a setting is declared in one place only.
Settings = dataclasses.make_dataclass(
    "Settings",
    [(s.name, Any) for s in SETTINGS] + [("kafka", Mapping[str, str], field(default_factory=dict))],
    bases=(_SettingsMethods,), frozen=True,
)
Settings.__module__ = __name__


def load(env: Mapping[str, str] | None = None, flags: Mapping[str, str] | None = None) -> Settings:
    """Settings from defaults < env < flags (raw strings by setting name)."""
    env = os.environ if env is None else env
    flags = flags or {}
    values: dict[str, Any] = {}
    given = set()  # the settings not left at their default
    for s in SETTINGS:
        if s.name in flags and flags[s.name] is not None:
            raw, source = flags[s.name], s.flag
            given.add(s.name)
        elif s.env in env:
            raw, source = env[s.env], s.env
            given.add(s.name)
        else:
            raw, source = s.default, f"the default of {s.env}"
        try:
            values[s.name] = s.parse(raw)
        except ValueError as exc:
            shown = redact(raw) if s.parse is _redis_url else raw
            reason = f"{exc} (expected {s.expected})" if isinstance(exc, _Invalid) else f"expected {s.expected}"
            raise ConfigError(f"{source}={shown!r} is not valid: {reason}") from None
    values["kafka"] = {_kafka_key(k): v for k, v in env.items()
                       if k.startswith(KAFKA_PASSTHROUGH) and not _not_a_setting(k)}
    if values["commit_on"] == "performed" and "jid_mode" not in given:
        values["jid_mode"] = "origin"  # a job pushed again after a host died carries the same jid
    settings = Settings(**values)
    high, low = settings.limiter_high, settings.limiter_low
    if high[0] == low[0] and low[1] >= high[1]:
        raise ConfigError(f"K2S_LIMITER_LOW must be below K2S_LIMITER_HIGH "
                          f"({env.get('K2S_LIMITER_LOW', '70%')!r} is not below {env.get('K2S_LIMITER_HIGH', '80%')!r})")
    if settings.redis_tls and not settings.redis_url.startswith("rediss://"):
        raise ConfigError(f"K2S_REDIS_TLS_* is set but K2S_REDIS_URL={redact(settings.redis_url)!r} "
                          f"is not a rediss:// URL: use rediss:// to connect with TLS")
    if bool(settings.redis_tls_cert) != bool(settings.redis_tls_key):
        raise ConfigError("K2S_REDIS_TLS_CERT and K2S_REDIS_TLS_KEY go together: set both or neither")
    try:
        settings.encoder_options()
    except ValueError as exc:
        raise ConfigError(f"K2S_DEFAULT_QUEUE={settings.default_queue!r} is not valid: {exc}") from None
    return settings


# librdkafka keys whose values are not to be shown (a log line, an error line).
SECRET = re.compile(r"password|secret|token|jaas|credential|\.pem$|oauthbearer\.config|\bkey$")


def effective(settings: Settings) -> str:
    """Every setting as the bridge will use it, one line, passwords and secrets as ***."""
    def shown(s: Setting, value: Any) -> str:
        if s.parse is _redis_url:
            return redact(value)
        if s.parse is _mark:
            return f"{value[1] * 100:g}%" if value[0] == "fraction" else f"{value[1]:.0f}"
        if s.parse is _listen:
            return f"{value[0]}:{value[1]}" if value else ""
        if s.parse is _name_list:
            return ",".join(sorted(value)) if value else ""
        if s.parse is _flag:
            return "true" if value else "false"
        return str(value)

    out = [f"{s.env}={shown(s, getattr(settings, s.name))}" for s in SETTINGS]
    out += [f"{KAFKA_PASSTHROUGH}{key.upper().replace('.', '_')}={'***' if SECRET.search(key) else value}"
            for key, value in sorted(settings.kafka.items())]
    return " ".join(out)


def redact(url: str) -> str:
    """A URL fit for a log line: any password replaced by ***."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:  # not even a URL: hide whatever sits between : and @
        return re.sub(r"(//[^/@]*?):[^/@]*@", r"\1:***@", url)
    if parts.password is None:
        return url
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + parts.netloc.rsplit("@", 1)[1]))


def markdown_table() -> str:
    """The README's settings table, made from the declarations above."""
    rows = ["| variable | flag | default | meaning |", "|---|---|---|---|"]
    for s in SETTINGS:
        default = f"`{s.default}`" if s.default else "(empty)"
        rows.append(f"| `{s.env}` | `{s.flag}` | {default} | {s.help} |")
    rows.append(f"| `{KAFKA_PASSTHROUGH}<KEY>` | | | any librdkafka setting, dots as underscores: "
                f"`K2S_KAFKA_SASL_MECHANISM=PLAIN` |")
    return "\n".join(rows)
