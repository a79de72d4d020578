"""The benchmarks' own compiled helper (bench/_messages.c), built on first use with the C
compiler that built the project's encoder, into build/bench-helper/, once per source and
Python version. It reads confluent-kafka Messages in place at the offsets the project's
compiled encoder found (kafka2sidekiq._encoder_c.message_fields)."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shlex
import subprocess
import sysconfig

from .common import ROOT

SOURCE = ROOT / "bench" / "_messages.c"
CACHE = ROOT / "build" / "bench-helper"  # ignored by git, as the build of the extension is


def load():
    """The _messages module, built first if this source and Python have none yet."""
    tag = hashlib.sha256(SOURCE.read_bytes() + sysconfig.get_config_var("EXT_SUFFIX").encode()).hexdigest()[:12]
    path = CACHE / f"_messages-{tag}{sysconfig.get_config_var('EXT_SUFFIX')}"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        compiler = shlex.split(sysconfig.get_config_var("CC") or "cc")
        partial = path.with_name(f"{path.name}.{os.getpid()}")
        argv = [*compiler, "-O2", "-shared", "-fPIC", f"-I{sysconfig.get_paths()['include']}", str(SOURCE),
                "-o", str(partial), "-ldl"]
        built = subprocess.run(argv, capture_output=True, text=True)
        if built.returncode:
            raise RuntimeError(f"cannot build {SOURCE.name} ({shlex.join(argv)}): {built.stderr.strip()[-1000:]}")
        partial.replace(path)  # whole or not at all, even with two builders at once
    spec = importlib.util.spec_from_file_location("_messages", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rdkafka_library() -> str:
    """The path of the librdkafka confluent-kafka runs on: the one its wheel carries, or
    the system's; an error naming where it looked when there is none."""
    import ctypes.util
    from pathlib import Path

    import confluent_kafka

    package = Path(confluent_kafka.__file__).parent
    found = sorted(package.parent.glob("confluent_kafka.libs/librdkafka*.so*")) or \
        sorted(package.glob(".dylibs/librdkafka*")) or [ctypes.util.find_library("rdkafka")]
    if found[0] is None:
        raise RuntimeError(f"no librdkafka beside {package} nor on the system: the latency benchmark's "
                           f"producers need the one confluent-kafka uses")
    return str(found[0])


def message_fields() -> tuple[type, dict]:
    """confluent-kafka's Message type and where its fields are, from the project's
    encoder; an error naming the cause when the encoder did not recognise the layout."""
    from confluent_kafka import Message, version

    from kafka2sidekiq import _encoder_c

    fields = _encoder_c.message_fields(Message)
    if fields is None:
        raise RuntimeError(f"the compiled encoder does not recognise the Message layout of confluent-kafka "
                           f"{version()[0]}: the strict ceiling and the latency floor need it")
    return Message, fields
