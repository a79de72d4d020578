"""explain names what is wrong with a job the bridge would refuse, for push and produce."""

import pytest

from kafka2sidekiq import config, explain
from kafka2sidekiq._proto.job_pb2 import Job


@pytest.mark.parametrize("field,depth,flag", [("args_json", 100, "--args"), ("extra_json", 101, "--extra")])
def test_json_nested_past_the_limit_names_the_limit(field, depth, flag):
    text = "[" * depth + "]" * depth
    if field == "extra_json":
        text = '{"x":' + "[" * (depth - 1) + "]" * (depth - 1) + "}"
    job = Job(job_class="A", **{field: text}).SerializeToString()
    with pytest.raises(explain.InvalidJob) as raised:
        explain.check(job, config.load({}))
    limit = 99 if flag == "--args" else 100
    assert f"{flag} is not an {'array' if flag == '--args' else 'object'} the bridge accepts " \
           f"(nested deeper than {limit}?)" in str(raised.value)


@pytest.mark.parametrize("settings,fields,words", [
    ({}, {"extra_json": '{"tags":["a"],"x":{"y":1,"y":2},"tags":["b"]}'}, "--extra sets tags more than once"),
    ({}, {"extra_json": '{"tags":"urgent"}'}, "--extra's tags must be an array"),
    ({}, {"extra_json": '{"retry_for":1.5}'}, "--extra's retry_for must be a whole number of seconds"),
    ({"K2S_WIRE_FORMAT": "confluent"}, {}, "K2S_WIRE_FORMAT=confluent takes only Schema Registry framed"),
])
def test_each_newer_reason_is_said_in_words(settings, fields, words):
    job = Job(job_class="A", **fields).SerializeToString()
    with pytest.raises(explain.InvalidJob) as raised:
        explain.check(job, config.load(settings))
    assert words in str(raised.value), raised.value
