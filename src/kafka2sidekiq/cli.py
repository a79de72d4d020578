"""Command line: ``kafka2sidekiq run | worker | check | push | produce | proto | dlq``.

Every setting is a flag too (``--batch-size``) and an environment variable
(``K2S_BATCH_SIZE``); flags win. Each command offers as flags (and lists in its --help)
only the settings it uses (COMMAND_SETTINGS). Exit codes: exits.py.

Every command checks all of its configuration before it does anything (for ``run``,
before anything forks): the settings, K2S_LOG_FORMAT, and the K2S_KAFKA_* passthrough as
librdkafka reads it (``preflight``). A bad value is one line on stderr and exit 78.

Every failure is one line on stderr and an exit code of its own (``failure``): Kafka or
Redis unreachable, credentials refused, a job the bridge would refuse, a wrong flag;
``--debug`` adds the traceback. ``--log-format`` and ``--debug`` go before or after the
command.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
import traceback

from . import __version__, config, exits, logs
from .failures import failure

EXIT_OK, EXIT_FAILED, EXIT_USAGE = exits.OK, exits.FAILED, exits.USAGE

# Which settings each command uses: its flags and its --help. The environment still sets
# all of them (and all are checked), but only these change what the command does.
_KAFKA = ("bootstrap_servers", "topic")
_REDIS = ("redis_url", "redis_tls_ca", "redis_tls_cert", "redis_tls_key", "redis_namespace")
_VALID = ("encoder", "default_queue", "class_allow", "queue_allow", "max_message_bytes")  # what a job may be
_JOB = (*_VALID, "timestamps", "jid_mode", "add_origin")  # and how it is written
_HOST_ONLY = ("workers", "instance_id", "session_timeout_ms", "leave_on_stop", "liveness_seconds",
              "graceful_seconds", "crash_budget", "max_worker_rss", "http", "stall_seconds",
              "broker_timeout_seconds", "limiter_high", "limiter_low", "limiter_max_queue",
              "limiter_max_latency_seconds", "limiter_interval_ms", "limiter_stale_ms", "limiter_jitter_ms")
_ALL = tuple(s.name for s in config.SETTINGS)
COMMAND_SETTINGS = {
    "run": _ALL,
    "worker": tuple(n for n in _ALL if n not in _HOST_ONLY),
    "check": (*_KAFKA, "group_id", "dlq_topic", *_REDIS, "encoder", "timestamps", "default_queue", "workers",
              "instance_id"),
    "push": (*_REDIS, *_JOB),
    "produce": (*_KAFKA, *_VALID),
    "dlq list": (*_KAFKA, "group_id", "dlq_topic"),
    "dlq replay": (*_KAFKA, "group_id", "dlq_topic", *_REDIS, *_JOB),
}
PRODUCE_SECONDS = 30  # produce: the longest wait for the broker's acknowledgement
_USES_KAFKA = ("run", "worker", "check", "produce", "dlq list", "dlq replay")


class _Parser(argparse.ArgumentParser):
    """A usage error is one line, naming the command, with where to look."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _common() -> argparse.ArgumentParser:
    """Flags of every command, accepted before or after it (SUPPRESS: a later parser does
    not overwrite what an earlier one read)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--log-format", choices=logs.FORMATS, default=argparse.SUPPRESS,
                        help="log lines as text (default) or one JSON object per line [K2S_LOG_FORMAT]")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="on a failure, print the traceback too")
    return common


def _settings_flags(parser: argparse.ArgumentParser, command: str) -> None:
    names = set(COMMAND_SETTINGS[command])
    group = parser.add_argument_group("settings (each also K2S_<NAME> in the environment)")
    for s in config.SETTINGS:
        if s.name not in names:
            continue
        text = f"{s.help} [{s.env}, default {s.default or 'empty'}]"
        group.add_argument(s.flag, dest=f"setting_{s.name}", metavar=s.name.upper(),
                           help=text.replace("%", "%%"))  # argparse %-formats help
    if command in _USES_KAFKA:
        parser.epilog = ("Any librdkafka setting: K2S_KAFKA_<KEY> in the environment, dots as underscores "
                         "(K2S_KAFKA_SASL_MECHANISM=PLAIN).")


def _settings(args: argparse.Namespace) -> config.Settings:
    flags = {s.name: getattr(args, f"setting_{s.name}", None) for s in config.SETTINGS}
    return config.load(flags=flags)


def _partitions(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        if not lo.strip().isdigit() or (hi and not hi.strip().isdigit()):
            raise argparse.ArgumentTypeError(f"{text!r}: expected partitions such as 0,1,4-7")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return sorted(set(out))


def parser() -> argparse.ArgumentParser:
    common = _common()
    p = _Parser(prog="kafka2sidekiq", description="Messages on a Kafka topic become Sidekiq jobs in Redis.",
                parents=[common])
    p.add_argument("--version", action="version", version=f"kafka2sidekiq {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help: str, needs: str = "", **kwargs) -> argparse.ArgumentParser:
        # a usage line of the required flags only: the list of all of them is below it
        return sub.add_parser(name, help=help, description=help, parents=[common],
                              usage=f"%(prog)s {needs}[flags]", **kwargs)

    run = command("run", "run the bridge on this host: supervisor, coordinator and workers")
    _settings_flags(run, "run")

    work = command("worker", "one worker on chosen partitions, no group membership (debugging)",
                   "--partitions PARTITIONS ")
    work.add_argument("--partitions", type=_partitions, required=True, help="e.g. 0,1,4-7")
    _settings_flags(work, "worker")

    check = command("check", "reach Kafka and Redis with these settings and report what the bridge would meet")
    _settings_flags(check, "check")

    push = command("push", "push one job into Redis as the bridge would, without Kafka", "--class CLASS ")
    _job_flags(push)
    _settings_flags(push, "push")

    produce = command("produce", "send one job to the Kafka topic, as a producer service would",
                      "--class CLASS ")
    produce.add_argument("--key", default="", help="the routing key (jobs of one key keep their order)")
    _job_flags(produce)
    _settings_flags(produce, "produce")

    command("proto", "print the path of the installed job.proto (for other languages' producers)")
    command("middleware", "print the path of the installed Sidekiq middleware (K2S_COMMIT_ON=performed)")

    dlq = command("dlq", "list the dead-letter topic, or replay chosen messages", "list|replay ")
    actions = dlq.add_subparsers(dest="dlq_action", metavar="ACTION", required=True, prog="kafka2sidekiq dlq")
    listing = actions.add_parser("list", help="print the dead letters that match the filters", parents=[common],
                                 usage="%(prog)s [filters] [flags]")
    listing.add_argument("--limit", type=int, help="stop after this many")
    replay = actions.add_parser("replay", help="send the matching dead letters back to the topic or into a queue",
                                parents=[common], usage="%(prog)s [--to topic|queue:NAME] [filters] [flags]")
    replay.add_argument("--to", type=_destination, default="topic",
                        help="topic (default: back into the topic each came from, checked again) or "
                             "queue:NAME (straight into Redis queue NAME, class allow-list not applied)")
    replay.add_argument("--dry-run", action="store_true", help="print what would be sent; send nothing")
    replay.add_argument("--rate", type=float, default=100.0, help="most messages sent per second (default 100)")
    replay.add_argument("--limit", type=int, help="stop after this many")
    for name, action in (("dlq list", listing), ("dlq replay", replay)):
        _dlq_filters(action)
        _settings_flags(action, name)
    return p


def _destination(text: str) -> str:
    if text == "topic" or (text.startswith("queue:") and len(text) > len("queue:")):
        return text
    raise argparse.ArgumentTypeError(f"{text!r}: expected topic or queue:NAME")


def _offsets(text: str) -> tuple[int, int]:
    lo, _, hi = text.partition("-")
    if not lo.strip().isdigit() or (hi and not hi.strip().isdigit()):
        raise argparse.ArgumentTypeError(f"{text!r}: expected an offset or a range such as 100-250")
    return int(lo), int(hi or lo)


def _time(text: str) -> int:
    from .dlq import parse_time
    try:
        return parse_time(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a time such as 2026-11-25T02:40:00Z "
                                         f"or epoch seconds") from None


def _dlq_filters(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("filters (all must match)")
    group.add_argument("--partition", type=int, help="only this partition of the dead-letter topic")
    group.add_argument("--offsets", type=_offsets, help="offsets of the dead-letter topic, e.g. 100-250")
    group.add_argument("--since", type=_time, help="dead-lettered at or after this time (UTC unless given)")
    group.add_argument("--until", type=_time, help="dead-lettered before this time")
    group.add_argument("--reason", help="reason code, e.g. class_not_allowed")
    group.add_argument("--class", dest="job_class", help="job class (or ActiveJob class)")
    group.add_argument("--queue", help="queue the job asked for")


def _job_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--class", dest="job_class", required=True, help="Ruby job class, e.g. HardJob")
    parser.add_argument("--args", default="[]", help="arguments as a JSON array (default [])")
    parser.add_argument("--queue", default="", help="queue (default: the default queue)")
    parser.add_argument("--at", type=_epoch, help="run at this epoch time (seconds)")
    parser.add_argument("--jid", type=_jid, help="job id, 24 lowercase hex (default: generated)")
    parser.add_argument("--retry", type=_retry, help="true, false or a number of retries (default true)")
    parser.add_argument("--extra", default="", help="extra top-level keys as a JSON object")
    parser.add_argument("--wrapped", default="", help="ActiveJob class, when --class is the wrapper")


def _epoch(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected epoch seconds such as 1767225600") from None


def _jid(text: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{24}", text):
        raise argparse.ArgumentTypeError(f"{text!r}: expected 24 lowercase hex digits "
                                         f"(Sidekiq's jid), or no --jid for a generated one")
    return text


def _retry(text: str) -> bool | int:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if text.isdigit():
        return int(text)
    raise argparse.ArgumentTypeError(f"{text!r}: expected true, false or a number of retries")


def _run_worker(settings: config.Settings, partitions: list[int]) -> int:
    from .worker import BootError, Worker

    stopping = []

    def on_signal(signum, frame):
        if stopping:  # a second signal: leave now
            os._exit(EXIT_FAILED)
        stopping.append(signum)
        logging.getLogger("kafka2sidekiq").info("signal %s: finishing the batch in hand",
                                                signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    worker = Worker(settings, should_stop=lambda: bool(stopping))
    print(f"kafka2sidekiq {__version__}: {settings.topic}@{settings.bootstrap_servers} -> "
          f"{config.redact(settings.redis_url)} (dead letters: {settings.dead_letter_topic})", flush=True)
    try:
        worker.boot()
    except BootError as exc:  # alone, nobody would start it again: say why and leave
        print(f"kafka2sidekiq worker: {exc}", file=sys.stderr)
        return exits.UNAVAILABLE if exc.transient else exits.BOOT
    try:
        worker.run(partitions)
    finally:
        worker.close()
    return EXIT_OK


def _job(args) -> bytes:
    """The Job message the --class/--args/... flags describe."""
    from ._proto.job_pb2 import Job

    job = Job(job_class=args.job_class, queue=args.queue, args_json=args.args, jid=args.jid or "",
              extra_json=args.extra, wrapped=args.wrapped)
    if args.at is not None:
        job.at = args.at
    if isinstance(args.retry, bool):
        job.retry = args.retry
    elif args.retry is not None:
        job.retry_count = args.retry
    return job.SerializeToString()


def _push(job: bytes, settings: config.Settings) -> int:
    from .push import push

    batch = push(settings.redis_url, [job], settings.encoder_options(), settings.redis_namespace,
                 settings.redis_tls)
    for queue, payloads in batch.queues.items():
        print(f"queue:{queue} {payloads[0].decode()}")
    for score, payload in batch.scheduled:
        print(f"schedule@{score.decode()} {payload.decode()}")
    return EXIT_OK


def _produce(job: bytes, key: str, settings: config.Settings) -> int:
    from confluent_kafka import KafkaError, KafkaException, Producer

    from .source import producer_config

    delivered = []
    producer = Producer(producer_config(settings, "kafka2sidekiq-produce"))
    producer.produce(settings.topic, job, key.encode() or None,
                     on_delivery=lambda err, msg: delivered.append((err, msg)))
    producer.flush(PRODUCE_SECONDS)
    if not delivered:
        raise KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT,
                                        f"not acknowledged within {PRODUCE_SECONDS} s"))
    err, msg = delivered[0]
    if err is not None:
        raise KafkaException(err)
    print(f"{msg.topic()}/{msg.partition()}@{msg.offset()}")
    return EXIT_OK


def _log_format(args: argparse.Namespace) -> str:
    """--log-format, else K2S_LOG_FORMAT, else text."""
    if getattr(args, "log_format", None):
        return args.log_format
    raw = os.environ.get("K2S_LOG_FORMAT", "")
    if raw and raw not in logs.FORMATS:
        raise config.ConfigError(f"K2S_LOG_FORMAT={raw!r} is not valid: expected {' or '.join(logs.FORMATS)}")
    return raw or logs.FORMATS[0]


def _configure(args: argparse.Namespace) -> config.Settings:
    """Everything the command will use, checked before it does anything; ConfigError
    names the first bad value. Unknown K2S_* names are warned about, not refused."""
    args.log_format = _log_format(args)
    logs.configure(args.log_format, "supervisor" if args.command == "run" else args.command)
    if args.command not in ("run", "worker") and not getattr(args, "debug", False):
        # a one-shot command says what went wrong in its one last line; librdkafka's
        # running commentary (a refused connection, again and again) is for --debug
        logging.getLogger("librdkafka").setLevel(logging.CRITICAL)
    for warning in config.unknown_names():
        logging.getLogger("kafka2sidekiq").warning("%s", warning)
    settings = _settings(args)
    from . import preflight  # librdkafka reads the Kafka settings in a child: nothing here forks later with it
    preflight.check(settings)
    return settings


def main(argv: list[str] | None = None) -> int:
    args, unknown = parser().parse_known_args(argv)
    if unknown:  # named with the command: a flag of another command is the usual cause
        name = " ".join(filter(None, ("kafka2sidekiq", args.command, getattr(args, "dlq_action", None))))
        print(f"{name}: unrecognized arguments: {' '.join(unknown)} (see {name} --help)", file=sys.stderr)
        return EXIT_USAGE
    if args.command is None:
        parser().print_help()
        return EXIT_USAGE
    if args.command in ("proto", "middleware"):
        from . import middleware_path, proto_path
        print(proto_path() if args.command == "proto" else middleware_path())
        return EXIT_OK
    try:
        settings = _configure(args)
    except config.ConfigError as exc:
        print(f"kafka2sidekiq: {exc}", file=sys.stderr)
        return config.EXIT_CONFIG
    name = " ".join(filter(None, (args.command, getattr(args, "dlq_action", None))))
    try:
        return _dispatch(args, settings)
    except KeyboardInterrupt:
        print(f"kafka2sidekiq {name}: interrupted", file=sys.stderr)
        return exits.INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - every failure: one line, its own exit code
        if getattr(args, "debug", False):
            traceback.print_exc()
        code, line = failure(exc, settings)
        print(f"kafka2sidekiq {name}: {line}", file=sys.stderr)
        return code


def _dispatch(args: argparse.Namespace, settings: config.Settings) -> int:
    if args.command in ("push", "produce"):
        from .explain import check

        job = _job(args)
        check(job, settings)  # the bridge's own encoder: refused here, nothing is sent
        return _push(job, settings) if args.command == "push" else _produce(job, args.key, settings)
    if args.command == "dlq":
        from .dlq import Filters, run as dlq
        first, last = args.offsets or (None, None)
        filters = Filters(partition=args.partition, first=first, last=last, since_ms=args.since,
                          until_ms=args.until, reason=args.reason, job_class=args.job_class, queue=args.queue)
        return dlq(settings, args.dlq_action, filters, args.limit, getattr(args, "to", "topic"),
                   getattr(args, "dry_run", False), getattr(args, "rate", 100.0))
    if args.command == "check":
        from .check import run as check
        return check(settings)
    if args.command == "run":
        from .supervisor import Supervisor
        print(f"kafka2sidekiq {__version__}: {settings.topic}@{settings.bootstrap_servers} -> "
              f"{config.redact(settings.redis_url)} with {settings.workers} worker(s) "
              f"(dead letters: {settings.dead_letter_topic})", flush=True)
        logging.getLogger("kafka2sidekiq").info("settings: %s", config.effective(settings))
        return Supervisor(settings, lambda role, slot: logs.configure(args.log_format, role, slot)).run()
    return _run_worker(settings, args.partitions)
