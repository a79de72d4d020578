"""Real Ruby (Debian's ruby, the JSON library Sidekiq uses) parses each payload into
exactly the job hash the producer meant."""

import json
import shutil
import subprocess

import pytest

from kafka2sidekiq import encoder
from kafka2sidekiq._proto.job_pb2 import Job
from kafka2sidekiq.encoder_types import EncoderOptions

TRICKY_ARGS = [
    '["héllo wörld", "日本語", "emoji 😀 and 𝄞", "\\u00e9\\ud83d\\ude00"]',
    '["quote \\" backslash \\\\ slash \\/ tab \\t nl \\n", "\\u0000", "\\u2028"]',
    '[123456789012345678901234567890, -98765432109876543210, 0, -0]',
    '[1.0, 0.1, 1e3, 2.5E-3, 1.7976931348623157e308, 5e-324, -1.5]',
    '[{"a": {"b": [1, {"c": null}]}}, [[[]]], {}]',
    '[null, true, false]',
    '[{"_aj_globalid": "gid://shop/Invoice/7"}, {"x": 1, "_aj_symbol_keys": ["x"]}]',
]

RUBY = r'''
require "json"
STDIN.each_line do |line|
  job = JSON.parse(line)
  puts JSON.generate({
    "args" => job["args"], "class" => job["class"], "queue" => job["queue"],
    "jid" => job["jid"], "retry" => job["retry"],
    "created_at" => job["created_at"].class.name, "enqueued_at" => job["enqueued_at"].class.name,
  })
end
'''


@pytest.mark.skipif(shutil.which("ruby") is None, reason="ruby not installed")
@pytest.mark.parametrize("timestamps,ruby_type", [("float", "Float"), ("ms", "Integer")])
def test_ruby_parses_the_intended_job(timestamps, ruby_type):
    enc = encoder.select("auto").Encoder(EncoderOptions(timestamps=timestamps), seed=5)
    messages = [(Job(job_class="Tricky::ArgsJob", queue="tricky", args_json=a, retry_count=3).SerializeToString(),
                 1700000000123, 0, i) for i, a in enumerate(TRICKY_ARGS)]
    batch = enc.encode_batch("t", messages, 1700000001000)
    assert not batch.rejects
    payloads = batch.queues["tricky"]
    out = subprocess.run(["ruby", "-e", RUBY], input=b"\n".join(payloads) + b"\n",
                         capture_output=True, check=True).stdout.decode().split("\n")[:-1]
    assert len(out) == len(TRICKY_ARGS)
    for line, args, payload in zip(out, TRICKY_ARGS, payloads):
        ruby = json.loads(line)
        assert ruby["args"] == json.loads(args)
        assert ruby["class"] == "Tricky::ArgsJob" and ruby["queue"] == "tricky" and ruby["retry"] == 3
        assert ruby["jid"] == json.loads(payload)["jid"] and len(ruby["jid"]) == 24
        assert ruby["created_at"] == ruby["enqueued_at"] == ruby_type
