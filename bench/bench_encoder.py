"""Envelope encoder: nanoseconds per job, compiled vs reference vs a straightforward
baseline (the protobuf library's decode, a dict, msgspec's encode), in the same run.

    python -m bench.bench_encoder [--runs 7] [--quick]

Each run encodes batches of 1,000 messages for at least ~0.3 s per encoder; the figure
is the median over runs. Four batches: one ~200-byte job a thousand times, a thousand
different jobs of that shape (as a topic carries them: other ids, amounts, lengths and
classes, which the branch predictor cannot learn by heart), a job with ~4 KB of args, all
as (value, timestamp, partition, offset) tuples; and the ~200-byte job as confluent-kafka
Messages, which is what the worker hands the encoder.
Writes bench/results/encoder.json (encoder-quick.json with --quick).
"""

from __future__ import annotations

import argparse
import random
import secrets
import time

import msgspec
from confluent_kafka import Message

from kafka2sidekiq import encoder_py
from kafka2sidekiq._proto.job_pb2 import Job
from kafka2sidekiq.encoder_py import EncoderOptions

from . import common

BATCH = 1000
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
    args = parser.parse_args(argv)
    runs, min_seconds = (3, 0.1) if args.quick else (args.runs, 0.3)

    from kafka2sidekiq import _encoder
    contenders = {"compiled": _encoder.Encoder, "reference": encoder_py.Encoder, "baseline": Baseline}
    options = EncoderOptions()
    results = {}
    batches = {"small": [small_job()] * BATCH, "varied": varied_jobs(BATCH), "large": [large_job()] * BATCH,
               "messages": [small_job()] * BATCH}
    for job_name, values in batches.items():
        messages = [(value, 1700000000123, i % 8, i) for i, value in enumerate(values)]
        if job_name == "messages":  # as the worker has them from consume()
            messages = [Message(topic="jobs", value=value, timestamp=(1, timestamp), partition=partition,
                                offset=offset) for value, timestamp, partition, offset in messages]
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
        print(f"{job_name:8} job ({size} B): compiled {med['compiled']:8.1f} ns  "
              f"reference {med['reference']:8.1f} ns  baseline {med['baseline']:8.1f} ns  "
              f"-> {med['baseline'] / med['compiled']:.1f}x faster than the baseline")
    path = common.write("encoder-quick" if args.quick else "encoder", {"runs": runs, "batch": BATCH, "results": results})
    print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
