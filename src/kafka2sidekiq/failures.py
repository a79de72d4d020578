"""What stopped a command, as its exit code and one line: Kafka or Redis unreachable
(exits.UNAVAILABLE), credentials or permission refused (exits.REFUSED), a job the bridge
would refuse (exits.INVALID_JOB), anything else (exits.FAILED)."""

from __future__ import annotations

from . import config, exits



# librdkafka error names: the broker cannot be reached / refuses who we are
_KAFKA_UNREACHABLE = ("_TRANSPORT", "_ALL_BROKERS_DOWN", "_TIMED_OUT", "_MSG_TIMED_OUT", "_RESOLVE",
                      "REQUEST_TIMED_OUT", "_TIMED_OUT_QUEUE", "NETWORK_EXCEPTION")
_KAFKA_REFUSED = ("SASL_AUTHENTICATION_FAILED", "_AUTHENTICATION", "TOPIC_AUTHORIZATION_FAILED",
                  "GROUP_AUTHORIZATION_FAILED", "CLUSTER_AUTHORIZATION_FAILED", "_SSL")


def failure(exc: BaseException, settings: config.Settings | None) -> tuple[int, str]:
    """(exit code, one line) for what stopped a command."""
    import redis
    from confluent_kafka import KafkaError, KafkaException

    from .explain import InvalidJob
    from .push import Rejected

    if isinstance(exc, (InvalidJob, Rejected)):
        return exits.INVALID_JOB, str(exc)
    cause = exc
    while cause.__cause__ is not None and not isinstance(cause, (redis.RedisError, KafkaException)):
        cause = cause.__cause__  # the sink wraps Redis errors in RedisUnavailable
    at = f" at {config.redact(settings.redis_url)}" if settings else ""
    text = " ".join(str(cause).split()) or type(cause).__name__
    if isinstance(cause, redis.AuthenticationError) or (
            isinstance(cause, redis.ResponseError) and text.startswith(("NOPERM", "WRONGPASS", "NOAUTH"))):
        return exits.REFUSED, f"Redis{at} refused: {text}"
    if isinstance(cause, (redis.ConnectionError, redis.TimeoutError)):
        return exits.UNAVAILABLE, f"cannot reach Redis{at}: {text}"
    if isinstance(cause, redis.RedisError):
        return exits.FAILED, f"Redis{at}: {text}"
    if isinstance(cause, KafkaException):
        error = cause.args[0] if cause.args and isinstance(cause.args[0], KafkaError) else None
        name = error.name() if error is not None else ""
        where = f"Kafka at {settings.bootstrap_servers}" if settings else "Kafka"
        text = error.str() if error is not None else text
        if name in _KAFKA_REFUSED:
            return exits.REFUSED, f"{where} refused: {text}"
        if name in _KAFKA_UNREACHABLE:
            return exits.UNAVAILABLE, f"cannot reach {where}: {text}"
        return exits.FAILED, f"{where}: {text}"
    if isinstance(exc, OSError):
        return exits.FAILED, f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}"
    return exits.FAILED, f"{type(exc).__name__}: {text} (--debug shows where)"
