# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled envelope encoder: the hot path's twin of kafka2sidekiq._encoder_py.

Same API, byte-identical output, same rejections (the differential tests hold it to
that). Each payload is written once, straight from the message bytes into its queue's
Payloads (the RESP frames the sink sends as they are), and the constant parts of a
payload are formatted once per batch.
"""

import os

cimport cython

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.tuple cimport PyTuple_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.object cimport PyObject
from libc.math cimport isfinite
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memchr, memcmp, memcpy, memmove, memset


cdef extern from "<string.h>":
    void *memmem(const void *haystack, size_t haystacklen, const void *needle, size_t needlelen)

from ._encoder_py import _top_level_keys, format_seconds_ms, int_max_chars
from .encoder_types import MAX_TRACE_VALUE
from .encoder_types import (MAX_ARGS_DEPTH, MAX_EPOCH_SECONDS, MAX_EXTRA_DEPTH, MAX_NAME_BYTES, REASONS,
                            WIRE_FORMATS, Batch, EncoderOptions)
from .sidekiq import RESERVED_KEYS, TIMESTAMPS_MS

cdef extern from "Python.h":
    object PyObject_CallOneArg(object callable, object arg)
    char *PyOS_double_to_string(double val, char format_code, int precision, int flags,
                                int *ptype) except NULL
    int Py_DTSF_ADD_DOT_0

cdef extern from "k2s_json.h":
    int K2S_JSON_OK, K2S_JSON_BAD, K2S_JSON_RESERVED, K2S_JSON_DUPLICATE, K2S_JSON_BAD_TAGS
    int K2S_JSON_BAD_RETRY_FOR, K2S_JSON_NOMEM
    ctypedef struct k2s_keys:
        pass
    void k2s_keys_init(k2s_keys *keys, const char *const *list)
    int K2S_ARGS_MAX_DEPTH, K2S_EXTRA_MAX_DEPTH
    int k2s_json_array(const uint8_t *s, size_t n, size_t max_int_chars)
    int k2s_json_object(const uint8_t *s, size_t n, size_t max_int_chars, const k2s_keys *keys)

cdef extern from "k2s_wire.h":
    ctypedef struct k2s_job:
        const uint8_t *job_class
        const uint8_t *queue
        const uint8_t *args
        const uint8_t *jid
        const uint8_t *extra
        const uint8_t *wrapped
        size_t job_class_len, queue_len, args_len, jid_len, extra_len, wrapped_len
        double at, created_at
        int has_at, has_created_at, retry_kind
        uint64_t retry_value
    ctypedef struct k2s_envelope:
        const char *jid
        uint64_t jid_state
        const char *created
        size_t created_len
        int64_t partition, offset
        const char *trace
        size_t trace_len
        const char *topic
        size_t topic_len
        int origin
        const char *tail
        size_t tail_len
        int seeded
    int k2s_parse_job(const uint8_t *buf, size_t n, k2s_job *job)
    int k2s_unframe(const uint8_t **buf, size_t *n, uint32_t *schema_id)
    int k2s_constant_path(const uint8_t *s, size_t n)
    int k2s_queue_name(const uint8_t *s, size_t n)
    int k2s_jid_valid(const uint8_t *s, size_t n)
    void k2s_strip(const uint8_t **s, size_t *n)
    size_t k2s_write_u64(char *out, uint64_t v)
    size_t k2s_decimal_width(uint64_t v)
    size_t k2s_write_i64(char *out, int64_t v)
    size_t k2s_write_ms_as_seconds(char *out, int64_t ms)
    void k2s_pick_jid(k2s_envelope *env, const k2s_job *job, int from_origin, uint64_t *state)
    size_t k2s_payload_bound(const k2s_envelope *env, size_t n, size_t fixed_room)
    char *k2s_write_job(char *w, const k2s_job *job, const k2s_envelope *env)
    char *k2s_write_frame(char *frame, size_t bound, const k2s_job *job, const k2s_envelope *env,
                          size_t *payload_len)

# Reason codes, by their place in encoder_types.REASONS (the one list of them).
cdef int R_OK = -1
cdef int R_TOO_LARGE = REASONS.index("too_large")
cdef int R_NOT_PROTOBUF = REASONS.index("not_protobuf")
cdef int R_MISSING_CLASS = REASONS.index("missing_class")
cdef int R_BAD_CLASS = REASONS.index("bad_class")
cdef int R_CLASS_NOT_ALLOWED = REASONS.index("class_not_allowed")
cdef int R_BAD_WRAPPED = REASONS.index("bad_wrapped")
cdef int R_BAD_QUEUE = REASONS.index("bad_queue")
cdef int R_QUEUE_NOT_ALLOWED = REASONS.index("queue_not_allowed")
cdef int R_BAD_ARGS = REASONS.index("bad_args")
cdef int R_BAD_EXTRA = REASONS.index("bad_extra")
cdef int R_RESERVED_EXTRA_KEY = REASONS.index("reserved_extra_key")
cdef int R_BAD_AT = REASONS.index("bad_at")
cdef int R_BAD_CREATED_AT = REASONS.index("bad_created_at")
cdef int R_DUPLICATE_EXTRA_KEY = REASONS.index("duplicate_extra_key")
cdef int R_BAD_TAGS = REASONS.index("bad_tags")
cdef int R_BAD_RETRY_FOR = REASONS.index("bad_retry_for")
cdef int R_BAD_FRAMING = REASONS.index("bad_framing")
cdef int R_SCHEMA_NOT_ALLOWED = REASONS.index("schema_not_allowed")
cdef int WIRE_PLAIN = WIRE_FORMATS.index("plain")
cdef int WIRE_CONFLUENT = WIRE_FORMATS.index("confluent")

cdef size_t NAME_MAX = MAX_NAME_BYTES
if (K2S_ARGS_MAX_DEPTH, K2S_EXTRA_MAX_DEPTH) != (MAX_ARGS_DEPTH, MAX_EXTRA_DEPTH):
    raise ImportError("ext/k2s_json.h and _encoder_py disagree on the nesting limits")
# k2s_json_object's verdicts -> reasons
cdef int EXTRA_REASONS[7]
EXTRA_REASONS[K2S_JSON_BAD] = R_BAD_EXTRA
EXTRA_REASONS[K2S_JSON_RESERVED] = R_RESERVED_EXTRA_KEY
EXTRA_REASONS[K2S_JSON_DUPLICATE] = R_DUPLICATE_EXTRA_KEY
EXTRA_REASONS[K2S_JSON_BAD_TAGS] = R_BAD_TAGS
EXTRA_REASONS[K2S_JSON_BAD_RETRY_FOR] = R_BAD_RETRY_FOR
cdef double EPOCH_MAX = MAX_EPOCH_SECONDS
# Room for everything in a payload that is not copied from the message itself.
cdef size_t FIXED_ROOM = 512
cdef size_t PAYLOADS_GUESS_MAX = 4 << 20

# Reserved keys as a NULL-terminated C array for the JSON checker.
_RESERVED = [k.encode() for k in sorted(RESERVED_KEYS)]
cdef const char **RESERVED_C = <const char **>PyMem_Malloc((len(_RESERVED) + 1) * sizeof(char *))
for _i, _k in enumerate(_RESERVED):
    RESERVED_C[_i] = PyBytes_AS_STRING(_k)
RESERVED_C[len(_RESERVED)] = NULL
cdef k2s_keys RESERVED
k2s_keys_init(&RESERVED, RESERVED_C)


cdef inline char *put(char *w, const void *s, size_t n) noexcept:
    memcpy(w, s, n)
    return w + n


cdef inline char *put_lit(char *w, bytes s) noexcept:
    return put(w, PyBytes_AS_STRING(s), <size_t>PyBytes_GET_SIZE(s))


cdef char *put_double(char *w, double value) except NULL:
    """`value` as Python's repr writes it."""
    cdef char *text = PyOS_double_to_string(value, b'r', 0, Py_DTSF_ADD_DOT_0, NULL)
    cdef size_t n = 0
    while text[n]:
        n += 1
    w = put(w, text, n)
    PyMem_Free(text)
    return w


cdef char *put_ms_as_seconds(char *w, int64_t ms) except NULL:
    """`ms` as repr(ms / 1000) writes it (w has room for 48 bytes)."""
    cdef size_t n = k2s_write_ms_as_seconds(w, ms)
    if n:
        return w + n
    # Before 1970 or after 2248: Python's division, rounded once (a double's would round
    # twice past 2**53), in the rare batch that has such a time.
    return put_lit(w, format_seconds_ms(ms))


cdef enum:
    MAX_SPANS = 64

cdef struct Spans:
    int count, current
    uint8_t slot[256]  # 1 + the span of a partition (by its low byte), or 0: a hint, checked
    int64_t partition[MAX_SPANS]
    int64_t first[MAX_SPANS]
    int64_t last[MAX_SPANS]  # the next offset is last + 1, in Python: 2**63 - 1 does not wrap


cdef int spans_flush(Spans *spans, dict offsets) except -1:
    """Into ``offsets`` ({partition: [first, next]}), keeping the first of an earlier flush."""
    cdef int k
    for k in range(spans.count):
        span = offsets.get(spans.partition[k])
        if span is None:
            offsets[spans.partition[k]] = [spans.first[k], <object>spans.last[k] + 1]
        else:
            span[1] = <object>spans.last[k] + 1
    spans.count, spans.current = 0, -1
    return 0


cdef int span_find(Spans *spans, dict offsets, int64_t partition, int64_t offset) except -1:
    """Make ``partition``'s span the current one, starting it at ``offset`` if new."""
    cdef int k = spans.slot[partition & 255] - 1
    if 0 <= k < spans.count and spans.partition[k] == partition:
        spans.current = k
        return 0
    for k in range(spans.count):
        if spans.partition[k] == partition:
            spans.current = k
            return 0
    if spans.count == MAX_SPANS:  # more partitions in one batch than we keep: hand them over
        spans_flush(spans, offsets)
    k = spans.count
    spans.count += 1
    spans.partition[k], spans.first[k], spans.current = partition, offset, k
    spans.slot[partition & 255] = <uint8_t>(k + 1)
    return 0


cdef inline int span_mark(Spans *spans, dict offsets, int64_t partition, int64_t offset) except -1:
    """``offset`` of ``partition`` is taken: its span ends there."""
    if spans.current < 0 or spans.partition[spans.current] != partition:
        span_find(spans, offsets, partition, offset)
    spans.last[spans.current] = offset
    return 0


# --- confluent-kafka Messages, read in place

cdef struct Fields:  # byte offsets of what the encoder reads in a confluent-kafka Message
    Py_ssize_t value, error, partition, offset, timestamp, headers
    Py_ssize_t c_headers  # -1: no such slot

_FIELDS = {}  # type -> Fields (as a dict) or None, found once per type


def message_fields(kind):
    """Where this build of confluent-kafka keeps a Message's value, error, partition,
    offset and timestamp: {name: byte offset}, so that the encoder reads them in place
    instead of calling five accessors per message (which build and free a tuple and two
    ints each time: about half of the compiled encoder's time per message). Found by
    building Messages with sentinel values through the public constructor and finding
    each sentinel at exactly one place, the same in two probes, and NULL or None where a
    Message has no value or no error. None for any other type, or when anything does
    not match: the accessors are called then, as for any Message-like object."""
    if kind in _FIELDS:
        return _FIELDS[kind]
    found = None
    try:
        from confluent_kafka import KafkaError, Message
        if kind is Message:
            found = _probe_fields(Message, KafkaError)
    except Exception:  # a constructor unlike the one probed for: keep the accessors
        found = None
    _FIELDS[kind] = found
    return found


def _probe_fields(Message, KafkaError):
    found = None
    for mark in (0x5A, 0xA5):
        value, error, headers = b"k2s probe %d" % mark, KafkaError(mark), [("k2s", b"probe %d" % mark)]
        partition, offset, timestamp = 0x2D5A0000 | mark, 0x3C3C3C3C0000 | mark, 0x4B4B4B4B4B00 | mark
        probe = Message(topic="k2s", value=value, error=error, partition=partition, offset=offset,
                        timestamp=(1, timestamp), headers=headers)
        if (probe.value() is not value or probe.error() is not error or probe.partition() != partition
                or probe.offset() != offset or probe.timestamp()[1] != timestamp or probe.headers() is not headers):
            return None
        raw = _object_bytes(probe)
        where = {"value": _only_place(raw, id(value), 8), "error": _only_place(raw, id(error), 8),
                 "partition": _only_place(raw, partition, 4), "offset": _only_place(raw, offset, 8),
                 "timestamp": _only_place(raw, timestamp, 8), "headers": _only_place(raw, id(headers), 8)}
        if None in where.values() or (found is not None and where != found):
            return None
        found = where
    # A consumed Message keeps librdkafka's headers in the pointer between headers and
    # error (c_headers) until headers() turns them into a list: with no such slot, only
    # the list is read.
    found["c_headers"] = found["headers"] + 8 if found["error"] - found["headers"] == 16 else -1
    plain = Message(topic="k2s", value=None)
    raw = _object_bytes(plain)
    for name in ("value", "error", "headers", "c_headers"):
        if found[name] >= 0 and int.from_bytes(raw[found[name]:found[name] + 8], "little") not in (0, id(None)):
            return None
    if plain.value() is not None or plain.error() is not None or plain.headers() is not None:
        return None
    return found


def _object_bytes(obj):
    """The bytes of obj's C struct."""
    return PyBytes_FromStringAndSize(<const char *><PyObject *>obj, type(obj).__basicsize__)


def _only_place(bytes raw, number, int width):
    """The one offset past the object header where `number` is stored (little-endian,
    aligned to its width), else None."""
    places = [at for at in range(sizeof(PyObject), len(raw) - width + 1, width)
              if int.from_bytes(raw[at:at + width], "little") == number]
    return places[0] if len(places) == 1 else None


cdef struct Meta:  # of one Kafka message, beside its value
    bint error
    PyObject *headers  # borrowed; NULL: no headers, or no trace headers to look for
    int64_t timestamp_ms, partition, offset


cdef inline object read_tuple(tuple item, Meta *meta, bint tracing):
    """The value of a (value, timestamp_ms, partition, offset[, headers]) tuple; the rest in *meta."""
    if PyTuple_GET_SIZE(item) == 5:
        value, meta.timestamp_ms, meta.partition, meta.offset, headers = item
        meta.headers = <PyObject *>headers if tracing and headers is not None else NULL
    else:
        value, meta.timestamp_ms, meta.partition, meta.offset = item
        meta.headers = NULL
    return value


cdef inline const uint8_t *value_bytes(object value, size_t *n) noexcept:
    """The bytes of a message's value (None: none), *n of them."""
    if value is None:
        n[0] = 0
        return <const uint8_t *>b""
    n[0] = <size_t>PyBytes_GET_SIZE(value)
    return <const uint8_t *>PyBytes_AS_STRING(value)


@cython.final
cdef class MessageReader:
    """Reads the messages of one type: a confluent-kafka Message in place (message_fields),
    any other Message-like object through its accessors, called through the type's
    descriptors (no bound method each time)."""

    cdef readonly type kind
    cdef bint in_place
    cdef Fields at
    cdef object get_error, get_value, get_timestamp, get_partition, get_offset
    cdef object headers  # the last message's, while meta.headers borrows them

    def __init__(self, type kind):
        self.kind = kind
        fields = message_fields(kind)
        self.in_place = fields is not None
        if self.in_place:
            self.at = fields
        else:
            self.get_error, self.get_value, self.get_timestamp = kind.error, kind.value, kind.timestamp
            self.get_partition, self.get_offset = kind.partition, kind.offset

    cdef object read(self, object item, Meta *meta, bint tracing):
        """The message's value (None when it has none); the rest in *meta, its headers
        only when ``tracing``."""
        if not self.in_place:
            return self.call(item, meta, tracing)
        cdef char *base = <char *><PyObject *>item
        cdef PyObject *field = (<PyObject **>(base + self.at.error))[0]
        meta.error = field != NULL and field != <PyObject *>None
        meta.timestamp_ms = (<int64_t *>(base + self.at.timestamp))[0]
        meta.partition = (<int32_t *>(base + self.at.partition))[0]
        meta.offset = (<int64_t *>(base + self.at.offset))[0]
        meta.headers = NULL
        field = (<PyObject **>(base + self.at.headers))[0]
        if tracing and not meta.error and (
                (field != NULL and field != <PyObject *>None) or
                (self.at.c_headers >= 0 and (<void **>(base + self.at.c_headers))[0] != NULL)):
            self.read_headers(item, meta)
        field = (<PyObject **>(base + self.at.value))[0]
        return <object>field if field != NULL else None

    cdef object call(self, object item, Meta *meta, bint tracing):
        """read() through the accessors."""
        meta.error = PyObject_CallOneArg(self.get_error, item) is not None
        meta.headers = NULL
        if meta.error:
            return None
        meta.timestamp_ms = PyObject_CallOneArg(self.get_timestamp, item)[1]
        meta.partition = PyObject_CallOneArg(self.get_partition, item)
        meta.offset = PyObject_CallOneArg(self.get_offset, item)
        value = PyObject_CallOneArg(self.get_value, item)
        if tracing:
            self.read_headers(item, meta)
        return value

    cdef int read_headers(self, object item, Meta *meta) except -1:
        """The message's headers (None: it has none), kept while meta.headers borrows them."""
        self.headers = item.headers()
        if self.headers is not None:
            meta.headers = <PyObject *>self.headers
        return 0


@cython.final
cdef class Payloads:
    """One queue's payloads from one batch, read like a list of bytes but held as the
    RESP bulk strings the sink sends (``$<len>\r\n<payload>\r\n``, back to back): the
    encoder writes each payload once, into its place, and ``resp`` copies the lot.
    Reading one payload walks the frames before it; only tests and tools do that."""

    cdef char *buf
    cdef size_t used, cap
    cdef Py_ssize_t count

    def __dealloc__(self):
        PyMem_Free(self.buf)

    cdef int reserve(self, size_t room) except -1:
        """Room for ``room`` more bytes."""
        cdef size_t need = self.used + room, cap = self.cap or 64 * 1024
        cdef char *fresh
        if need > self.cap:
            while cap < need:
                cap *= 2
            fresh = <char *>PyMem_Realloc(self.buf, cap)
            if fresh == NULL:
                raise MemoryError()
            self.buf, self.cap = fresh, cap
        return 0

    cdef inline int put(self, const k2s_job *job, const k2s_envelope *env, size_t bound,
                        Py_ssize_t *size) except -1:
        """An immediate job's payload (at most ``bound`` bytes), framed; its length added to *size."""
        cdef size_t payload_n
        if self.used + bound + 32 > self.cap:
            self.reserve(bound + 32)
        self.used = <size_t>(k2s_write_frame(self.buf + self.used, bound, job, env, &payload_n) - self.buf)
        self.count += 1
        size[0] += <Py_ssize_t>payload_n
        return 0

    cdef size_t frame_end(self, size_t at) noexcept:
        """Where the frame that starts at ``at`` ends."""
        cdef const char *p = self.buf + at + 1  # past the '$'
        cdef size_t length = 0
        while p[0] != b'\r':
            length = length * 10 + <size_t>(p[0] - 48)
            p += 1
        return <size_t>(p + 2 - self.buf) + length + 2

    cdef size_t frame(self, Py_ssize_t i) noexcept:
        """Where the i-th frame starts (``used`` for i == count)."""
        cdef size_t at = 0
        for _ in range(i):
            at = self.frame_end(at)
        return at

    def __len__(self):
        return self.count

    def __getitem__(self, key):
        cdef Py_ssize_t i, start, stop, step
        cdef size_t first, last
        cdef Payloads part
        if isinstance(key, slice):
            start, stop, step = key.indices(self.count)
            if step != 1:
                return list(self)[key]
            if start == 0 and stop >= self.count:
                return self  # never written to again once the batch is made
            part = Payloads()
            if stop > start:
                first, last = self.frame(start), self.frame(stop)
                part.reserve(last - first)
                memcpy(part.buf, self.buf + first, last - first)
                part.used, part.count = last - first, stop - start
            return part
        i = key
        if i < 0:
            i += self.count
        if not 0 <= i < self.count:
            raise IndexError("payload index out of range")
        first, last = self.frame(i), self.frame(i + 1)
        payload = self.buf[first:last - 2]
        return payload[payload.index(b"\n") + 1:]

    def __iter__(self):
        cdef Py_ssize_t i
        cdef size_t at = 0
        for i in range(self.count):
            end = self.frame_end(at)
            payload = self.buf[at:end - 2]
            yield payload[payload.index(b"\n") + 1:]
            at = end

    def __eq__(self, other):
        if isinstance(other, (Payloads, list)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None

    def __repr__(self):
        return f"Payloads({list(self)!r})"


@cython.final
cdef class Queues:
    """A batch's {queue name: Payloads}, the last job's at hand (a batch's jobs mostly go
    to one queue)."""

    cdef dict by_name
    cdef bytes last
    cdef Payloads out

    def __cinit__(self, dict by_name):
        self.by_name = by_name

    cdef inline int find(self, const k2s_job *job, Py_ssize_t left, size_t job_room) except -1:
        """Make ``out`` the Payloads of job's queue; ``left`` jobs in the batch from this one
        on, each about ``job_room`` bytes."""
        if (self.last is None or <size_t>PyBytes_GET_SIZE(self.last) != job.queue_len
                or memcmp(PyBytes_AS_STRING(self.last), job.queue, job.queue_len) != 0):
            self.switch(job, left, job_room)
        return 0

    cdef int switch(self, const k2s_job *job, Py_ssize_t left, size_t job_room) except -1:
        cdef size_t guess = 0
        self.last = PyBytes_FromStringAndSize(<const char *>job.queue, job.queue_len)
        name = self.last.decode("ascii")
        self.out = self.by_name.get(name)
        if self.out is None:
            if not self.by_name:  # the batch's first queue (mostly its only one): room for the
                # rest of the batch at once, guessed from this job, at most 4 MiB; growing
                # from 64 KiB by doubling copied ~450 KB per batch of 177 B jobs
                guess = min(<size_t>left * (job_room + 192), PAYLOADS_GUESS_MAX)
            self.out = self.by_name[name] = Payloads()
            self.out.reserve(guess)
        return 0


cdef struct Times:  # created_at's text
    int64_t now_ms
    int64_t kafka_ms  # the Kafka timestamp whose text is in kafka
    size_t kafka_n
    char kafka[48]
    char producer[64]


@cython.final
cdef class Encoder:
    """Turns batches of Kafka messages into Sidekiq payloads grouped by queue."""

    cdef readonly object options
    cdef char *buf
    cdef size_t cap
    cdef uint64_t state
    cdef object class_allow, queue_allow
    cdef bytes default_queue
    cdef bint ms, jid_origin, add_origin
    cdef size_t max_message_bytes, int_chars
    cdef int wire
    cdef object schema_allow
    cdef tuple trace_names, trace_quoted
    cdef bint tracing  # there are trace headers to look for

    def __cinit__(self):
        self.buf = NULL

    def __init__(self, options: EncoderOptions, seed=None):
        self.options = options
        self.ms = options.timestamps == TIMESTAMPS_MS
        self.jid_origin = options.jid == "origin"
        self.add_origin = options.add_origin
        self.max_message_bytes = options.max_message_bytes
        self.int_chars = int_max_chars()
        self.wire = WIRE_FORMATS.index(options.wire_format)
        self.schema_allow = options.schema_ids
        self.trace_names = tuple(options.trace_headers)
        self.trace_quoted = tuple(b'"%s"' % name.encode() for name in self.trace_names)
        self.tracing = len(self.trace_names) != 0
        self.default_queue = options.default_queue.encode()
        self.class_allow = (None if options.class_allow is None
                            else frozenset(c.encode() for c in options.class_allow))
        self.queue_allow = (None if options.queue_allow is None
                            else frozenset(q.encode() for q in options.queue_allow))
        self.grow(4096)
        if seed is None:
            self._reseed()
            os.register_at_fork(after_in_child=self._reseed)
        else:
            self.state = <uint64_t>(seed & 0xFFFFFFFFFFFFFFFF)

    def __dealloc__(self):
        PyMem_Free(self.buf)

    def _reseed(self):
        self.state = int.from_bytes(os.urandom(8), "little")

    cdef int grow(self, size_t need) except -1:
        if need <= self.cap:
            return 0
        cdef char *fresh = <char *>PyMem_Realloc(self.buf, need)
        if fresh == NULL:
            raise MemoryError()
        self.buf, self.cap = fresh, need
        return 0

    def encode_batch(self, str topic, messages, int64_t now_ms, Py_ssize_t start=0, Py_ssize_t max_bytes=0):
        """Encode ``messages[start:]``: (value, timestamp_ms, partition, offset) tuples or
        confluent-kafka Messages, whose indexes the rejects and errors give.

        ``timestamp_ms`` is the Kafka message timestamp (negative when unavailable);
        ``now_ms`` is the push time, epoch milliseconds, the same for the whole batch.
        With ``max_bytes``, the batch stops before the message that would take the values
        taken past it (a larger message travels alone); ``end`` says where it stopped.
        """
        batch = Batch(end=start)
        cdef list items = messages if type(messages) is list else list(messages)
        cdef dict offsets = batch.offsets
        cdef list scheduled = batch.scheduled, rejects = batch.rejects, errors = batch.errors
        cdef Py_ssize_t index, total = len(items), taken = 0, count = 0, size = 0, end = start
        cdef Spans spans  # [first, next) offsets per partition, kept in C until the batch ends
        spans.count, spans.current = 0, -1
        memset(spans.slot, 0, sizeof(spans.slot))
        cdef Queues queues = Queues(batch.queues)
        cdef MessageReader reader = None
        cdef Meta meta
        cdef k2s_job job
        cdef object value
        cdef const uint8_t *data
        cdef size_t n, bound
        cdef int reason
        cdef bytes trace  # the job's trace members, while env.trace points into them
        cdef double now_s = <double>now_ms / 1000.0
        cdef bytes topic_b = topic.encode()
        cdef bytes tail = self.enqueued_tail(now_ms)
        cdef k2s_envelope env
        env.topic, env.topic_len = PyBytes_AS_STRING(topic_b), <size_t>PyBytes_GET_SIZE(topic_b)
        env.tail, env.tail_len = PyBytes_AS_STRING(tail), <size_t>PyBytes_GET_SIZE(tail)
        env.origin, env.seeded = self.add_origin, False
        cdef Times times
        times.now_ms = now_ms
        self.format_kafka_time(&times, now_ms)  # the text of a message without a timestamp

        for index in range(start, total):
            item = items[index]
            if type(item) is tuple:
                value = read_tuple(<tuple>item, &meta, self.tracing)
            else:
                if reader is None or type(item) is not reader.kind:
                    reader = MessageReader(type(item))
                value = reader.read(item, &meta, self.tracing)
                if meta.error:
                    errors.append(index)
                    end = index + 1
                    continue
            data = value_bytes(value, &n)
            if max_bytes and count and taken + <Py_ssize_t>n > max_bytes:
                break
            taken, count, end = taken + <Py_ssize_t>n, count + 1, index + 1
            span_mark(&spans, offsets, meta.partition, meta.offset)
            reason = self.check(data, n, &job)
            if reason != R_OK:
                rejects.append((index, REASONS[reason]))
                continue
            env.partition, env.offset = meta.partition, meta.offset
            env.trace_len = 0
            if meta.headers != NULL:
                trace = self.trace_members(<object>meta.headers, &job, &env)
            k2s_pick_jid(&env, &job, self.jid_origin, &self.state)
            self.format_created(&env, &times, &job, meta.timestamp_ms)
            bound = k2s_payload_bound(&env, n, FIXED_ROOM)
            if job.has_at and job.at > now_s:
                self.put_scheduled(scheduled, &job, &env, bound, &size)
            else:
                queues.find(&job, total - index, n + env.topic_len)
                queues.out.put(&job, &env, bound, &size)
        spans_flush(&spans, offsets)
        batch.size, batch.end = size, end
        return batch

    cdef bytes enqueued_tail(self, int64_t now_ms):
        """The end of every immediate job of a batch pushed at ``now_ms``."""
        cdef char stamp[48]
        cdef size_t n
        if self.ms:
            n = k2s_write_i64(stamp, now_ms)
        else:
            n = <size_t>(put_ms_as_seconds(stamp, now_ms) - stamp)
        return b',"enqueued_at":' + stamp[:n] + b'}'

    cdef bytes trace_members(self, object headers, const k2s_job *job, k2s_envelope *env):
        """The trace members of a job whose message has ``headers``, into *env."""
        trace = trace_members_c(self.trace_names, self.trace_quoted,
                                headers if type(headers) is list else list(headers), job.extra, job.extra_len)
        env.trace, env.trace_len = PyBytes_AS_STRING(trace), <size_t>PyBytes_GET_SIZE(trace)
        return trace

    cdef inline int format_created(self, k2s_envelope *env, Times *times, const k2s_job *job,
                                  int64_t timestamp_ms) except -1:
        """created_at: the producer's time, else the Kafka timestamp (formatted once while it repeats)."""
        if job.has_created_at:
            env.created = times.producer
            if self.ms:
                env.created_len = k2s_write_i64(times.producer, <int64_t>(job.created_at * 1000.0))
            else:
                env.created_len = <size_t>(put_double(times.producer, job.created_at) - times.producer)
            return 0
        if timestamp_ms < 0:
            timestamp_ms = times.now_ms
        if timestamp_ms != times.kafka_ms:
            self.format_kafka_time(times, timestamp_ms)
        env.created, env.created_len = times.kafka, times.kafka_n
        return 0

    cdef int format_kafka_time(self, Times *times, int64_t timestamp_ms) except -1:
        """The text of a Kafka timestamp, kept in *times while the next messages have it too."""
        times.kafka_ms = timestamp_ms
        if self.ms:
            times.kafka_n = k2s_write_i64(times.kafka, timestamp_ms)
        else:
            times.kafka_n = <size_t>(put_ms_as_seconds(times.kafka, timestamp_ms) - times.kafka)
        return 0

    cdef int put_scheduled(self, list scheduled, const k2s_job *job, const k2s_envelope *env, size_t bound,
                           Py_ssize_t *size) except -1:
        """A job for the schedule set: (its score, its payload) into ``scheduled``; the
        payload's length added to *size."""
        self.grow(bound)
        cdef char *w = put_lit(k2s_write_job(self.buf, job, env), b'}')
        payload = PyBytes_FromStringAndSize(self.buf, w - self.buf)
        size[0] += PyBytes_GET_SIZE(payload)
        w = put_double(self.buf, job.at)
        scheduled.append((PyBytes_FromStringAndSize(self.buf, w - self.buf), payload))
        return 0

    cdef int check(self, const uint8_t *data, size_t n, k2s_job *job) except -2:
        """Parse and validate one message: R_OK, or the reason to reject it. On R_OK,
        job.queue, job.args and job.extra are ready to copy (defaults and trimming done)."""
        cdef int verdict
        cdef uint32_t schema_id
        if n > self.max_message_bytes:
            return R_TOO_LARGE
        if self.wire != WIRE_PLAIN:
            if n and data[0] == 0 and k2s_unframe(&data, &n, &schema_id) == 0:
                if self.schema_allow is not None and schema_id not in self.schema_allow:
                    return R_SCHEMA_NOT_ALLOWED
            elif self.wire == WIRE_CONFLUENT:
                return R_BAD_FRAMING
        if k2s_parse_job(data, n, job) < 0:
            return R_NOT_PROTOBUF

        if job.job_class_len == 0:
            return R_MISSING_CLASS
        if job.job_class_len > NAME_MAX or not k2s_constant_path(job.job_class, job.job_class_len):
            return R_BAD_CLASS
        if self.class_allow is not None and PyBytes_FromStringAndSize(
                <const char *>job.job_class, job.job_class_len) not in self.class_allow:
            return R_CLASS_NOT_ALLOWED

        if job.wrapped_len:
            if job.wrapped_len > NAME_MAX or not k2s_constant_path(job.wrapped, job.wrapped_len):
                return R_BAD_WRAPPED
            if self.class_allow is not None and PyBytes_FromStringAndSize(
                    <const char *>job.wrapped, job.wrapped_len) not in self.class_allow:
                return R_CLASS_NOT_ALLOWED

        if job.queue_len == 0:
            job.queue = <const uint8_t *>PyBytes_AS_STRING(self.default_queue)
            job.queue_len = <size_t>PyBytes_GET_SIZE(self.default_queue)
        if job.queue_len > NAME_MAX or not k2s_queue_name(job.queue, job.queue_len):
            return R_BAD_QUEUE
        if self.queue_allow is not None and PyBytes_FromStringAndSize(
                <const char *>job.queue, job.queue_len) not in self.queue_allow:
            return R_QUEUE_NOT_ALLOWED

        k2s_strip(&job.args, &job.args_len)
        if job.args_len == 0:
            job.args, job.args_len = <const uint8_t *>b"[]", 2
        if k2s_json_array(job.args, job.args_len, self.int_chars) != K2S_JSON_OK:
            return R_BAD_ARGS

        k2s_strip(&job.extra, &job.extra_len)
        if job.extra_len:
            verdict = k2s_json_object(job.extra, job.extra_len, self.int_chars, &RESERVED)
            if verdict != K2S_JSON_OK:
                if verdict == K2S_JSON_NOMEM:
                    raise MemoryError()
                return EXTRA_REASONS[verdict]
            job.extra += 1  # the members only: they are spliced into the payload
            job.extra_len -= 2
            k2s_strip(&job.extra, &job.extra_len)

        if job.has_at and not (isfinite(job.at) and job.at <= EPOCH_MAX):
            return R_BAD_AT
        if job.has_created_at and not (isfinite(job.created_at) and 0 <= job.created_at <= EPOCH_MAX):
            return R_BAD_CREATED_AT
        return R_OK


cdef size_t TRACE_VALUE_MAX = MAX_TRACE_VALUE


cdef inline bint trace_value_ok(bytes value, bint traceparent) noexcept:
    """_encoder_py.trace_members' test of one header value: at most MAX_TRACE_VALUE bytes
    of printable ASCII but '"' and '\\'; a traceparent in W3C form, version not ff, ids
    not all zeros."""
    cdef const uint8_t *p = <const uint8_t *>PyBytes_AS_STRING(value)
    cdef size_t n = <size_t>PyBytes_GET_SIZE(value), i
    cdef uint8_t c
    cdef bint nonzero_trace = False, nonzero_parent = False
    if n > TRACE_VALUE_MAX:
        return False
    for i in range(n):
        c = p[i]
        if c < 0x20 or c > 0x7E or c == b'"' or c == b'\\':
            return False
    if not traceparent:
        return True
    if n != 55 or p[2] != b'-' or p[35] != b'-' or p[52] != b'-' or (p[0] == b'f' and p[1] == b'f'):
        return False
    for i in range(55):
        if i == 2 or i == 35 or i == 52:
            continue
        c = p[i]
        if not (b'0' <= c <= b'9' or b'a' <= c <= b'f'):
            return False
        if c != b'0':
            if 3 <= i < 35:
                nonzero_trace = True
            elif 36 <= i < 52:
                nonzero_parent = True
    return nonzero_trace and nonzero_parent


cdef bytes trace_members_c(tuple names, tuple quoted, list headers, const uint8_t *extra, size_t extra_n):
    """_encoder_py.trace_members (the specification) for a job whose extra keys are the
    members extra[0:extra_n], with the loop and the checks in C; ``quoted`` holds each
    name as b'"name"'."""
    cdef Py_ssize_t k, count = len(names)
    cdef list last = [None] * count
    for header in headers:
        if type(header) is not tuple or PyTuple_GET_SIZE(header) != 2:
            continue
        name = (<tuple>header)[0]
        for k in range(count):
            if name == names[k]:
                last[k] = (<tuple>header)[1]
    cdef list parts = []
    cdef bytes value, key
    cdef object objects = None
    for k in range(count):
        if type(last[k]) is not bytes:
            continue
        value = <bytes>last[k]
        if not trace_value_ok(value, names[k] == "traceparent"):
            continue
        key = <bytes>quoted[k]
        if extra_n and (memmem(extra, extra_n, PyBytes_AS_STRING(key), <size_t>PyBytes_GET_SIZE(key)) != NULL
                        or memchr(extra, b'\\', extra_n) != NULL):
            if objects is None:
                objects = _top_level_keys(b"{" + PyBytes_FromStringAndSize(<const char *>extra, extra_n) + b"}")
            if names[k] in objects:
                continue
        parts += [b",", key, b':"', value, b'"']
    return b"".join(parts)


cdef inline Py_ssize_t bulk_room(object arg) except -1:
    """Bytes a RESP bulk string of ``arg`` takes: $<len>\r\n<arg>\r\n."""
    if type(arg) is not bytes:
        raise TypeError(f"Redis arguments must be bytes, not {type(arg).__name__}")
    cdef char digits[24]
    cdef Py_ssize_t n = PyBytes_GET_SIZE(arg)
    return n + <Py_ssize_t>k2s_write_u64(digits, <uint64_t>n) + 5


cdef inline char *put_bulk(char *w, bytes arg) noexcept:
    cdef Py_ssize_t n = PyBytes_GET_SIZE(arg)
    w[0] = b'$'
    w += 1 + k2s_write_u64(w + 1, <uint64_t>n)
    w[0], w[1] = b'\r', b'\n'
    w = put(w + 2, PyBytes_AS_STRING(arg), <size_t>n)
    w[0], w[1] = b'\r', b'\n'
    return w + 2


def resp(args):
    """One Redis command in RESP, as the sink sends it: ``args`` are bytes, or lists of
    bytes or Payloads spliced in place (``[b"LPUSH", key, payloads]`` needs no tuple of a
    thousand, and Payloads are copied as they are, already framed)."""
    cdef Py_ssize_t count = 0, room = 0
    cdef char digits[24]
    for arg in args:
        if type(arg) is Payloads:
            count += (<Payloads>arg).count
            room += <Py_ssize_t>(<Payloads>arg).used
        elif type(arg) is list:
            count += len(<list>arg)
            for item in <list>arg:
                room += bulk_room(item)
        else:
            count += 1
            room += bulk_room(arg)
    room += <Py_ssize_t>k2s_write_u64(digits, <uint64_t>count) + 3
    out = PyBytes_FromStringAndSize(NULL, room)
    cdef char *w = PyBytes_AS_STRING(out)
    w[0] = b'*'
    w += 1 + k2s_write_u64(w + 1, <uint64_t>count)
    w[0], w[1] = b'\r', b'\n'
    w += 2
    for arg in args:
        if type(arg) is Payloads:
            w = put(w, (<Payloads>arg).buf, (<Payloads>arg).used)
        elif type(arg) is list:
            for item in <list>arg:
                w = put_bulk(w, <bytes>item)
        else:
            w = put_bulk(w, <bytes>arg)
    return out
