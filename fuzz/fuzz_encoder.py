"""Coverage-guided fuzzing of the envelope encoder: on any input, the compiled encoder
must give what the reference gives (the same Batch, byte for byte, or the same error).

    python fuzz/fuzz_encoder.py --minutes 10        # adds what it finds to fuzz/corpus/
    python fuzz/fuzz_encoder.py --seconds 15 --corpus /tmp/new fuzz/corpus   # CI's short run

atheris (libFuzzer) mutates the inputs, guided by the coverage of the Python code it
instruments: the reference twin, whose branches are the specification. For the C paths'
coverage as well, build the extension with clang and K2S_SANITIZE=fuzzer-no-link,address.
Each input is cut into encoder options and a batch of up to 8 messages: raw bytes, or a Job
written field by field from fuzzed parts (so invalid UTF-8 and odd JSON reach the
checkers), sometimes in Schema Registry framing, sometimes with Kafka headers. A mismatch
stops the run and leaves the input as crash-<sha1> beside it; replay it with
``python fuzz/fuzz_encoder.py crash-…``.
"""

from __future__ import annotations

import argparse
import struct
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from kafka2sidekiq import _encoder_py

from kafka2sidekiq import _encoder_c

CORPUS = Path(__file__).resolve().parent / "corpus"

NAMES = ["HardJob", "A::B", "Sidekiq::ActiveJob::Wrapper", "", "hard", "A::", "Ä", "A" * 256]
QUEUES = ["", "default", "critical", "a,b", "é", "x" * 256]
JSON_PARTS = [b"[", b"]", b"{", b"}", b",", b":", b'"', b"\\", b"\\u00e9", b"\\ud83d\\ude00", b"\\ud800", b"1",
              b"-0", b"1e400", b"1.7976931348623159e308", b"0.5e-3", b"12345678901234567890", b"true", b"null",
              b'"tags"', b'"retry_for"', b'"class"', b'"cl\\u0061ss"', b'"a"', b"1000000001", b" ", "é😀".encode(),
              b"\xff", b"\xed\xa0\x80", b"[" * 99, b"]" * 99]
HEADER_NAMES = ["traceparent", "tracestate", "x-datadog-trace-id", "other"]
TRACEPARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def json_text(fdp) -> bytes:
    if fdp.ConsumeBool():
        return fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64))
    return b"".join(fdp.PickValueInList(JSON_PARTS) for _ in range(fdp.ConsumeIntInRange(0, 12)))


def job_value(fdp) -> bytes:
    fields = []
    for _ in range(fdp.ConsumeIntInRange(0, 8)):
        number = fdp.ConsumeIntInRange(1, 12)
        if number in (1, 10):
            data = fdp.PickValueInList(NAMES).encode() if fdp.ConsumeBool() else fdp.ConsumeBytes(8)
        elif number == 2:
            data = fdp.PickValueInList(QUEUES).encode()
        elif number in (3, 9):
            data = json_text(fdp)
        elif number == 5:
            data = fdp.ConsumeBytes(24)
        elif number in (4, 8):
            fields.append(varint(number << 3 | 1) + struct.pack("<d", fdp.ConsumeRegularFloat()
                                                               if fdp.ConsumeBool() else fdp.ConsumeFloat()))
            continue
        elif number in (6, 7):
            fields.append(varint(number << 3) + varint(fdp.ConsumeInt(9)))
            continue
        else:
            fields.append(varint(number << 3 | fdp.PickValueInList([0, 1, 2, 3, 5])) + fdp.ConsumeBytes(3))
            continue
        fields.append(varint(number << 3 | 2) + varint(len(data)) + data)
    return b"".join(fields)


def message(fdp) -> tuple:
    kind = fdp.ConsumeIntInRange(0, 3)
    value = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 120)) if kind == 0 else job_value(fdp)
    if kind == 3:  # Schema Registry framing, its indexes fuzzed
        value = b"\x00" + fdp.ConsumeBytes(4).ljust(4, b"\x00") + fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 3)) + value
    fields = (value if fdp.ConsumeIntInRange(0, 20) else None, fdp.ConsumeIntInRange(-1, 2 ** 45),
              fdp.ConsumeIntInRange(0, 63), fdp.ConsumeIntInRange(0, 2 ** 40))
    if fdp.ConsumeIntInRange(0, 3) == 0:
        headers = [(fdp.PickValueInList(HEADER_NAMES), TRACEPARENT if fdp.ConsumeBool() else fdp.ConsumeBytes(20))
                   for _ in range(fdp.ConsumeIntInRange(0, 3))]
        return fields + (headers,)
    return fields


def options(fdp) -> _encoder_py.EncoderOptions:
    return _encoder_py.EncoderOptions(
        timestamps=fdp.PickValueInList(["float", "ms"]),
        class_allow=fdp.PickValueInList([None, frozenset({"HardJob", "A::B"})]),
        queue_allow=fdp.PickValueInList([None, frozenset({"default"})]),
        max_message_bytes=fdp.PickValueInList([1 << 20, 32]),
        jid=fdp.PickValueInList(["random", "origin"]),
        add_origin=fdp.ConsumeBool(),
        wire_format=fdp.PickValueInList(list(_encoder_py.WIRE_FORMATS)),
        schema_ids=fdp.PickValueInList([None, frozenset({7})]),
        trace_headers=fdp.PickValueInList([_encoder_py.TRACE_HEADERS, ()]),
    )


def outcome(module, opts, batch, now):
    try:
        out = module.Encoder(opts, seed=12345).encode_batch("fuzz", batch, now)
    except Exception as exc:  # both twins must refuse the same input the same way
        return type(exc).__name__
    return (out.rejects, out.errors, out.offsets, out.size, out.end, list(out.scheduled),
            [(q, list(p)) for q, p in out.queues.items()])


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    opts = options(fdp)
    batch = [message(fdp) for _ in range(fdp.ConsumeIntInRange(1, 8))]
    now = fdp.ConsumeIntInRange(0, 2 ** 45)
    expected, actual = outcome(_encoder_py, opts, batch, now), outcome(_encoder_c, opts, batch, now)
    if actual != expected:
        raise AssertionError(f"compiled != reference\noptions {opts}\nbatch {batch!r}\n"
                             f"reference {expected!r}\ncompiled  {actual!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, help="how long to fuzz")
    parser.add_argument("--seconds", type=float, help="how long to fuzz (instead of --minutes)")
    parser.add_argument("--corpus", default=str(CORPUS), help="where new inputs go (default fuzz/corpus)")
    known, rest = parser.parse_known_args()
    seconds = known.seconds if known.seconds is not None else (known.minutes or 1) * 60
    args = [sys.argv[0], f"-max_total_time={max(1, int(seconds))}", "-timeout=20", "-rss_limit_mb=4096",
            "-max_len=4096", *rest]
    if not any(Path(a).is_file() for a in rest):  # a crash file to replay takes no corpus
        Path(known.corpus).mkdir(parents=True, exist_ok=True)
        args.insert(1, known.corpus)
    atheris.Setup(args, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
