"""Envelope encoder: nanoseconds per job, compiled vs reference vs a straightforward
baseline (the protobuf library's decode, a dict, msgspec's encode), in the same run.

    python -m bench.bench_encoder [--runs 7] [--quick] [--against REV]

Each run encodes batches of 1,000 messages for at least ~0.3 s per encoder; the figure
is the median over runs. Four batches: one ~200-byte job a thousand times, a thousand
different jobs of that shape (as a topic carries them: other ids, amounts, lengths and
classes, which the branch predictor cannot learn by heart), a job with ~4 KB of args, all
as (value, timestamp, partition, offset) tuples; and the ~200-byte job as confluent-kafka
Messages, which is what the worker hands the encoder, without headers and with W3C
traceparent/tracestate headers (which become job keys).

Worst cases: 1 MiB messages of each shape that once cost more per byte than plain args
(a number with an exponent, integers of 19+ digits, escaped top-level extra keys, many
extra keys, long escaped strings), beside a plain 1 MiB args array ``[[],[],…]``, compiled
encoder only: each shape's time over the plain one's (issue 18 asks for at most 10x).

``--against REV`` builds the compiled encoder of another commit (``main``, a sha) into
.k2s/ab/<sha>/ and runs it as one more contender, interleaved with this one: an A/B in
one process, as the box is noisy.
Writes bench/results/encoder.json (encoder-quick.json with --quick).
"""

from __future__ import annotations

import argparse
import importlib
import random
import secrets
import subprocess
import sys
import tarfile
import io
import time

import msgspec
from confluent_kafka import Message

from kafka2sidekiq import _encoder_py
from kafka2sidekiq._proto.job_pb2 import Job
from kafka2sidekiq.encoder_types import EncoderOptions

from . import common

BATCH = 1000
TRACEPARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
NOW_MS = 1700000001000


def small_job() -> bytes:
    return Job(job_class="Billing::ChargeJob", queue="default",
               args_json='[48151623, "cus_9s6XKzkNRiz8i3", {"amount": 4200, "currency": "usd", '
                         '"idempotency_key": "8f14e45fceea167a5a36dedd4bea2543"}]',
               extra_json='{"tags":["billing"]}').SerializeToString()


def varied_jobs(count: int) -> list[bytes]:
    """``count`` jobs of small_job's shape, each with its own values (seeded)."""
    rnd = random.Random(7)
    word = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return [Job(job_class=rnd.choice(["Billing::ChargeJob", "Billing::RefundJob", "Mailers::ReceiptJob"]),
                queue="default",
                args_json=f'[{rnd.randrange(1, 10 ** rnd.randrange(2, 10))}, '
                          f'"cus_{"".join(rnd.choices(word, k=rnd.randrange(8, 20)))}", '
                          f'{{"amount": {rnd.randrange(100, 10 ** 6)}, "currency": "{rnd.choice(["usd", "eur", "gbp"])}", '
                          f'"idempotency_key": "{rnd.randbytes(16).hex()}"}}]',
                extra_json=rnd.choice(['{"tags":["billing"]}', '{"tags":["billing","eu"]}', ""])).SerializeToString()
            for _ in range(count)]


def large_job() -> bytes:
    items = ", ".join(f'{{"sku": "SKU-{i:05d}", "qty": {i % 7 + 1}, "price": {i * 1.25}}}' for i in range(90))
    return Job(job_class="Orders::ImportJob", queue="imports",
               args_json=f'[{{"order_id": 99, "items": [{items}]}}]').SerializeToString()


class Baseline:
    """What a straightforward Python bridge does per message."""

    def __init__(self, options: EncoderOptions, seed=None) -> None:
        self.encode = msgspec.json.Encoder().encode
        self.decode = msgspec.json.decode

    def encode_batch(self, topic, messages, now_ms):
        queues: dict[str, list[bytes]] = {}
        now = now_ms / 1000
        for message in messages:
            if type(message) is tuple:
                value, timestamp_ms, partition, offset = message
            else:  # a confluent-kafka Message
                value, timestamp_ms = message.value(), message.timestamp()[1]
            job = Job.FromString(value)
            payload = {"retry": True, "queue": job.queue or "default", **self.decode(job.extra_json or "{}"),
                       "class": job.job_class, "args": self.decode(job.args_json or "[]"),
                       "jid": secrets.token_hex(12), "created_at": timestamp_ms / 1000, "enqueued_at": now}
            queues.setdefault(payload["queue"], []).append(self.encode(payload))
        return queues


MIB = 1 << 20


def _fill(head: str, member: str, tail: str, size: int = MIB - 64) -> str:
    """head + member, member, … + tail, as long as fits in ``size`` bytes."""
    count = (size - len(head) - len(tail)) // (len(member) + 1)
    return head + ",".join([member] * count) + tail


def worst_cases() -> dict[str, bytes]:
    """1 MiB Job messages: the plain args array, and each shape that was slow."""
    def keys(template: str) -> str:  # distinct keys, as many as fit
        count = (MIB - 64) // (len(template % 0) + 1)
        return "{" + ",".join(template % i for i in range(count)) + "}"

    shapes = {
        "plain": {"args_json": _fill("[", "[]", "]")},
        "exponent": {"args_json": "[1e0," + _fill("", "[]", "]")},
        "exponents": {"args_json": _fill("[", "1e300", "]")},
        "long_ints": {"args_json": _fill("[", "12345678901234567890123", "]")},
        "huge_float": {"args_json": "[1%se-%d]" % ("0" * (MIB - 100), MIB - 100 - 308)},  # ~1e308: strtod
        "escaped_keys": {"args_json": "[]", "extra_json": keys('"\\u0061%07d":0')},
        "many_keys": {"args_json": "[]", "extra_json": keys('"k%07d":0')},
        "escaped_strings": {"args_json": _fill("[", '"\\n\\u00e9\\ud83d\\ude00"', "]")},
    }
    return {name: Job(job_class="A", queue="default", **fields).SerializeToString() for name, fields in shapes.items()}


def worst(encoders: dict, runs: int, min_seconds: float) -> dict:
    """Milliseconds per 1 MiB message of each worst-case shape, and over the plain one's."""
    messages = {name: [(value, 1700000000123, 0, 0)] for name, value in worst_cases().items()}
    out = {}
    for label, enc in encoders.items():
        verdicts = {name: enc.encode_batch("jobs", m, NOW_MS).rejects for name, m in messages.items()}
        samples = {name: [] for name in messages}
        for _ in range(runs):
            for name, m in messages.items():
                samples[name].append(ns_per_job(enc, m, min_seconds / 4) / 1e6)
        med = {name: common.median(v) for name, v in samples.items()}
        out[label] = {name: {"ms_per_mib": round(med[name], 3), "over_plain": round(med[name] / med["plain"], 2),
                             "rejected": bool(verdicts[name])} for name in messages}
        print(f"worst cases, {label}: " + ", ".join(
            f"{name} {med[name]:.2f} ms ({med[name] / med['plain']:.1f}x)" for name in messages))
    return out


def encoder_at(rev: str):
    """The compiled encoder of commit ``rev``, built once into .k2s/ab/<sha>/ as its own
    package (k2s_ab_<sha>, that commit's src/kafka2sidekiq) so that it loads beside this
    one. Its compiled twin is _encoder_c, or _encoder before the twins were renamed."""
    sha = subprocess.run(["git", "rev-parse", rev], capture_output=True, text=True, check=True,
                         cwd=common.ROOT).stdout.strip()
    name = f"k2s_ab_{sha[:10]}"
    root = common.ROOT / ".k2s" / "ab" / sha[:10]
    if not any((root / name).glob("_encoder*.so")):
        archive = subprocess.run(["git", "archive", "--format=tar", sha, "ext", "src/kafka2sidekiq"],
                                 capture_output=True, check=True, cwd=common.ROOT).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            for member in tar.getmembers():
                if member.isfile():
                    target = root / (member.name if member.name.startswith("ext/")
                                     else name + member.name.removeprefix("src/kafka2sidekiq"))
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(tar.extractfile(member).read())
        (root / name / "__init__.py").write_text("")
        twin = "_encoder_c" if (root / "ext" / "_encoder_c.pyx").exists() else "_encoder"
        (root / "setup.py").write_text(
            "from Cython.Build import cythonize\nfrom setuptools import Extension, setup\n"
            f"setup(ext_modules=cythonize([Extension({name + '.' + twin!r}, ['ext/{twin}.pyx'], "
            "include_dirs=['ext'], extra_compile_args=['-O3'])], quiet=True, "
            "compiler_directives={'boundscheck': False, 'wraparound': False}))\n")
        subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], check=True, cwd=root)
    sys.path.insert(0, str(root))
    (built,) = (root / name).glob("_encoder*.so")
    return importlib.import_module(f"{name}.{built.name.split('.')[0]}")


def ns_per_job(enc, messages, min_seconds: float) -> float:
    rounds, start = 0, time.perf_counter()
    while True:
        enc.encode_batch("jobs", messages, NOW_MS)
        rounds += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return elapsed / (rounds * len(messages)) * 1e9


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="3 short runs")
    parser.add_argument("--against", metavar="REV", help="also run the compiled encoder of this commit")
    args = parser.parse_args(argv)
    runs, min_seconds = (3, 0.1) if args.quick else (args.runs, 0.3)

    from kafka2sidekiq import _encoder_c
    contenders = {"compiled": _encoder_c.Encoder, "reference": _encoder_py.Encoder, "baseline": Baseline}
    if args.against:
        contenders[f"compiled@{args.against}"] = encoder_at(args.against).Encoder
    options = EncoderOptions()
    results = {}
    batches = {"small": [small_job()] * BATCH, "varied": varied_jobs(BATCH), "large": [large_job()] * BATCH,
               "messages": [small_job()] * BATCH, "traced": [small_job()] * BATCH}
    for job_name, values in batches.items():
        messages = [(value, 1700000000123, i % 8, i) for i, value in enumerate(values)]
        if job_name in ("messages", "traced"):  # as the worker has them from consume()
            headers = [("traceparent", TRACEPARENT), ("tracestate", b"congo=t61rcWkgMzE")] \
                if job_name == "traced" else None
            messages = [Message(topic="jobs", value=value, timestamp=(1, timestamp), partition=partition,
                                offset=offset, headers=headers) for value, timestamp, partition, offset in messages]
        size = round(sum(map(len, values)) / len(values))
        encoders = {name: cls(options) for name, cls in contenders.items()}
        rejected = encoders["compiled"].encode_batch("jobs", messages, NOW_MS).rejects
        assert not rejected, f"the {job_name} batch must be all good jobs, not {rejected[:3]}"
        samples = {name: [] for name in contenders}
        for _ in range(runs):  # interleaved, so noise hits every contender alike
            for name, enc in encoders.items():
                samples[name].append(ns_per_job(enc, messages, min_seconds))
        med = {name: common.median(v) for name, v in samples.items()}
        results[job_name] = {
            "message_bytes": size,
            "ns_per_job_median": {k: round(v, 1) for k, v in med.items()},
            "ns_per_job_runs": {k: [round(x, 1) for x in v] for k, v in samples.items()},
            "baseline_over_compiled": round(med["baseline"] / med["compiled"], 2),
            "reference_over_compiled": round(med["reference"] / med["compiled"], 2),
        }
        if args.against:
            results[job_name][f"compiled_over_compiled@{args.against}"] = round(
                med["compiled"] / med[f"compiled@{args.against}"], 3)
        print(f"{job_name:8} job ({size} B): " + "  ".join(f"{k} {v:8.1f} ns" for k, v in med.items())
              + f"  -> {med['baseline'] / med['compiled']:.1f}x faster than the baseline")
    compiled = {k: cls(options) for k, cls in contenders.items() if k.startswith("compiled")}
    worst_results = worst(compiled, runs, min_seconds)
    path = common.write("encoder-quick" if args.quick else "encoder",
                        {"runs": runs, "batch": BATCH, "results": results, "worst_cases": worst_results})
    print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
