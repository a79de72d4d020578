"""Push jobs into Redis exactly as the bridge would, with no Kafka: the same encoder and
the same sink. For test suites and for the shell (``kafka2sidekiq push``)."""

from __future__ import annotations

import time

from . import encoder
from .encoder_py import Batch, EncoderOptions
from .sink import Sink, connect


class Rejected(ValueError):
    pass


def push(redis_url: str, jobs: list[bytes], options: EncoderOptions = EncoderOptions(),
         namespace: str = "", tls: dict | None = None) -> Batch:
    """Encode and push serialized ``kafka2sidekiq.v1.Job`` messages; raise Rejected, and
    push nothing, if any of them would be rejected."""
    enc = encoder.select("auto").Encoder(options)
    batch = enc.encode_batch("push", [(value, -1, 0, i) for i, value in enumerate(jobs)],
                             time.time_ns() // 1_000_000)
    if batch.rejects:
        raise Rejected("; ".join(f"job {i}: {reason}" for i, reason in batch.rejects))
    client = connect(redis_url, tls=tls)
    try:
        Sink(client, namespace).push(batch, [])
    finally:
        client.close()
    return batch
