"""The compiled RESP writer packs exactly what hiredis packs."""

import random

import hiredis
import pytest

from kafka2sidekiq import encoder
from kafka2sidekiq._proto.job_pb2 import Job
from kafka2sidekiq.encoder_types import EncoderOptions
from conftest import SEED

pytestmark = pytest.mark.skipif(encoder._encoder_c is None, reason="compiled encoder not built")


def test_resp_equals_hiredis_with_lists_spliced_in_place():
    rnd = random.Random(SEED)
    for _ in range(2000):
        args = [rnd.randbytes(rnd.choice([0, 1, 9, 10, 99, 100, 1000]))
                if rnd.random() < 0.7 else [rnd.randbytes(rnd.randrange(300)) for _ in range(rnd.randrange(4))]
                for _ in range(rnd.randrange(1, 6))]
        flat = tuple(x for a in args for x in (a if isinstance(a, list) else [a]))
        assert encoder._encoder_c.resp(args) == hiredis.pack_command(flat)


@pytest.mark.parametrize("bad", [["LPUSH"], [b"LPUSH", 3], [b"LPUSH", [b"ok", "text"]]])
def test_resp_refuses_anything_but_bytes(bad):
    with pytest.raises(TypeError, match="must be bytes"):
        encoder._encoder_c.resp(bad)


def _payloads(values, options=EncoderOptions()):
    """The compiled encoder's Payloads for one queue, and the reference's list of them."""
    messages = [(v, 1700000000123, 0, i) for i, v in enumerate(values)]
    compiled = encoder._encoder_c.Encoder(options, seed=7).encode_batch("t", messages, 1700000001000)
    reference = encoder._encoder_py.Encoder(options, seed=7).encode_batch("t", messages, 1700000001000)
    return compiled.queues["default"], reference.queues["default"]


def _job(args: str, padding: int = 0) -> bytes:
    return Job(job_class="HardJob", args_json=args).SerializeToString() + _unknown_field(padding)


def _unknown_field(size: int) -> bytes:
    """Field 999, length-delimited: skipped by both encoders, but counted in the message size."""
    if not size:
        return b""
    length, n = b"", size
    while True:
        length += bytes([(n & 0x7F) | (0x80 if n >> 7 else 0)])
        n >>= 7
        if not n:
            return b"\xba\x3e" + length + b"x" * size


def test_payloads_read_like_the_references_list():
    values = [_job(f'[{i}, "{"a" * i}"]') for i in range(0, 300, 7)]
    payloads, expected = _payloads(values)
    assert type(payloads).__name__ == "Payloads"
    assert payloads == expected and list(payloads) == expected and len(payloads) == len(expected)
    assert payloads[-1] == expected[-1] and payloads[3] == expected[3]
    assert payloads[5:9] == expected[5:9] and payloads[::2] == expected[::2] and payloads[7:7] == []
    assert payloads[0:len(payloads)] is payloads
    with pytest.raises(IndexError):
        payloads[len(expected)]
    assert payloads != expected[:-1] and payloads != [b"x"] * len(expected)


def test_lpush_of_payloads_equals_hiredis_whole_and_sliced():
    values = [_job(f"[{i}]") for i in range(2500)]
    payloads, expected = _payloads(values)
    for part, flat in ((payloads, expected), (payloads[1000:2000], expected[1000:2000]),
                       (payloads[2000:2500], expected[2000:]), (payloads[1:1], [])):
        assert encoder._encoder_c.resp([b"LPUSH", b"queue:default", part]) == \
            hiredis.pack_command((b"LPUSH", b"queue:default", *flat))


@pytest.mark.parametrize("padding", [0, 500, 9_500, 99_500])
def test_payload_much_shorter_than_its_message(padding):
    """The frame's length header is first sized for the largest payload the message could
    make; a payload with fewer digits than that is moved up behind a shorter header."""
    payloads, expected = _payloads([_job("[1]", padding), _job("[2]"), _job("[3]", padding)])
    assert payloads == expected
    assert encoder._encoder_c.resp([payloads]) == hiredis.pack_command(tuple(expected))
