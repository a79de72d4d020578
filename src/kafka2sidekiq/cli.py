"""Command line: ``kafka2sidekiq run | worker | check | push | produce | dlq``.

Every setting is a flag too (``--batch-size``) and an environment variable
(``K2S_BATCH_SIZE``); flags win. Exit codes (exits.py): 0 done, 1 failed, 2 usage, 3 a
process could not boot, 4 crash loop, 78 configuration.

Every command checks all of its configuration before it does anything (for ``run``,
before anything forks): the settings, K2S_LOG_FORMAT, and the K2S_KAFKA_* passthrough as
librdkafka reads it (``preflight``). A bad value is one line on stderr and exit 78.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from . import __version__, config, exits, logs

EXIT_OK, EXIT_FAILED, EXIT_USAGE = exits.OK, exits.FAILED, exits.USAGE


def _settings_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("settings (each also K2S_<NAME> in the environment)")
    for s in config.SETTINGS:
        text = f"{s.help} [{s.env}, default {s.default or 'empty'}]"
        group.add_argument(s.flag, dest=f"setting_{s.name}", metavar=s.name.upper(),
                           help=text.replace("%", "%%"))  # argparse %-formats help


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
    p = argparse.ArgumentParser(prog="kafka2sidekiq",
                                description="Messages on a Kafka topic become Sidekiq jobs in Redis.")
    p.add_argument("--version", action="version", version=f"kafka2sidekiq {__version__}")
    p.add_argument("--log-format", choices=logs.FORMATS,  # default: K2S_LOG_FORMAT, checked in main()
                   help="log lines as text (default) or one JSON object per line [K2S_LOG_FORMAT]")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run the bridge on this host: supervisor, coordinator and workers")
    _settings_flags(run)

    work = sub.add_parser("worker", help="one worker on chosen partitions, no group membership (debugging)")
    work.add_argument("--partitions", type=_partitions, required=True, help="e.g. 0,1,4-7")
    _settings_flags(work)

    check = sub.add_parser("check", help="reach Kafka and Redis with these settings and report what the bridge would meet")
    _settings_flags(check)

    push = sub.add_parser("push", help="push one job into Redis as the bridge would, without Kafka")
    _job_flags(push)
    _settings_flags(push)

    produce = sub.add_parser("produce", help="send one job to the Kafka topic, as a producer service would")
    produce.add_argument("--key", default="", help="the routing key (jobs of one key keep their order)")
    _job_flags(produce)
    _settings_flags(produce)

    sub.add_parser("proto", help="print the path of the installed job.proto (for other languages' producers)")

    dlq = sub.add_parser("dlq", help="list the dead-letter topic, or replay chosen messages")
    actions = dlq.add_subparsers(dest="dlq_action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="print the dead letters that match the filters")
    listing.add_argument("--limit", type=int, help="stop after this many")
    replay = actions.add_parser("replay", help="send the matching dead letters back to the topic or into a queue")
    replay.add_argument("--to", type=_destination, default="topic",
                        help="topic (default: back into the topic each came from, checked again) or "
                             "queue:NAME (straight into Redis queue NAME, class allow-list not applied)")
    replay.add_argument("--dry-run", action="store_true", help="print what would be sent; send nothing")
    replay.add_argument("--rate", type=float, default=100.0, help="most messages sent per second (default 100)")
    replay.add_argument("--limit", type=int, help="stop after this many")
    for action in (listing, replay):
        _dlq_filters(action)
        _settings_flags(action)
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
    parser.add_argument("--at", type=float, help="run at this epoch time (seconds)")
    parser.add_argument("--jid", default="", help="job id, 24 lowercase hex (default: generated)")
    parser.add_argument("--retry", help="true, false or a number of retries (default true)")
    parser.add_argument("--extra", default="", help="extra top-level keys as a JSON object")
    parser.add_argument("--wrapped", default="", help="ActiveJob class, when --class is the wrapper")



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
        return exits.BOOT
    try:
        worker.run(partitions)
    finally:
        worker.close()
    return EXIT_OK


def _job(args) -> bytes:
    """The Job message the --class/--args/... flags describe; ValueError for a bad --retry."""
    from ._proto.job_pb2 import Job

    job = Job(job_class=args.job_class, queue=args.queue, args_json=args.args, jid=args.jid,
              extra_json=args.extra, wrapped=args.wrapped)
    if args.at is not None:
        job.at = args.at
    if args.retry is not None:
        low = args.retry.lower()
        if low in ("true", "false"):
            job.retry = low == "true"
        elif args.retry.isdigit():
            job.retry_count = int(args.retry)
        else:
            raise ValueError(f"--retry {args.retry!r}: expected true, false or a number")
    return job.SerializeToString()


def _push(job: bytes, settings: config.Settings) -> int:
    from .push import Rejected, push

    try:
        batch = push(settings.redis_url, [job], settings.encoder_options(),
                     settings.redis_namespace, settings.redis_tls)
    except Rejected as exc:
        print(f"kafka2sidekiq push: rejected: {exc}", file=sys.stderr)
        return EXIT_FAILED
    for queue, payloads in batch.queues.items():
        print(f"queue:{queue} {payloads[0].decode()}")
    for score, payload in batch.scheduled:
        print(f"schedule@{score.decode()} {payload.decode()}")
    return EXIT_OK


def _produce(job: bytes, key: str, settings: config.Settings) -> int:
    from confluent_kafka import KafkaException, Producer

    from .source import producer_config

    delivered = []
    producer = Producer(producer_config(settings, "kafka2sidekiq-produce"))
    try:
        producer.produce(settings.topic, job, key.encode() or None,
                         on_delivery=lambda err, msg: delivered.append((err, msg)))
        producer.flush(30)
    except KafkaException as exc:
        delivered.append((exc, None))
    err, msg = delivered[0] if delivered else ("not acknowledged within 30 s", None)
    if err is not None:
        print(f"kafka2sidekiq produce: {settings.topic}@{settings.bootstrap_servers}: {err}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{msg.topic()}/{msg.partition()}@{msg.offset()}")
    return EXIT_OK


def _log_format(args: argparse.Namespace) -> str:
    """--log-format, else K2S_LOG_FORMAT, else text."""
    if args.log_format:
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
    for warning in config.unknown_names():
        logging.getLogger("kafka2sidekiq").warning("%s", warning)
    settings = _settings(args)
    from . import preflight  # librdkafka reads the Kafka settings in a child: nothing here forks later with it
    preflight.check(settings)
    return settings


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command is None:
        parser().print_help()
        return EXIT_USAGE
    if args.command == "proto":
        from . import proto_path
        print(proto_path())
        return EXIT_OK
    try:
        settings = _configure(args)
    except config.ConfigError as exc:
        print(f"kafka2sidekiq: {exc}", file=sys.stderr)
        return config.EXIT_CONFIG
    if args.command in ("push", "produce"):
        try:
            job = _job(args)
        except ValueError as exc:
            print(f"kafka2sidekiq {args.command}: {exc}", file=sys.stderr)
            return EXIT_USAGE
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
        return Supervisor(settings, lambda role, slot: logs.configure(args.log_format, role, slot)).run()
    return _run_worker(settings, args.partitions)
