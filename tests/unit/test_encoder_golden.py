"""Golden fixtures: a Job message in, the exact Sidekiq payload out, for every field
combination and both timestamp formats, through both encoders."""

import pytest

from kafka2sidekiq import encoder
from kafka2sidekiq._proto.job_pb2 import Job
from kafka2sidekiq.encoder_types import REASONS, EncoderOptions

TOPIC, PARTITION, OFFSET = "jobs", 3, 42
KAFKA_TS = 1700000000123          # the Kafka message timestamp, ms
NOW = 1700000001000               # push time, ms
JID = "0123456789abcdef01234567"

ENCODERS = [encoder.select("python")]
if encoder._encoder_c is not None:
    ENCODERS.append(encoder._encoder_c)


@pytest.fixture(params=ENCODERS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def enc(request):
    def encode(value, options=EncoderOptions(), timestamp=KAFKA_TS, now=NOW, seed=1):
        return request.param.Encoder(options, seed=seed).encode_batch(
            TOPIC, [(value, timestamp, PARTITION, OFFSET)], now)
    return encode


def job(**fields) -> bytes:
    return Job(**fields).SerializeToString()


FLOAT = EncoderOptions()
MS = EncoderOptions(timestamps="ms")

IMMEDIATE = [
    # minimal job: every default
    (FLOAT, job(job_class="HardJob", jid=JID),
     "default", b'{"retry":true,"queue":"default","class":"HardJob","args":[],"jid":"0123456789abcdef01234567",'
                b'"created_at":1700000000.123,"enqueued_at":1700000001.0}'),
    (MS, job(job_class="HardJob", jid=JID),
     "default", b'{"retry":true,"queue":"default","class":"HardJob","args":[],"jid":"0123456789abcdef01234567",'
                b'"created_at":1700000000123,"enqueued_at":1700000001000}'),
    # every field of an immediate job; args copied byte for byte (inner spaces kept)
    (FLOAT, job(job_class="Billing::ChargeJob", queue="critical", args_json=' [1, "two", {"x": null}] ',
                jid=JID, retry=False, created_at=1699999999.5,
                extra_json='{"tags":["a","b"], "backtrace":true}'),
     "critical", b'{"retry":false,"queue":"critical","class":"Billing::ChargeJob","args":[1, "two", {"x": null}],'
                 b'"tags":["a","b"], "backtrace":true,"jid":"0123456789abcdef01234567","created_at":1699999999.5,'
                 b'"enqueued_at":1700000001.0}'),
    # extra keys after args, as Client.push writes them; a false or null tags is no tags to
    # Sidekiq's client, and passes; retry_for up to 1,000,000,000; escaped keys are keys
    (FLOAT, job(job_class="A", jid=JID, wrapped="B", extra_json='{"tags":null,"retry_for":1000000000,"\\u00e9":1}'),
     "default", b'{"retry":true,"queue":"default","class":"A","wrapped":"B","args":[],"tags":null,'
                b'"retry_for":1000000000,"\\u00e9":1,"jid":"0123456789abcdef01234567",'
                b'"created_at":1700000000.123,"enqueued_at":1700000001.0}'),
    # white space anywhere between the members of extra keys (kept as it is)
    (FLOAT, job(job_class="A", jid=JID, extra_json=' { "tags" : [ "a" ] ,\n\t"x" : { "y" : [ ] } , "z":{ } } '),
     "default", b'{"retry":true,"queue":"default","class":"A","args":[],"tags" : [ "a" ] ,\n\t"x" : { "y" : [ ] } , '
                b'"z":{ },"jid":"0123456789abcdef01234567","created_at":1700000000.123,"enqueued_at":1700000001.0}'),
    (FLOAT, job(job_class="A", jid=JID, extra_json='{ }'),
     "default", b'{"retry":true,"queue":"default","class":"A","args":[],"jid":"0123456789abcdef01234567",'
                b'"created_at":1700000000.123,"enqueued_at":1700000001.0}'),
    # nested as deep as Ruby's JSON takes a job: args 99 deep, extra keys 100 deep
    (FLOAT, job(job_class="A", jid=JID, args_json="[" * 99 + "]" * 99, extra_json='{"x":' + "[" * 99 + "]" * 99 + "}"),
     "default", b'{"retry":true,"queue":"default","class":"A","args":' + b"[" * 99 + b"]" * 99
                + b',"x":' + b"[" * 99 + b"]" * 99 + b',"jid":"0123456789abcdef01234567",'
                b'"created_at":1700000000.123,"enqueued_at":1700000001.0}'),
    # numbers msgspec reads are kept: the largest double, 4,300-character integers, underflow
    (FLOAT, job(job_class="A", jid=JID, args_json="[1.7976931348623157e308,-0.0000001e-400,%s,-%s]"
                % ("9" * 4300, "9" * 4299)),
     "default", b'{"retry":true,"queue":"default","class":"A","args":[1.7976931348623157e308,-0.0000001e-400,'
                + b"9" * 4300 + b",-" + b"9" * 4299 + b'],"jid":"0123456789abcdef01234567",'
                b'"created_at":1700000000.123,"enqueued_at":1700000001.0}'),
    (MS, job(job_class="Billing::ChargeJob", queue="critical", args_json='[1]', jid=JID,
             retry_count=5, created_at=1699999999.5),
     "critical", b'{"retry":5,"queue":"critical","class":"Billing::ChargeJob","args":[1],'
                 b'"jid":"0123456789abcdef01234567","created_at":1699999999500,"enqueued_at":1700000001000}'),
    # retry 0: dead on the first failure
    (FLOAT, job(job_class="A", retry_count=0, jid=JID),
     "default", b'{"retry":0,"queue":"default","class":"A","args":[],"jid":"0123456789abcdef01234567",'
                b'"created_at":1700000000.123,"enqueued_at":1700000001.0}'),
    # an `at` in the past: enqueued now, without `at`
    (FLOAT, job(job_class="A", at=1600000000.0, jid=JID),
     "default", b'{"retry":true,"queue":"default","class":"A","args":[],"jid":"0123456789abcdef01234567",'
                b'"created_at":1700000000.123,"enqueued_at":1700000001.0}'),
    # ActiveJob through the Sidekiq adapter
    (FLOAT, job(job_class="Sidekiq::ActiveJob::Wrapper", wrapped="SendInvoiceJob", queue="mailers", jid=JID,
                args_json='[{"job_class":"SendInvoiceJob","job_id":"9f6e8a4c-1b2d-4e3f-8a7b-6c5d4e3f2a1b",'
                          '"provider_job_id":null,"queue_name":"mailers","priority":null,'
                          '"arguments":[{"_aj_globalid":"gid://shop/Invoice/7"}],"executions":0,'
                          '"exception_executions":{},"locale":"en","timezone":"UTC",'
                          '"enqueued_at":"2023-11-14T22:13:20.123456789Z"}]'),
     "mailers", b'{"retry":true,"queue":"mailers","class":"Sidekiq::ActiveJob::Wrapper","wrapped":"SendInvoiceJob",'
                b'"args":[{"job_class":"SendInvoiceJob","job_id":"9f6e8a4c-1b2d-4e3f-8a7b-6c5d4e3f2a1b",'
                b'"provider_job_id":null,"queue_name":"mailers","priority":null,'
                b'"arguments":[{"_aj_globalid":"gid://shop/Invoice/7"}],"executions":0,'
                b'"exception_executions":{},"locale":"en","timezone":"UTC",'
                b'"enqueued_at":"2023-11-14T22:13:20.123456789Z"}],'
                b'"jid":"0123456789abcdef01234567","created_at":1700000000.123,"enqueued_at":1700000001.0}'),
    # tricky args survive unchanged: big integers, 1.0, exponents, escapes, non-BMP
    (FLOAT, job(job_class="A", jid=JID,
                args_json='[123456789012345678901234567890,1.0,1e3,-0,"\\u00e9\\ud83d\\ude00","é😀",null,{"n":{"m":[]}}]'),
     "default", '{"retry":true,"queue":"default","class":"A","args":[123456789012345678901234567890,1.0,1e3,-0,'
                '"\\u00e9\\ud83d\\ude00","é😀",null,{"n":{"m":[]}}],"jid":"0123456789abcdef01234567",'
                '"created_at":1700000000.123,"enqueued_at":1700000001.0}'.encode()),
    # a generated jid for an invalid one (upper case)
    (FLOAT, job(job_class="A", jid=JID.upper()),
     "default", b'{"retry":true,"queue":"default","class":"A","args":[],"jid":"910a2dec89025cc1beeb8da1",'
                b'"created_at":1700000000.123,"enqueued_at":1700000001.0}'),
    # the jid derived from topic/partition/offset, and the origin key
    (EncoderOptions(jid="origin", add_origin=True), job(job_class="A"),
     "default", b'{"retry":true,"queue":"default","k2s_origin":"jobs/3/42","class":"A","args":[],'
                b'"jid":"e9be79c5acdb75a5500ece57","created_at":1700000000.123,"enqueued_at":1700000001.0}'),
    # the default queue from the options
    (EncoderOptions(default_queue="low"), job(job_class="A", jid=JID, extra_json="{}"),
     "low", b'{"retry":true,"queue":"low","class":"A","args":[],"jid":"0123456789abcdef01234567",'
            b'"created_at":1700000000.123,"enqueued_at":1700000001.0}'),
]


@pytest.mark.parametrize("options,value,queue,payload", IMMEDIATE)
def test_immediate_job_payload(enc, options, value, queue, payload):
    batch = enc(value, options)
    assert batch.rejects == [] and batch.scheduled == []
    assert batch.queues == {queue: [payload]}


def test_missing_kafka_timestamp_means_created_now(enc):
    batch = enc(job(job_class="A", jid=JID), timestamp=-1)
    assert batch.queues["default"][0].endswith(b'"created_at":1700000001.0,"enqueued_at":1700000001.0}')


@pytest.mark.parametrize("options,created", [(FLOAT, b"1700000000.123"), (MS, b"1700000000123")])
def test_future_at_goes_to_schedule_without_at_and_enqueued_at(enc, options, created):
    batch = enc(job(job_class="A", at=1700000100.25, jid=JID), options)
    assert batch.queues == {} and batch.rejects == []
    assert batch.scheduled == [(b"1700000100.25",
                                b'{"retry":true,"queue":"default","class":"A","args":[],'
                                b'"jid":"0123456789abcdef01234567","created_at":' + created + b"}")]


def test_pinned_wire_bytes(enc):
    """The wire format itself, written by hand: class (1), queue (2), args (3)."""
    value = bytes.fromhex("0a0148" "1202713f" "1a035b315d")  # class "H", queue "q?", args "[1]"
    batch = enc(value + bytes.fromhex("2a18") + JID.encode())
    assert batch.queues == {"q?": [b'{"retry":true,"queue":"q?","class":"H","args":[1],'
                                   b'"jid":"0123456789abcdef01234567","created_at":1700000000.123,'
                                   b'"enqueued_at":1700000001.0}']}


REJECTS = [
    (EncoderOptions(max_message_bytes=10), job(job_class="HardJob", args_json="[1,2,3]"), "too_large"),
    (FLOAT, b"\x0a\x05Hard", "not_protobuf"),                       # length past the end
    (FLOAT, b"\x0b", "not_protobuf"),                               # a group
    (FLOAT, b"\x08\x01", "not_protobuf"),                           # class as a varint
    (FLOAT, b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", "not_protobuf"),  # an 11-byte varint
    (FLOAT, b"", "missing_class"),
    (FLOAT, None, "missing_class"),                                 # a tombstone
    (FLOAT, job(queue="q"), "missing_class"),
    (FLOAT, job(job_class="hardJob"), "bad_class"),
    (FLOAT, job(job_class="Hard Job"), "bad_class"),
    (FLOAT, job(job_class="A::"), "bad_class"),
    (FLOAT, job(job_class="A" * 256), "bad_class"),
    (EncoderOptions(class_allow=frozenset({"A"})), job(job_class="B"), "class_not_allowed"),
    (EncoderOptions(class_allow=frozenset({"W"})), job(job_class="W", wrapped="Evil"), "class_not_allowed"),
    (FLOAT, job(job_class="W", wrapped="evil"), "bad_wrapped"),
    (FLOAT, job(job_class="A", queue="a,b"), "bad_queue"),
    (FLOAT, job(job_class="A", queue="a b"), "bad_queue"),
    (FLOAT, job(job_class="A", queue="a\nb"), "bad_queue"),
    (FLOAT, job(job_class="A", queue='a"'), "bad_queue"),
    (FLOAT, job(job_class="A", queue="é"), "bad_queue"),
    (FLOAT, job(job_class="A", queue="q" * 256), "bad_queue"),
    (EncoderOptions(queue_allow=frozenset({"default"})), job(job_class="A", queue="other"), "queue_not_allowed"),
    (FLOAT, job(job_class="A", args_json='{"a":1}'), "bad_args"),
    (FLOAT, job(job_class="A", args_json="[1,]"), "bad_args"),
    (FLOAT, job(job_class="A", args_json="[NaN]"), "bad_args"),
    (FLOAT, job(job_class="A", args_json="[1e400]"), "bad_args"),
    (FLOAT, job(job_class="A", args_json='["\\ud800"]'), "bad_args"),
    (FLOAT, job(job_class="A", args_json="[" * 100 + "]" * 100), "bad_args"),  # a job 101 deep
    (FLOAT, job(job_class="A", args_json="[1.7976931348623159e308]"), "bad_args"),  # rounds past DBL_MAX
    (FLOAT, job(job_class="A", args_json="[0.00001e314]"), "bad_args"),
    (FLOAT, job(job_class="A", args_json="[%s]" % ("9" * 4301)), "bad_args"),  # past Python's int limit
    (FLOAT, job(job_class="A", args_json="[-%s]" % ("9" * 4300)), "bad_args"),
    (FLOAT, job(job_class="A", args_json="[1] [2]"), "bad_args"),
    (FLOAT, b"\x0a\x01A\x1a\x03[\xff]", "bad_args"),                   # not UTF-8
    (FLOAT, b'\x0a\x01A\x1a\x08["\xf4\x90\x80\x80"]', "bad_args"),     # not UTF-8, in a string
    (FLOAT, job(job_class="A", extra_json="[1]"), "bad_extra"),
    (FLOAT, job(job_class="A", extra_json='{"a":}'), "bad_extra"),
    (FLOAT, job(job_class="A", extra_json='{"x":' + "[" * 100 + "]" * 100 + "}"), "bad_extra"),
    # the top level of extra keys has a loop of its own in the compiled twin
    (FLOAT, job(job_class="A", extra_json='{"a":1,}'), "bad_extra"),
    (FLOAT, job(job_class="A", extra_json='{"a":1 "b":2}'), "bad_extra"),
    (FLOAT, job(job_class="A", extra_json='{"a" 1}'), "bad_extra"),
    (FLOAT, job(job_class="A", extra_json='{"a":1,"b"}'), "bad_extra"),
    (FLOAT, job(job_class="A", extra_json='{a:1}'), "bad_extra"),
    (FLOAT, job(job_class="A", extra_json='{,}'), "bad_extra"),
    (FLOAT, job(job_class="A", extra_json='{"a":1}}'), "bad_extra"),
    (FLOAT, job(job_class="A", extra_json='{"a":1} {}'), "bad_extra"),
    (FLOAT, job(job_class="A", extra_json='{"a":[1}'), "bad_extra"),
    (FLOAT, job(job_class="A", extra_json='{"a":1'), "bad_extra"),
    (FLOAT, job(job_class="A", extra_json='{} {}'), "bad_extra"),
    (FLOAT, job(job_class="A", extra_json='{"tags":["a"],"tags":["b"]}'), "duplicate_extra_key"),
    (FLOAT, job(job_class="A", extra_json='{"a":1,"\\u0061":2}'), "duplicate_extra_key"),
    (FLOAT, job(job_class="A", extra_json='{"tags":"notarray"}'), "bad_tags"),
    (FLOAT, job(job_class="A", extra_json='{"tags":0}'), "bad_tags"),        # 0 is true in Ruby
    (FLOAT, job(job_class="A", extra_json='{"retry_for":1000000001}'), "bad_retry_for"),
    (FLOAT, job(job_class="A", extra_json='{"retry_for":3600.0}'), "bad_retry_for"),  # Sidekiq would cut it
    (FLOAT, job(job_class="A", extra_json='{"queue":"x"}'), "reserved_extra_key"),
    (FLOAT, job(job_class="A", extra_json='{"tags":[],"cl\\u0061ss":"X"}'), "reserved_extra_key"),
    (FLOAT, job(job_class="A", at=float("nan")), "bad_at"),
    (FLOAT, job(job_class="A", at=1700000000123.0), "bad_at"),       # milliseconds, not seconds
    (FLOAT, job(job_class="A", created_at=float("inf")), "bad_created_at"),
    (FLOAT, job(job_class="A", created_at=-1.0), "bad_created_at"),
    (EncoderOptions(wire_format="confluent"), job(job_class="A"), "bad_framing"),
    (EncoderOptions(schema_ids=frozenset({1})), b"\x00\x00\x00\x00\x07\x00" + job(job_class="A"), "schema_not_allowed"),
]


@pytest.mark.parametrize("options,value,reason", REJECTS)
def test_rejection_reason(enc, options, value, reason):
    batch = enc(value, options)
    assert batch.rejects == [(0, reason)]
    assert batch.queues == {} and batch.scheduled == []


def test_every_reason_has_a_golden_case():
    assert {reason for _, _, reason in REJECTS} == set(REASONS)


@pytest.mark.parametrize("module", ENCODERS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_batch_groups_by_queue_in_order_and_indexes_rejects(module):
    values = [job(job_class="A", queue=q, args_json=f"[{i}]") for i, q in enumerate("abab")]
    values.insert(2, b"junk")
    batch = module.Encoder(FLOAT, seed=3).encode_batch(
        TOPIC, [(v, KAFKA_TS, 0, i) for i, v in enumerate(values)], NOW)
    assert list(batch.queues) == ["a", "b"]
    assert [p.split(b'"args":')[1][:3] for p in batch.queues["a"]] == [b"[0]", b"[2]"]
    assert batch.rejects == [(2, "not_protobuf")]


@pytest.mark.parametrize("module", ENCODERS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_edge_timestamps_offsets_and_tuple_values(module):
    """Kafka timestamps past 2**53 ms format as Python divides (rounded once), the last
    offset Kafka can hand out does not wrap, and values past 64 bits are refused alike."""
    enc = module.Encoder(FLOAT, seed=1)
    value = job(job_class="A", jid=JID)
    late = 2 ** 53 + 3  # a double's division rounds this one differently: ….996, not ….994
    batch = enc.encode_batch(TOPIC, [(value, late, 0, 2 ** 63 - 1)], late)
    assert batch.queues["default"][0].endswith(b'"created_at":%s,"enqueued_at":%s}'
                                               % (repr(late / 1000).encode(), repr(late / 1000).encode()))
    assert batch.offsets == {0: [2 ** 63 - 1, 2 ** 63]}
    for bad in [(value, 2 ** 63, 0, 1), (value, 1, 0, -(2 ** 63) - 1), (value, 1, 2 ** 64, 1)]:
        with pytest.raises(OverflowError):
            enc.encode_batch(TOPIC, [bad], NOW)


FRAMED = b"\x00\x00\x00\x00\x07"  # magic byte, schema id 7


@pytest.mark.parametrize("options,indexes", [
    (FLOAT, b"\x00"),                                          # the first message: a lone 0
    (EncoderOptions(wire_format="confluent"), b"\x04\x02\x00"),  # [1, 0]
    (EncoderOptions(schema_ids=frozenset({7})), b"\x00"),
])
def test_schema_registry_framing_is_taken_off(enc, options, indexes):
    batch = enc(FRAMED + indexes + job(job_class="A", jid=JID), options)
    assert batch.queues == {"default": [b'{"retry":true,"queue":"default","class":"A","args":[],'
                                        b'"jid":"0123456789abcdef01234567","created_at":1700000000.123,'
                                        b'"enqueued_at":1700000001.0}']}


@pytest.mark.parametrize("options,value,reason", [
    (EncoderOptions(wire_format="plain"), FRAMED + b"\x00" + job(job_class="A"), "not_protobuf"),
    (FLOAT, FRAMED + b"\x01" + job(job_class="A"), "not_protobuf"),  # a negative count: not framed
    (EncoderOptions(wire_format="confluent"), FRAMED, "bad_framing"),
])
def test_what_is_not_taken_for_framing(enc, options, value, reason):
    assert enc(value, options).rejects == [(0, reason)]


TRACEPARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.mark.parametrize("module", ENCODERS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_trace_headers_become_job_keys(module):
    """traceparent/tracestate headers land after created_at, where a client middleware
    would add them; bad values and keys the job has are left out."""
    enc = module.Encoder(FLOAT, seed=1)
    value = job(job_class="A", jid=JID)
    tail = b',"enqueued_at":1700000001.0}'
    cases = [
        ([("traceparent", TRACEPARENT), ("tracestate", b"congo=t61rcWkgMzE"), ("other", b"x")],
         b',"traceparent":"%s","tracestate":"congo=t61rcWkgMzE"' % TRACEPARENT),
        ([("tracestate", b"a=1"), ("traceparent", b"00-xyz"), ("tracestate", b"b=2")], b',"tracestate":"b=2"'),
        ([("traceparent", b"ff" + TRACEPARENT[2:]), ("tracestate", b'a"b')], b""),
        ([("tracestate", b"x" * 513)], b""),
        ([], b""),
    ]
    batch = enc.encode_batch(TOPIC, [(value, KAFKA_TS, 0, i, h) for i, (h, _) in enumerate(cases)], NOW)
    for payload, (_, expected) in zip(batch.queues["default"], cases):
        assert payload.endswith(b'"created_at":1700000000.123' + expected + tail)
    mine = job(job_class="A", jid=JID, extra_json='{"tracestate":"mine"}')
    batch = enc.encode_batch(TOPIC, [(mine, KAFKA_TS, 0, 0, [("tracestate", b"theirs")])], NOW)
    assert batch.queues["default"][0].count(b"tracestate") == 1
    off = module.Encoder(EncoderOptions(trace_headers=()), seed=1)
    assert b"traceparent" not in off.encode_batch(TOPIC, [(value, 1, 0, 0, cases[0][0])], NOW).queues["default"][0]
