"""Which envelope encoder runs: ``auto`` (the compiled one when built, else the
reference), ``fast`` (the compiled one, or an error) or ``python`` (the reference)."""

from __future__ import annotations

from . import _encoder_py
from .encoder_types import REASONS, Batch, EncoderOptions  # noqa: F401  (the public API)

try:
    from . import _encoder_c
except ImportError as exc:  # built with K2S_NO_EXTENSIONS, or not built at all
    _encoder_c = None
    _missing = exc

CHOICES = ("auto", "fast", "python")


class EncoderUnavailable(RuntimeError):
    pass


def select(choice: str = "auto"):
    """The encoder module for ``choice``; both have ``Encoder(options, seed=None)``."""
    if choice not in CHOICES:
        raise ValueError(f"encoder must be one of {', '.join(CHOICES)}, not {choice!r}")
    if choice == "python" or (choice == "auto" and _encoder_c is None):
        return _encoder_py
    if _encoder_c is None:
        raise EncoderUnavailable(
            f"the compiled encoder is not built ({_missing}); reinstall without "
            f"K2S_NO_EXTENSIONS, or set K2S_ENCODER=python")
    return _encoder_c


def describe(module) -> str:
    if module is not _encoder_c or module is None:
        return "pure Python"
    import confluent_kafka

    if module.message_fields(confluent_kafka.Message) is None:  # slower, still right
        return (f"compiled (Cython; the Message layout of confluent-kafka {confluent_kafka.version()[0]} "
                f"not recognised: accessors called)")
    return "compiled (Cython; Messages read in place)"
