"""No leak: the compiled encoder's RSS stays flat over 10 million encodes."""

import subprocess
import sys

import pytest

from kafka2sidekiq import encoder

SCRIPT = r"""
import psutil
from kafka2sidekiq import _encoder_c
from kafka2sidekiq._proto.job_pb2 import Job
from kafka2sidekiq.encoder_types import EncoderOptions

good = Job(job_class="HardJob", queue="default", args_json='[1,"two",{"three":3.0}]',
           extra_json='{"tags":["a"]}').SerializeToString()
later = Job(job_class="HardJob", at=9e9, args_json="[1e5]").SerializeToString()
bad = Job(job_class="HardJob", args_json="[1,").SerializeToString()
batch = [(good, 1700000000123, i % 8, i) for i in range(990)] + [(later, -1, 0, 1)] * 5 + [(bad, 0, 0, 2)] * 5
enc = _encoder_c.Encoder(EncoderOptions())
proc = psutil.Process()
rounds = 10_000_000 // len(batch)
for i in range(rounds):
    enc.encode_batch("jobs", batch, 1700000001000)
    if i == rounds // 10:
        warm = proc.memory_info().rss
print(warm, proc.memory_info().rss)
"""


@pytest.mark.skipif(encoder._encoder_c is None, reason="compiled encoder not built")
@pytest.mark.timeout(600)
def test_rss_flat_over_ten_million_encodes():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True)
    warm, end = map(int, out.stdout.split())
    assert end - warm < 2 * 1024 * 1024, f"RSS grew {end - warm} bytes after warm-up"
