"""Bytes in flight: the worker takes a consumed run of messages in batches of at most
K2S_BATCH_MAX_BYTES of values, and each batch says which offsets it covers."""

import pytest

from kafka2sidekiq import encoder
from kafka2sidekiq.encoder_types import EncoderOptions

ENCODERS = [encoder.select("python")] + ([encoder._encoder_c] if encoder._encoder_c else [])


@pytest.fixture(params=ENCODERS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def runs(request):
    """The value sizes of each batch the worker would take from ``sizes``."""
    def take(sizes, limit):
        enc = request.param.Encoder(EncoderOptions(), seed=1)
        messages = [(b"x" * n, 0, 0, i) for i, n in enumerate(sizes)]
        out, start = [], 0
        while start < len(messages):
            batch = enc.encode_batch("t", messages, 0, start, limit)
            out.append(sizes[start:batch.end])
            start = batch.end
        return out
    return take


def test_batches_respect_the_byte_bound_and_keep_order(runs):
    assert runs([4, 4, 4, 4], 8) == [[4, 4], [4, 4]]
    assert runs([4, 5, 3], 8) == [[4], [5, 3]]


def test_a_message_above_the_bound_travels_alone(runs):
    assert runs([2, 20, 2], 8) == [[2], [20], [2]]


def test_no_bound_takes_everything(runs):
    assert runs([4, 4, 4], 0) == [[4, 4, 4]]


@pytest.mark.parametrize("module", ENCODERS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_offsets_per_partition_cover_rejects_too(module):
    items = [(b"junk", 0, 3, 10), (b"", 0, 1, 5), (b"junk", 0, 3, 11), (b"junk", 0, 3, 13)]
    batch = module.Encoder(EncoderOptions(), seed=1).encode_batch("t", items, 0)
    assert batch.offsets == {3: [10, 14], 1: [5, 6]}
    assert len(batch.rejects) == 4 and batch.size == 0 and batch.end == 4


@pytest.mark.parametrize("module", ENCODERS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_offsets_of_a_batch_over_many_interleaved_partitions(module):
    """More partitions in one batch than the compiled encoder tracks at once (64)."""
    items = [(b"junk", 0, i % 100, 1000 + i // 100) for i in range(1000)]
    batch = module.Encoder(EncoderOptions(), seed=1).encode_batch("t", items, 0)
    assert batch.offsets == {p: [1000, 1010] for p in range(100)}


@pytest.mark.parametrize("module", ENCODERS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_offsets_of_partitions_that_share_a_low_byte(module):
    """The compiled encoder finds a partition's span by its low byte first: 3, 259 and 515
    share one, and so do the 70 partitions 256 apart that force a hand-over at 64."""
    items = [(b"junk", 0, (3, 259, 515)[i % 3], 7 + i // 3) for i in range(30)]
    items += [(b"junk", 0, 256 * (i % 70), 50 + i // 70) for i in range(700)]
    batch = module.Encoder(EncoderOptions(), seed=1).encode_batch("t", items, 0)
    assert batch.offsets == {3: [7, 17], 259: [7, 17], 515: [7, 17],
                             **{256 * p: [50, 60] for p in range(70)}}
