"""Byte parity with Sidekiq itself: the same jobs pushed by Ruby's Sidekiq::Client.push
(Debian's ruby-sidekiq, into db 1) and by the bridge from Kafka (into db 0) leave the same
bytes in every key they touch; only jid and the timestamps may differ. Then real Sidekiq
performs the deepest job Ruby's JSON reads."""

import json
import re
import shutil
import subprocess
import time

import pytest
import redis

from helpers import WRAPPER, Bridge, bridge_env, produce, read_topic, wait_for
from kafka2sidekiq._proto.job_pb2 import Job

pytestmark = pytest.mark.skipif(shutil.which("sidekiq") is None, reason="ruby-sidekiq not installed")

AT = float(int(time.time()) + 86_400) + 0.25  # tomorrow: the schedule set
DEEP = "[" * 99 + "]" * 99                     # args 99 deep: the job is 100 deep
AJ_ARGS = [{"job_class": "ParityMailerJob", "job_id": "9f6e8a4c-1b2d-4e3f-8a7b-6c5d4e3f2a1b",
            "provider_job_id": None, "queue_name": "mailers", "priority": None,
            "arguments": [{"_aj_globalid": "gid://shop/Invoice/7"}], "executions": 0,
            "exception_executions": {}, "locale": "en", "timezone": "UTC",
            "enqueued_at": "2026-11-30T12:00:00Z"}]

# (name, the hash given to Client.push, the Job message's fields)
CASES = [
    ("plain", {"class": "ParityJob", "args": ["plain", 1, 2.5, None]},
     dict(job_class="ParityJob", args_json='["plain",1,2.5,null]')),
    ("queue", {"queue": "critical", "class": "ParityJob", "args": ["queue"]},
     dict(job_class="ParityJob", queue="critical", args_json='["queue"]')),
    ("retry false", {"class": "ParityJob", "args": ["no retry"], "retry": False},
     dict(job_class="ParityJob", args_json='["no retry"]', retry=False)),
    ("retry 3", {"class": "ParityJob", "args": ["three"], "retry": 3},
     dict(job_class="ParityJob", args_json='["three"]', retry_count=3)),
    ("scheduled", {"class": "ParityJob", "args": ["later"], "at": AT},
     dict(job_class="ParityJob", args_json='["later"]', at=AT)),
    ("tags", {"class": "ParityJob", "args": ["tagged"], "tags": ["billing", "eu"]},
     dict(job_class="ParityJob", args_json='["tagged"]', extra_json='{"tags":["billing","eu"]}')),
    ("backtrace", {"class": "ParityJob", "args": ["bt"], "backtrace": True, "retry_for": 3600},
     dict(job_class="ParityJob", args_json='["bt"]', extra_json='{"backtrace":true,"retry_for":3600}')),
    ("activejob", {"class": WRAPPER, "wrapped": "ParityMailerJob", "queue": "mailers", "args": AJ_ARGS},
     dict(job_class=WRAPPER, wrapped="ParityMailerJob", queue="mailers",
          args_json=json.dumps(AJ_ARGS, separators=(",", ":")))),
    ("deep", {"class": "ParityJob", "queue": "deep", "args": json.loads(DEEP)},
     dict(job_class="ParityJob", queue="deep", args_json=DEEP)),
    ("framed", {"class": "ParityJob", "queue": "deep", "args": ["framed"]},  # Schema Registry framing
     dict(job_class="ParityJob", queue="deep", args_json='["framed"]')),
]
# Refused by both: args 100 and 101 deep (Ruby: JSON::NestingError), tags not an Array.
REFUSED = [
    ("args 100 deep", {"class": "ParityJob", "args": json.loads("[" * 100 + "]" * 100)},
     dict(job_class="ParityJob", args_json="[" * 100 + "]" * 100), "bad_args"),
    ("args 101 deep", {"class": "ParityJob", "args": "DEEP101"},
     dict(job_class="ParityJob", args_json="[" * 101 + "]" * 101), "bad_args"),
    ("tags a string", {"class": "ParityJob", "args": [], "tags": "notarray"},
     dict(job_class="ParityJob", extra_json='{"tags":"notarray"}'), "bad_tags"),
]

PUSH_RB = r'''
require "sidekiq"
require "json"
STDIN.each_line do |line|
  item = JSON.parse(line, max_nesting: false)
  item["args"] = JSON.parse("[" * 101 + "]" * 101, max_nesting: false) if item["args"] == "DEEP101"
  begin
    Sidekiq::Client.push(item)
    puts "pushed"
  rescue => e
    puts "refused #{e.class}"
  end
end
'''

WORKER_RB = r'''
require "sidekiq"
require "json"

class ParityJob
  include Sidekiq::Worker
  def perform(*args)
    depth = 0
    value = args
    while value.is_a?(Array)
      depth += 1
      value = value.first
    end
    Sidekiq.redis { |r| r.rpush("parity:performed", JSON.generate({"jid" => jid, "depth" => depth})) }
  end
end
'''

def framed(job: Job) -> bytes:
    """The job as Confluent's own Protobuf serializer frames it (a mock registry)."""
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    registry = SchemaRegistryClient.new_client({"url": "mock://parity"})
    serializer = ProtobufSerializer(Job, registry, {"use.deprecated.format": False})
    value = serializer(job, SerializationContext("jobs", MessageField.VALUE))
    assert value[0] == 0 and value[5:] == b"\x00" + job.SerializeToString()
    return value


VOLATILE = re.compile(rb'"(jid)":"[0-9a-f]{24}"|"(created_at|enqueued_at)":[0-9.e+]+')


def normalised(payload: bytes) -> bytes:
    """The payload with jid and timestamps blanked: all that may differ."""
    return VOLATILE.sub(lambda m: b'"%s":"*"' % (m.group(1) or m.group(2)), payload)


def snapshot(client: redis.Redis) -> dict:
    """Every key but the bridge's own ledger, with its contents: lists in order, sets and
    sorted sets sorted, payloads normalised."""
    out = {}
    for key in sorted(client.keys("*")):
        if key.startswith(b"k2s:"):
            continue
        kind = client.type(key)
        if kind == b"list":
            out[key] = [normalised(v) for v in client.lrange(key, 0, -1)]
        elif kind == b"set":
            out[key] = sorted(client.smembers(key))
        elif kind == b"zset":
            out[key] = sorted((normalised(m), s) for m, s in client.zrange(key, 0, -1, withscores=True))
        else:
            out[key] = kind
    return out


def test_bridge_writes_what_client_push_writes(bootstrap, make_topic, redis_url, redis_client, tmp_path):
    ruby_url = redis_url.rsplit("/", 1)[0] + "/1"
    ruby_db = redis.Redis.from_url(ruby_url)
    ruby_db.flushdb()
    env = {"REDIS_URL": ruby_url, "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    items = [item for _, item, _ in CASES] + [item for _, item, _, _ in REFUSED]
    pushed = subprocess.run(["ruby", "-e", PUSH_RB], input="\n".join(json.dumps(i) for i in items) + "\n",
                            capture_output=True, text=True, env=env, timeout=60)
    verdicts = pushed.stdout.split("\n")[:-1]
    assert verdicts == ["pushed"] * len(CASES) + ["refused JSON::NestingError"] * 2 + ["refused ArgumentError"], \
        pushed.stdout + pushed.stderr

    topic = make_topic(1)
    make_topic(1, name=f"{topic}.dlq")
    produce(bootstrap, topic, [(name.encode(), framed(Job(**fields)) if name == "framed" else
                                Job(**fields).SerializeToString()) for name, _, fields in CASES] +
            [(name.encode(), Job(**fields).SerializeToString()) for name, _, fields, _ in REFUSED])
    bridge = Bridge(bridge_env(bootstrap, redis_url, topic), "run")
    try:
        wait_for(lambda: redis_client.zcard("schedule") + sum(
            redis_client.llen(f"queue:{q}") for q in ("default", "critical", "mailers", "deep")) == len(CASES),
            60, "every job in Redis")
        dead = read_topic(bootstrap, f"{topic}.dlq", len(REFUSED), 60)
    finally:
        assert bridge.stop() == 0, bridge.output()[-3000:]
    assert {m.key().decode(): dict(m.headers())["k2s.reason"].decode() for m in dead} == \
        {name: reason for name, _, _, reason in REFUSED}

    ruby, bridged = snapshot(ruby_db), snapshot(redis_client)
    assert sum(len(v) for k, v in ruby.items() if k.startswith(b"queue:")) + len(ruby[b"schedule"]) == len(CASES)
    assert bridged.keys() == ruby.keys()
    for key in ruby:
        assert bridged[key] == ruby[key], key
    assert redis_client.zscore("schedule", redis_client.zrange("schedule", 0, 0)[0]) == AT

    # Sidekiq performs the 100-deep job (args 99 deep) and the framed one
    (tmp_path / "worker.rb").write_text(WORKER_RB)
    with open(tmp_path / "sidekiq.log", "wb") as log:
        sidekiq = subprocess.Popen(["sidekiq", "-r", str(tmp_path / "worker.rb"), "-q", "deep", "-c", "1"],
                                   env={**env, "REDIS_URL": redis_url}, stdout=log, stderr=subprocess.STDOUT,
                                   cwd=tmp_path)
    try:
        wait_for(lambda: redis_client.llen("parity:performed") >= 2, 60, "Sidekiq to perform the deep jobs")
    finally:
        sidekiq.terminate()
        sidekiq.wait(30)
    performed = [json.loads(p) for p in redis_client.lrange("parity:performed", 0, -1)]
    assert sorted(p["depth"] for p in performed) == [1, 99]
    assert redis_client.zcard("retry") == 0 and redis_client.zcard("dead") == 0, \
        (tmp_path / "sidekiq.log").read_text(errors="replace")[-3000:]
    ruby_db.flushdb()
    ruby_db.close()
