"""kafka2sidekiq: messages on a Kafka topic become Sidekiq jobs in Redis.

For producers: ``from kafka2sidekiq import Job`` (the message value, a protobuf message)
and ``proto_path()``, the job.proto it is made from, for other languages' code generators.
"""

from pathlib import Path

__version__ = "0.1.0"


def proto_path() -> Path:
    """Where the installed job.proto is (``kafka2sidekiq proto`` prints it)."""
    return Path(__file__).parent / "proto" / "kafka2sidekiq" / "v1" / "job.proto"


def middleware_path() -> Path:
    """Where the installed Sidekiq middleware of K2S_COMMIT_ON=performed is
    (``kafka2sidekiq middleware`` prints it)."""
    return Path(__file__).parent / "ruby" / "kafka2sidekiq_performed.rb"


def __getattr__(name: str):
    if name == "Job":  # imported on first use: the bridge's own processes do not need it here
        from ._proto.job_pb2 import Job
        return Job
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
