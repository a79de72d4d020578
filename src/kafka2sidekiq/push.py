"""Push jobs into Redis exactly as the bridge would, with no Kafka: the same encoder and
the same sink. For test suites and for the shell (``kafka2sidekiq push``)."""

from __future__ import annotations

import time
from dataclasses import replace

from . import encoder
from .encoder_types import Batch, EncoderOptions
from .sink import Sink, connect


class Rejected(ValueError):
    pass


def push(redis_url: str, jobs: list[bytes], options: EncoderOptions = EncoderOptions(),
         namespace: str = "", tls: dict | None = None,
         origins: list[tuple[str, int, int]] | None = None) -> Batch:
    """Encode and push serialized ``kafka2sidekiq.v1.Job`` messages; raise Rejected, and
    push nothing, if any of them would be rejected.

    A job has the origin it really has: ``origins`` gives each job's Kafka message (topic,
    partition, offset; one topic), as a dead letter's headers do, and origin jids and
    ``k2s_origin`` come from it. Without origins a job came from no Kafka message: a job that
    brings no jid gets a random one, whatever ``options.jid`` says, and no ``k2s_origin``."""
    if origins is None:
        topic, messages = "push", [(value, -1, 0, i) for i, value in enumerate(jobs)]
        options = replace(options, jid="random", add_origin=False)
    else:
        if len(origins) != len(jobs) or len({t for t, _, _ in origins}) > 1:
            raise ValueError("origins: one (topic, partition, offset) per job, all of one topic")
        topic = origins[0][0] if origins else "push"
        messages = [(value, -1, p, o) for value, (_, p, o) in zip(jobs, origins)]
    enc = encoder.select("auto").Encoder(options)
    batch = enc.encode_batch(topic, messages, time.time_ns() // 1_000_000)
    if batch.rejects:
        raise Rejected("; ".join(f"job {i}: {reason}" for i, reason in batch.rejects))
    client = connect(redis_url, tls=tls)
    try:
        Sink(client, namespace).push(batch, [])
    finally:
        client.close()
    return batch
