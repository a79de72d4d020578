"""End to end: producer -> Kafka -> kafka2sidekiq -> Redis -> real Sidekiq (Debian's
ruby-sidekiq) runs the jobs, and receives exactly the arguments that were produced; with
real ActiveJob (Debian's ruby-activejob) loaded, ActiveJob jobs are performed too."""

import json
import shutil
import subprocess
import time

import pytest

from helpers import WRAPPER, Bridge, Sidekiq, active_job, bridge_env, produce, read_topic, still, wait_for
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


ACTIVE_JOB_RB = """
require "sidekiq"
require "active_job"
require "json"
ActiveJob::Base.queue_adapter = :sidekiq

class RecordedJob < ActiveJob::Base
  def perform(*args)
    line = JSON.generate({"job" => self.class.name, "job_id" => job_id, "queue" => queue_name,
                          "jid" => provider_job_id, "args" => args.inspect})
    File.open(ENV.fetch("PERFORMED"), "a") { |f| f.puts(line) }
  end
end
class SendReceipt < RecordedJob; end
class DropTables < RecordedJob; end  # defined, so only the allow-list can keep it from running
"""

RECEIPTS = [  # (arguments as ActiveJob serializes them, what perform receives, as Ruby shows it)
    (["r-1", 12.5, None, True, [1, 2]], '["r-1", 12.5, nil, true, [1, 2]]'),
    ([{"order": 7, "_aj_symbol_keys": ["order"]}], "[{:order=>7}]"),
    ([{"note": "héllo 😀", "_aj_hash_with_indifferent_access": True}], '[{"note"=>"héllo 😀"}]'),
]


@pytest.mark.skipif(subprocess.run(["ruby", "-e", 'require "active_job"'], capture_output=True).returncode != 0,
                    reason="ruby-activejob not installed (scripts/bootstrap installs it)")
def test_sidekiq_performs_bridged_activejob_jobs_through_the_allowed_wrapper(bootstrap, make_topic, redis_url,
                                                                            redis_client, tmp_path):
    topic = make_topic(2)
    make_topic(1, name=f"{topic}.dlq")
    receipts = [(f"{n:08x}-aaaa-4bbb-8ccc-dddddddddddd", args, shown) for n, (args, shown) in enumerate(RECEIPTS)]
    produce(bootstrap, topic, [(b"r", active_job("SendReceipt", "mailers", args, job_id)) for job_id, args, _ in receipts]
            + [(b"d", active_job("DropTables", "mailers", ["all"]))])
    performed = tmp_path / "performed.jsonl"
    # the allow-list names the wrapper and the job class, as the README says for ActiveJob
    bridge = Bridge(bridge_env(bootstrap, redis_url, topic, class_allow=f"{WRAPPER},SendReceipt"), "run")
    try:
        with Sidekiq(tmp_path / "app", redis_url, ACTIVE_JOB_RB, queues=("mailers",),
                     env={"PERFORMED": str(performed), "LANG": "C.UTF-8"}) as sidekiq:
            lines = lambda: performed.read_text().splitlines() if performed.exists() else []  # noqa: E731
            wait_for(lambda: len(lines()) >= len(receipts), 60, "Sidekiq to perform the ActiveJob jobs")
            done = still(lambda: len(lines()), "the jobs performed")
            dropped = read_topic(bootstrap, f"{topic}.dlq", 1, 30)
    finally:
        assert bridge.stop() == 0, bridge.output()[-3000:]
    log = sidekiq.output()
    assert done == len(receipts), log[-3000:]
    ran = sorted((json.loads(line) for line in lines()), key=lambda r: r["job_id"])
    assert [(r["job"], r["job_id"], r["queue"], r["args"]) for r in ran] == \
        [("SendReceipt", job_id, "mailers", shown) for job_id, _, shown in receipts], log[-3000:]
    assert all(len(r["jid"]) == 24 for r in ran)  # the wrapper hands the bridge's jid to ActiveJob
    assert [(m.key(), dict(m.headers())["k2s.reason"]) for m in dropped] == [(b"d", b"class_not_allowed")]
    assert redis_client.llen("queue:mailers") == 0
    assert redis_client.zcard("retry") == 0 and redis_client.zcard("dead") == 0, log[-3000:]
