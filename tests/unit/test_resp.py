"""The compiled RESP writer packs exactly what hiredis packs."""

import random

import hiredis
import pytest

from kafka2sidekiq import encoder
from conftest import SEED

pytestmark = pytest.mark.skipif(encoder._encoder is None, reason="compiled encoder not built")


def test_resp_equals_hiredis_with_lists_spliced_in_place():
    rnd = random.Random(SEED)
    for _ in range(2000):
        args = [rnd.randbytes(rnd.choice([0, 1, 9, 10, 99, 100, 1000]))
                if rnd.random() < 0.7 else [rnd.randbytes(rnd.randrange(300)) for _ in range(rnd.randrange(4))]
                for _ in range(rnd.randrange(1, 6))]
        flat = tuple(x for a in args for x in (a if isinstance(a, list) else [a]))
        assert encoder._encoder.resp(args) == hiredis.pack_command(flat)


@pytest.mark.parametrize("bad", [["LPUSH"], [b"LPUSH", 3], [b"LPUSH", [b"ok", "text"]]])
def test_resp_refuses_anything_but_bytes(bad):
    with pytest.raises(TypeError, match="must be bytes"):
        encoder._encoder.resp(bad)
