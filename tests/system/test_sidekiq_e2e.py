"""End to end: producer -> Kafka -> kafka2sidekiq -> Redis -> real Sidekiq (Debian's
ruby-sidekiq) runs the jobs, and receives exactly the arguments that were produced."""

import json
import shutil
import subprocess
import time

import pytest

from helpers import Bridge, bridge_env, produce, wait_for
from kafka2sidekiq._proto.job_pb2 import Job

pytestmark = pytest.mark.skipif(shutil.which("sidekiq") is None, reason="ruby-sidekiq not installed")

WORKER_RB = """
require "sidekiq"
require "json"

class RecordArgs
  include Sidekiq::Worker
  def perform(*args)
    Sidekiq.redis { |r| r.rpush("e2e:seen", JSON.generate({"jid" => jid, "args" => args})) }
  end
end
"""

TRICKY = [
    '["héllo wörld", "日本語", "emoji 😀 and 𝄞", "\\u00e9\\ud83d\\ude00"]',
    '["quote \\" backslash \\\\ tab \\t nl \\n", "\\u0000", "\\u2028"]',
    '[123456789012345678901234567890, -98765432109876543210, 0, -0]',
    '[1.0, 0.1, 1e3, 2.5E-3, -1.5, 1.7976931348623157e308]',
    '[{"a": {"b": [1, {"c": null}]}}, [[[]]], {}]',
    '[null, true, false]',
    "[]",
]


def test_sidekiq_runs_bridged_jobs_with_the_produced_args(bootstrap, make_topic, redis_url, redis_client, tmp_path):
    topic = make_topic(4)
    jobs = []
    for i in range(200):
        args = TRICKY[i % len(TRICKY)]
        jobs.append((f"k{i % 10}".encode(),
                     Job(job_class="RecordArgs", queue="e2e", args_json=args, retry=False).SerializeToString()))
    produce(bootstrap, topic, jobs)
    (tmp_path / "worker.rb").write_text(WORKER_RB)
    with open(tmp_path / "sidekiq.log", "wb") as out:
        sidekiq = subprocess.Popen(["sidekiq", "-r", str(tmp_path / "worker.rb"), "-q", "e2e", "-c", "4"],
                                   env={"REDIS_URL": redis_url, "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
                                   stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
    bridge = Bridge(bridge_env(bootstrap, redis_url, topic), "run")
    try:
        wait_for(lambda: redis_client.llen("e2e:seen") >= len(jobs), 120, "Sidekiq to run every job")
        time.sleep(1)
    finally:
        assert bridge.stop() == 0, bridge.output()[-3000:]
        sidekiq.terminate()
        sidekiq.wait(30)
    log = (tmp_path / "sidekiq.log").read_text(errors="replace")
    seen = [json.loads(x) for x in redis_client.lrange("e2e:seen", 0, -1)]
    assert len(seen) == len(jobs), log[-3000:]
    assert len({s["jid"] for s in seen}) == len(jobs)
    expected = sorted(json.dumps(json.loads(TRICKY[i % len(TRICKY)]), sort_keys=True) for i in range(len(jobs)))
    assert sorted(json.dumps(s["args"], sort_keys=True) for s in seen) == expected
    assert redis_client.zcard("retry") == 0 and redis_client.zcard("dead") == 0, log[-3000:]
    assert "Invalid JSON" not in log and "ERROR" not in log
