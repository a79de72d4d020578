"""Differential: the compiled encoder equals the reference byte for byte, rejection for
rejection, on generated batches (valid jobs, near-valid jobs, arbitrary and truncated
bytes), seeded by K2S_TEST_SEED: 300 shrinkable hypothesis batches of 20 messages, and
120 bulk batches of 1,000 messages built by a cheap generator from a Random whose seed
hypothesis draws (120,000 cases; hypothesis's own generation is too slow for that many)."""

import json
import random
import struct

import confluent_kafka
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from kafka2sidekiq import encoder, _encoder_py
from conftest import SEED

pytestmark = pytest.mark.skipif(encoder._encoder_c is None, reason="compiled encoder not built")

BATCH = 20
EXAMPLES = 300
BULK_BATCH = 1000
BULK_EXAMPLES = 120

# --- wire format, written by hand so that duplicates, wrong types and junk are possible


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field_len(number: int, data: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(data)) + data


def field_varint(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value)


def field_double(number: int, value: float) -> bytes:
    return varint(number << 3 | 1) + struct.pack("<d", value)


# --- JSON: valid documents, exotic literals, and mutations of them

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10 ** 30), max_value=10 ** 30)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)

EXOTIC = [b"1e400", b"-1e400", b"1E+2", b"0.5e-3", b"-0", b"01", b"1.", b".5", b"-", b"1e", b"2e-400",
          b"123456789012345678901234567890", b"1" * 400 + b".5", b'"\\ud800"', b'"\\ud83d\\ude00"',
          b'"\\udc00"', b'"\\ud800\\u0041"', b'"\xed\xa0\x80"', b'"\xc0\x80"', b'"\xf4\x90\x80\x80"',
          b'"\x01"', b'"\x7f"', b'"\\x"', b'"\\u00e9"', b"tru", b"nul", b"NaN", b"Infinity",
          b'"\xe2\x82"', "\"é😀\"".encode(), b'"\\/"', b"[" * 99 + b"]" * 99, b"[" * 100 + b"]" * 100,
          # numbers near what msgspec can hold: DBL_MAX's rounding edge, Python's int limit
          b"1.7976931348623157e308", b"1.7976931348623158e308", b"1.7976931348623159e308",
          b"-1.79769313486231580793728971405301e308", b"179769313486231580793728971405302e292",
          b"0.000179769313486231570e312", b"1" * 309 + b".0", b"1" * 310 + b".0", b"0." + b"0" * 400 + b"1e709",
          b"1e99999999999999999999", b"1e-99999999999999999999", b"0e99999", b"9" * 4300, b"-" + b"9" * 4299,
          b"9" * 4301, b"-" + b"9" * 4300, b"1E308", b"10E307", b"1e00308"]
# top-level extra members that Sidekiq's client judges: tags, retry_for, repeats, escaped names
EXTRA_MEMBERS = [b'"tags":["a"]', b'"tags":"x"', b'"tags":null', b'"tags":false', b'"tags":0', b'"tags":{}',
                 b'"t\\u0061gs":1', b'"retry_for":1000000000', b'"retry_for":1000000001', b'"retry_for":-5',
                 b'"retry_for":1.0', b'"retry_for":1e3', b'"retry_for":"1"', b'"retry_for":true',
                 b'"retry_for":00', b'"retry_for":99999999999', b'"a":1', b'"\\u0061":2', b'"\\ud83d\\ude00":3',
                 "\"😀\":4".encode(), b'"\\n":5', b'"\\u000a":6', b'"cl\\u0061ss":7', b'"":8']


@st.composite
def json_text(draw, top: str) -> bytes:
    kind = draw(st.integers(0, 9))
    if kind <= 4:  # a valid document of the right top-level type
        value = draw(st.lists(json_values, max_size=4) if top == "[" else
                     st.dictionaries(st.text(max_size=8) | st.sampled_from(sorted(_encoder_py.RESERVED_KEYS)),
                                     json_values, max_size=4))
        text = json.dumps(value, ensure_ascii=draw(st.booleans()),
                          separators=draw(st.sampled_from([(",", ":"), (", ", ": ")]))).encode()
    elif kind <= 6:  # exotic members
        members = draw(st.lists(st.sampled_from(EXOTIC), min_size=1, max_size=3))
        if top == "{" and draw(st.booleans()):
            text = b"{" + b",".join(draw(st.lists(st.sampled_from(EXTRA_MEMBERS), min_size=1, max_size=4))) + b"}"
        elif top == "[":
            text = b"[" + b",".join(members) + b"]"
        else:
            keys = draw(st.lists(st.sampled_from([b'"a"', b'"tags"', b'"cl\\u0061ss"', b'"queue"', b'"\xff"']),
                                 min_size=len(members), max_size=len(members)))
            text = b"{" + b",".join(k + b":" + m for k, m in zip(keys, members)) + b"}"
    elif kind == 7:
        text = draw(st.binary(max_size=12))
    else:
        text = json.dumps(draw(json_values)).encode()
    if draw(st.integers(0, 4)) == 0 and text:  # mutate one byte, or cut the text short
        i = draw(st.integers(0, len(text) - 1))
        text = (text[:i] + bytes([draw(st.integers(0, 255))]) + text[i + 1:]
                if draw(st.booleans()) else text[:i])
    return draw(st.sampled_from([b"", b" ", b"\n\t"])) + text + draw(st.sampled_from([b"", b" \r\n"]))


names = st.sampled_from(["HardJob", "A::B", "Billing::ChargeJob", "", "hard", "A::", "A b", "Ä", "A" * 256,
                         "Sidekiq::ActiveJob::Wrapper", "SendInvoiceJob"])
queues = st.sampled_from(["", "default", "critical", "a,b", "a b", "q\x00", 'q"', "é", "x" * 256, "low"])
timestamps = st.sampled_from([0.0, 1.5, 1700000000.25, 1e10, 1e10 + 1, -1.0, float("nan"), float("inf"),
                              1700000000123.0, 5e-324, 1e300]) | st.floats(0, 2e10)


@st.composite
def job_value(draw) -> bytes:
    fields = []
    for _ in range(draw(st.integers(0, 9))):
        number = draw(st.integers(1, 12))
        if number in (1, 10):
            data = draw(names).encode()
        elif number == 2:
            data = draw(queues).encode()
        elif number == 3:
            data = draw(json_text("["))
        elif number == 9:
            data = draw(json_text("{"))
        elif number == 5:
            data = draw(st.sampled_from([b"0123456789abcdef01234567", b"0123456789ABCDEF01234567", b"x", b""]))
        elif number in (4, 8):
            fields.append(field_double(number, draw(timestamps)))
            continue
        elif number in (6, 7):
            fields.append(field_varint(number, draw(st.integers(0, 2 ** 64 - 1))))
            continue
        else:  # unknown fields, of every wire type
            fields.append(draw(st.sampled_from([field_varint(number, 7), field_len(number, b"zz"),
                                                field_double(number, 1.0),
                                                varint(number << 3 | 5) + b"abcd"])))
            continue
        if draw(st.integers(0, 30)) == 0:  # a known field with the wrong wire type
            fields.append(field_varint(number, 1))
        else:
            fields.append(field_len(number, data))
    value = b"".join(fields)
    roll = draw(st.integers(0, 19))
    if roll == 0:
        return draw(st.binary(max_size=40))
    if roll == 1 and value:
        return value[:draw(st.integers(0, len(value) - 1))]
    return value


# Kafka headers: trace context, good and bad, and others
TRACEPARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
HEADER_VALUES = [TRACEPARENT, b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01x", b"ff" + TRACEPARENT[2:],
                 b"00-" + b"0" * 32 + TRACEPARENT[35:], TRACEPARENT.upper(), b"rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
                 b'a"b', b"a\\b", b"\xc3\xa9", b"x" * 512, b"x" * 513, b"", None]
HEADER_NAMES = ["traceparent", "tracestate", "x-datadog-trace-id", "other"]


def rand_headers(rnd: random.Random):
    if rnd.random() < 0.5:
        return None
    return [(rnd.choice(HEADER_NAMES), rnd.choice(HEADER_VALUES)) for _ in range(rnd.randint(0, 4))]


def frame(rnd: random.Random, value: bytes) -> bytes:
    """value in Schema Registry framing, sometimes broken."""
    indexes = rnd.choice([b"\x00", b"\x02\x02", b"\x04\x00\x02", b"\x01", b"\x02\x01", b"\x02", b"\x80"])
    return b"\x00" + rnd.choice([1, 7, 2 ** 32 - 1]).to_bytes(4, "big") + indexes + value


messages = st.tuples(job_value() | st.none(), st.integers(-1, 2 ** 44) | st.just(1700000000123),
                     st.integers(0, 63), st.integers(0, 2 ** 40))

options = st.builds(
    _encoder_py.EncoderOptions,
    timestamps=st.sampled_from(["float", "ms"]),
    default_queue=st.sampled_from(["default", "low"]),
    class_allow=st.sampled_from([None, frozenset({"HardJob", "A::B", "Sidekiq::ActiveJob::Wrapper"})]),
    queue_allow=st.sampled_from([None, frozenset({"default", "critical"})]),
    max_message_bytes=st.sampled_from([1 << 20, 64]),
    jid=st.sampled_from(["random", "origin"]),
    add_origin=st.booleans(),
    wire_format=st.sampled_from(_encoder_py.WIRE_FORMATS),
    schema_ids=st.sampled_from([None, frozenset({7})]),
    trace_headers=st.sampled_from([_encoder_py.TRACE_HEADERS, (), ("x-datadog-trace-id", "traceparent", "a")]),
)


@seed(SEED)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(opts=options, batch=st.lists(messages, min_size=BATCH, max_size=BATCH),
       rng=st.integers(0, 2 ** 64 - 1), now=st.integers(0, 2 ** 44))
def test_compiled_equals_reference(opts, batch, rng, now):
    assert_same(opts, batch, rng, now)


def assert_same(opts, batch, rng, now, start=0, max_bytes=0):
    expected = _encoder_py.Encoder(opts, seed=rng).encode_batch("jobs.v1", batch, now, start, max_bytes)
    actual = encoder._encoder_c.Encoder(opts, seed=rng).encode_batch("jobs.v1", batch, now, start, max_bytes)
    assert actual.rejects == expected.rejects
    assert actual.scheduled == expected.scheduled
    assert actual.queues == expected.queues
    assert list(actual.queues) == list(expected.queues)
    assert actual == expected  # and the bookkeeping: errors, offsets, size, end


def test_names_of_every_length_and_edge_byte():
    """Class and queue names are checked 16 bytes at a time up to 64 bytes, and byte by byte
    past that: every length to 70, with "::" runs across the 16-byte lanes and the bytes
    just outside each allowed range, gets the reference's verdict as a class and as a
    queue (20,000 names)."""
    rnd = random.Random(SEED)
    edges = "AZaz09_:" + "@[`{/;" + ' "\\,~!\x7f\x00\x1f' + "\u00e9"
    values = []
    for _ in range(20_000):
        n = rnd.randrange(0, 71)
        name = "".join(rnd.choice(edges) if rnd.random() < 0.1 else rnd.choice("Aab9_") for _ in range(n))
        if n and rnd.random() < 0.6:  # most near-valid: a capital after each "::"
            name = "::".join("X" + part[1:] for part in name.replace(":", "").split("_")[:4])[:n] or "X"
        values += [field_len(1, name.encode()), field_len(1, b"HardJob") + field_len(2, name.encode())]
    for n in (15, 16, 17, 31, 32, 33, 63, 64, 65):  # "::" and ":" at the end and across lanes
        for name in ("X" * (n - 2) + "::", "X" * (n - 1) + ":", "X" * (n - 3) + "::Y", "X" * (n - 2) + ":Y"):
            values.append(field_len(1, name.encode()))
    for i in range(0, len(values), 1000):
        batch = [(v, 1700000000123, 0, j) for j, v in enumerate(values[i:i + 1000])]
        assert_same(_encoder_py.EncoderOptions(), batch, 7, 1700000001000)


def test_strings_ending_anywhere_and_keys_like_reserved_ones():
    """Strings up to 40 bytes are checked 16 bytes at a time, reading past the end of the
    JSON text when the page allows: every such string as the last thing in args and in
    extra keys, with a byte that must stop the check at each place, gets the reference's
    verdict; so do keys that share a reserved key's first byte and length."""
    rnd = random.Random(SEED)
    stoppers = ['"', "\\", "\\n", "\x01", "\x7f", "\u00e9", "\U0001f600", "\ud83d", "\xff"]
    values = []
    for n in range(41):
        for _ in range(12):
            chars = [rnd.choice("ab9 _-") for _ in range(n)]
            if chars and rnd.random() < 0.7:  # often last: a checker that took it for the quote accepts
                chars[n - 1 if rnd.random() < 0.5 else rnd.randrange(n)] = rnd.choice(stoppers)
            text = "".join(chars).encode("utf-8", "surrogatepass")
            end = rnd.choice(['"', '"', "", "-"])  # closed; not; not, and the text ends there
            for field, head, tail in ((3, b'[1, "', b"]"), (9, b'{"k":"', b"}"), (9, b'{"', b":1}")):
                json_text = head + text + (end.encode() + tail if end != "-" else b"")
                values.append(field_len(1, b"A") + field_len(field, json_text))
    for key in sorted(_encoder_py.RESERVED_KEYS):
        for twin in (key, key[0] + "z" * (len(key) - 1), key[:-1] + "z", key + "z", key[:-1], key.upper()):
            values.append(field_len(1, b"A") + field_len(9, b'{"%s":1}' % twin.encode()))
    for i in range(0, len(values), 1000):
        batch = [(v, 1700000000123, 0, j) for j, v in enumerate(values[i:i + 1000])]
        assert_same(_encoder_py.EncoderOptions(), batch, 7, 1700000001000)


def test_objects_with_many_keys_repeated_or_escaped():
    """Past 16 top-level keys the repeat check sorts them: objects of up to 300 keys, some
    written with escapes, some repeated (as written or only once unescaped), get the
    reference's verdict."""
    rnd = random.Random(SEED)
    values = []
    for _ in range(3000):
        names = [rnd.choice(["k%d" % rnd.randrange(400), "tags", "retry_for", "é", "😀", "a\nb"])
                 for _ in range(rnd.randint(1, 300))]
        names = list(dict.fromkeys(names)) if rnd.random() < 0.5 else names
        members = []
        for name in names:
            text = json.dumps(name, ensure_ascii=rnd.random() < 0.5)
            if rnd.random() < 0.1:
                text = '"' + "".join("\\u%04x" % ord(c) if c.isascii() else c for c in name) + '"'
            value = rnd.choice(["1", "[]", "null", '"x"', "1000000001", "2.5"])
            members.append(text + ":" + value)
        values.append(field_len(1, b"A") + field_len(9, ("{" + ",".join(members) + "}").encode()))
    for i in range(0, len(values), 1000):
        batch = [(v, 1700000000123, 0, j) for j, v in enumerate(values[i:i + 1000])]
        assert_same(_encoder_py.EncoderOptions(), batch, 7, 1700000001000)


class Message:
    """What confluent-kafka's consume() returns, as far as the encoders look at it."""

    def __init__(self, value, timestamp_ms, partition, offset, error=None, headers=None):
        self._fields, self._error, self._headers = (value, timestamp_ms, partition, offset), error, headers

    def headers(self):
        return self._headers

    def value(self):
        return self._fields[0]

    def timestamp(self):
        return (1, self._fields[1])

    def partition(self):
        return self._fields[2]

    def offset(self):
        return self._fields[3]

    def error(self):
        return self._error


@seed(SEED)
@settings(max_examples=300, deadline=None)
@given(ms=st.integers(0, 2 ** 45) | st.integers(2 ** 45, 2 ** 63 - 1))
def test_milliseconds_format_like_python_repr(ms):
    """The compiled fast path for ms -> float seconds agrees with repr(ms / 1000)."""
    job = field_len(1, b"A") + field_len(5, b"0123456789abcdef01234567")
    opts = _encoder_py.EncoderOptions()
    for module in (_encoder_py, encoder._encoder_c):
        payload = module.Encoder(opts, seed=0).encode_batch("t", [(job, ms, 0, 0)], ms)
        assert payload.queues["default"][0].endswith(
            b'"created_at":%s,"enqueued_at":%s}' % (repr(ms / 1000).encode(), repr(ms / 1000).encode()))


def test_origin_jids_for_every_partition_number():
    """jid=origin derives a job's jid from topic/partition/offset whatever the partition,
    the batch's first one too: -1 (librdkafka's "unassigned") and the int64 extremes."""
    job = field_len(1, b"A")
    partitions = [-1, -1, 0, -1, 2 ** 63 - 1, -(2 ** 63), 7, 7]
    batch = [(job, 1700000000123, p, 40 + i) for i, p in enumerate(partitions)]
    assert_same(_encoder_py.EncoderOptions(jid="origin", add_origin=True), batch, 7, 1700000001000)


@pytest.mark.parametrize("timestamps", ["float", "ms"])
def test_messages_without_a_timestamp_before_1970(timestamps):
    """A message without a Kafka timestamp (-1) takes the push time as created_at, even a
    push time of -1 ms (the text of the first such message once came out empty)."""
    job = field_len(1, b"A")
    batch = [(job, -1, 0, 0), (job, -1, 0, 1), (job, 5, 0, 2), (job, -1, 0, 3)]
    for now in (-1, -1001, 0):
        assert_same(_encoder_py.EncoderOptions(timestamps=timestamps), batch, 7, now)


# --- bulk: the same kinds of input from a plain seeded Random, 1,000 messages a batch

NAMES = ["HardJob", "A::B", "Billing::ChargeJob", "", "hard", "A::", "A b", "Ä", "A" * 256,
         "Sidekiq::ActiveJob::Wrapper", "SendInvoiceJob"]
QUEUES = ["", "default", "critical", "a,b", "a b", "q\x00", 'q"', "é", "x" * 256, "low"]
TIMES = [0.0, 1.5, 1700000000.25, 1e10, 1e10 + 1, -1.0, float("nan"), float("inf"), 1700000000123.0,
         5e-324, 1e300, 1699999999.999, 2e9]
KEYS = ["a", "tags", "queue", "class", "retry", "backtrace", "é", "", "k2s_origin", "retry_for"]


def rand_json(rnd: random.Random, depth: int = 0):
    roll = rnd.random()
    if depth > 3 or roll < 0.5:
        return rnd.choice([None, True, False, rnd.randint(-10 ** 20, 10 ** 20), rnd.random() * 1e6,
                           rnd.choice(["x", "é😀", "a\"b\\c", "\n\t", "\u2028", ""])])
    if roll < 0.75:
        return [rand_json(rnd, depth + 1) for _ in range(rnd.randint(0, 4))]
    return {rnd.choice(KEYS): rand_json(rnd, depth + 1) for _ in range(rnd.randint(0, 3))}


def rand_text(rnd: random.Random, top: str) -> bytes:
    roll = rnd.random()
    if roll < 0.6:
        value = [rand_json(rnd) for _ in range(rnd.randint(0, 4))] if top == "[" else \
            {rnd.choice(KEYS): rand_json(rnd) for _ in range(rnd.randint(0, 3))}
        text = json.dumps(value, ensure_ascii=rnd.random() < 0.5).encode()
    elif roll < 0.85:
        members = [rnd.choice(EXOTIC) for _ in range(rnd.randint(1, 3))]
        text = (b"[" + b",".join(members) + b"]" if top == "[" else
                b"{" + b",".join(b'"k%d":' % i + m for i, m in enumerate(members)) + b"}")
    elif roll < 0.92 and top == "{":
        text = b"{" + b",".join(rnd.choice(EXTRA_MEMBERS) for _ in range(rnd.randint(1, 4))) + b"}"
    else:
        text = rnd.randbytes(rnd.randint(0, 12))
    if text and rnd.random() < 0.2:
        i = rnd.randrange(len(text))
        text = text[:i] + bytes([rnd.randrange(256)]) + text[i + 1:] if rnd.random() < 0.5 else text[:i]
    return text


def rand_value(rnd: random.Random) -> bytes | None:
    value = plain_value(rnd)
    return frame(rnd, value) if value is not None and rnd.random() < 0.2 else value


def plain_value(rnd: random.Random) -> bytes | None:
    roll = rnd.random()
    if roll < 0.03:
        return None
    if roll < 0.08:
        return rnd.randbytes(rnd.randint(0, 40))
    fields = []
    for _ in range(rnd.randint(0, 9)):
        number = rnd.randint(1, 12)
        if number in (1, 10):
            fields.append(field_len(number, rnd.choice(NAMES).encode()))
        elif number == 2:
            fields.append(field_len(number, rnd.choice(QUEUES).encode()))
        elif number in (3, 9):
            text = rand_text(rnd, "[" if number == 3 else "{")
            if number == 9 and rnd.random() < 0.05:  # a key a trace header also names
                text = b'{"traceparent":"mine"}'
            fields.append(field_len(number, text))
        elif number == 5:
            fields.append(field_len(5, rnd.choice([b"0123456789abcdef01234567", b"0123456789ABCDEF01234567", b""])))
        elif number in (4, 8):
            fields.append(field_double(number, rnd.choice(TIMES) if rnd.random() < 0.5 else rnd.random() * 2e10))
        elif number in (6, 7):
            fields.append(field_varint(number, rnd.choice([0, 1, 5, 2 ** 32 + 3, 2 ** 64 - 1])))
        else:
            fields.append(rnd.choice([field_varint(number, 7), field_len(number, b"zz"), field_double(number, 1.0)]))
        if rnd.random() < 0.02:
            fields.append(field_varint(rnd.choice([1, 2, 3, 9]), 1))  # a known field, wrong wire type
    value = b"".join(fields)
    if value and rnd.random() < 0.05:
        value = value[:rnd.randrange(len(value))]
    return value


@seed(SEED)
@settings(max_examples=BULK_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(opts=options, batch_seed=st.integers(0, 2 ** 64 - 1))
def test_compiled_equals_reference_bulk(opts, batch_seed):
    rnd = random.Random(batch_seed)
    batch = [(rand_value(rnd), rnd.choice([-1, 1700000000123, rnd.randrange(2 ** 44)]),
              rnd.randrange(64), rnd.randrange(2 ** 40)) for _ in range(BULK_BATCH)]
    batch = [m + (rand_headers(rnd),) if rnd.random() < 0.3 else m for m in batch]
    assert_same(opts, batch, rnd.getrandbits(64), rnd.randrange(2 ** 44))


def kafka_message(value, timestamp_ms, partition, offset, error=None, headers=None):
    """A confluent-kafka Message, which the compiled encoder reads in place."""
    return confluent_kafka.Message(topic="jobs.v1", value=value, partition=partition, offset=offset, headers=headers,
                                   timestamp=(0 if timestamp_ms < 0 else 1, timestamp_ms),
                                   error=error and confluent_kafka.KafkaError(confluent_kafka.KafkaError._TRANSPORT))


@pytest.mark.parametrize("make", [Message, kafka_message], ids=["message-like", "confluent-kafka"])
@seed(SEED)
@settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(opts=options, batch_seed=st.integers(0, 2 ** 64 - 1))
def test_compiled_equals_reference_on_messages_in_byte_bounded_runs(make, opts, batch_seed):
    """Messages as consume() returns them, consumer errors among them, taken from a start
    index in runs bounded by bytes, as the worker takes them."""
    rnd = random.Random(batch_seed)
    partition_next = {p: rnd.randrange(2 ** 40) for p in range(8)}
    batch = []
    for _ in range(BULK_BATCH):
        p = 2 ** 31 - 1 if rnd.random() < 0.05 else rnd.randrange(8)
        partition_next[p] = partition_next.get(p, 2 ** 62) + 1
        batch.append(make(rand_value(rnd), rnd.choice([-1, 1700000000123, rnd.randrange(2 ** 44)]), p,
                          partition_next[p], error="broker down" if rnd.random() < 0.01 else None,
                          headers=rand_headers(rnd) if rnd.random() < 0.2 else None))
    start = rnd.randrange(BULK_BATCH)
    assert_same(opts, batch, rnd.getrandbits(64), 1700000001000, start, rnd.choice([0, 1, 500, 20_000]))


def test_confluent_kafka_messages_are_read_in_place():
    """The installed confluent-kafka's Message layout is recognised (else every message
    costs five accessor calls: the worker would be about twice as slow per message), and
    nothing else is read in place."""
    fields = encoder._encoder_c.message_fields(confluent_kafka.Message)
    assert fields is not None, "the Message layout was not recognised: the accessors are called"
    assert len(set(fields.values())) == 7
    assert encoder._encoder_c.message_fields(Message) is None
    assert encoder._encoder_c.message_fields(tuple) is None
