/* The Job message's wire format and the small formatters of the envelope encoder.
 * Rules (the reference's, _encoder_py.parse_job): wire types 0, 1, 2, 5 only; a tag
 * below 2**32 with a field number above 0; varints of at most 10 bytes and 64 bits;
 * a known field with the wrong wire type is malformed; unknown fields are skipped;
 * the last occurrence of a field wins. */
#ifndef K2S_WIRE_H
#define K2S_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "k2s_json.h"  /* k2s_page_holds */

typedef struct {
    const uint8_t *job_class, *queue, *args, *jid, *extra, *wrapped;
    size_t job_class_len, queue_len, args_len, jid_len, extra_len, wrapped_len;
    double at, created_at;
    int has_at, has_created_at;
    int retry_kind;          /* 0: unset (true), 1: bool, 2: count */
    uint64_t retry_value;
} k2s_job;

static inline int k2s_varint(const uint8_t **pp, const uint8_t *end, uint64_t *out) {
    const uint8_t *p = *pp;
    uint64_t v = 0;
    for (int i = 0; i < 10; i++) {
        if (p >= end) return -1;
        uint8_t b = *p++;
        if (i == 9 && b > 1) return -1;
        v |= (uint64_t)(b & 0x7F) << (7 * i);
        if (b < 0x80) { *pp = p; *out = v; return 0; }
    }
    return -1;
}

static inline double k2s_le_double(const uint8_t *p) {
    uint64_t bits = 0;
    double d;
    for (int i = 7; i >= 0; i--) bits = (bits << 8) | p[i];
    memcpy(&d, &bits, sizeof d);
    return d;
}

/* 0 when buf[0:n] is a well-formed Job message; its fields in *job. */
static int k2s_parse_job(const uint8_t *buf, size_t n, k2s_job *job) {
    const uint8_t *p = buf, *end = buf + n;
    /* field by field: a memset of the struct compiles to `rep stos`, slow to start */
    job->job_class = job->queue = job->args = job->jid = job->extra = job->wrapped = NULL;
    job->job_class_len = job->queue_len = job->args_len = job->jid_len = job->extra_len =
        job->wrapped_len = 0;
    job->at = job->created_at = 0.0;
    job->has_at = job->has_created_at = job->retry_kind = 0;
    job->retry_value = 0;
    while (p < end) {
        uint64_t tag, v = 0, len;
        const uint8_t *data = NULL;
        if (k2s_varint(&p, end, &tag) < 0 || (tag >> 32) || (tag >> 3) == 0) return -1;
        unsigned wire = (unsigned)(tag & 7), number = (unsigned)(tag >> 3);
        switch (wire) {
        case 0:
            if (k2s_varint(&p, end, &v) < 0) return -1;
            break;
        case 1:
            if (end - p < 8) return -1;
            data = p; p += 8;
            break;
        case 2:
            if (k2s_varint(&p, end, &len) < 0 || len > (uint64_t)(end - p)) return -1;
            data = p; v = len; p += len;
            break;
        case 5:
            if (end - p < 4) return -1;
            p += 4;
            break;
        default:
            return -1;
        }
        if (number > 10) continue;
        static const unsigned char expected[11] = {9, 2, 2, 2, 1, 2, 0, 0, 1, 2, 2};
        if (wire != expected[number]) return -1;
        switch (number) {
        case 1: job->job_class = data; job->job_class_len = (size_t)v; break;
        case 2: job->queue = data; job->queue_len = (size_t)v; break;
        case 3: job->args = data; job->args_len = (size_t)v; break;
        case 4: job->at = k2s_le_double(data); job->has_at = 1; break;
        case 5: job->jid = data; job->jid_len = (size_t)v; break;
        case 6: job->retry_kind = 1; job->retry_value = v != 0; break;
        case 7: job->retry_kind = 2; job->retry_value = v & 0xFFFFFFFFu; break;
        case 8: job->created_at = k2s_le_double(data); job->has_created_at = 1; break;
        case 9: job->extra = data; job->extra_len = (size_t)v; break;
        case 10: job->wrapped = data; job->wrapped_len = (size_t)v; break;
        }
    }
    return 0;
}

/* Confluent's Schema Registry framing for Protobuf (_encoder_py.unframe): magic byte 0, a
 * 4-byte big-endian schema id, the message indexes (a zigzag varint count, then that many
 * zigzag varints; a lone 0 for the first message). 0 and the message in *buf, *n when
 * buf[0:*n] is framed so; -1 otherwise. Every index takes a byte: bounded by *n. */
static int k2s_unframe(const uint8_t **buf, size_t *n, uint32_t *schema_id) {
    const uint8_t *p = *buf, *end = p + *n;
    uint64_t count, index;
    if (*n < 6 || p[0] != 0) return -1;
    *schema_id = (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | (uint32_t)p[4];
    p += 5;
    if (k2s_varint(&p, end, &count) < 0) return -1;
    if (count & 1) return -1;  /* a negative count */
    for (count >>= 1; count; count--)
        if (k2s_varint(&p, end, &index) < 0 || (index & 1)) return -1;  /* a negative index */
    *buf = p;
    *n = (size_t)(end - p);
    return 0;
}

/* Byte classes of the names in a job: a bit per class. */
enum { K2S_UPPER = 1, K2S_WORD = 2, K2S_QUEUE = 4, K2S_HEX = 8 };

static const uint8_t k2s_name_class[256] = {
#define K2S_Q_(c) [c] = K2S_QUEUE
    /* queue names: printable ASCII without space, '"', ',' and '\\' */
    K2S_Q_('!'), K2S_Q_('#'), K2S_Q_('$'), K2S_Q_('%'), K2S_Q_('&'), K2S_Q_('\''), K2S_Q_('('),
    K2S_Q_(')'), K2S_Q_('*'), K2S_Q_('+'), K2S_Q_('-'), K2S_Q_('.'), K2S_Q_('/'), K2S_Q_(':'),
    K2S_Q_(';'), K2S_Q_('<'), K2S_Q_('='), K2S_Q_('>'), K2S_Q_('?'), K2S_Q_('@'), K2S_Q_('['),
    K2S_Q_(']'), K2S_Q_('^'), K2S_Q_('`'), K2S_Q_('{'), K2S_Q_('|'), K2S_Q_('}'), K2S_Q_('~'),
#undef K2S_Q_
    ['_'] = K2S_WORD | K2S_QUEUE,
    ['0' ... '9'] = K2S_WORD | K2S_QUEUE | K2S_HEX,
    ['a' ... 'f'] = K2S_WORD | K2S_QUEUE | K2S_HEX,
    ['g' ... 'z'] = K2S_WORD | K2S_QUEUE,
    ['A' ... 'Z'] = K2S_UPPER | K2S_WORD | K2S_QUEUE,
};

#ifdef __SSE2__
#include <emmintrin.h>

/* Names up to 64 bytes are checked 16 bytes at a time, with bit masks instead of a loop
 * whose end the branch predictor cannot know. The bytes are read where they are when 64
 * bytes from s stay in s's page (k2s_page_holds; the bytes past the name are masked
 * off), else from a copy. */
static inline const uint8_t *k2s_name_bytes(const uint8_t *s, size_t n, uint8_t *copy) {
    if (k2s_page_holds(s, 64)) return s;
    memset(copy, 0, 64);
    memcpy(copy, s, n);
    return copy;
}

static inline __m128i k2s_between(__m128i v, char lo, char hi) {  /* lo <= byte <= hi, both ASCII */
    return _mm_and_si128(_mm_cmpgt_epi8(v, _mm_set1_epi8((char)(lo - 1))),
                         _mm_cmplt_epi8(v, _mm_set1_epi8((char)(hi + 1))));
}

static inline uint64_t k2s_low_bits(size_t n) { return n >= 64 ? ~0ULL : (1ULL << n) - 1; }
#endif

/* A Ruby constant path: [A-Z][A-Za-z0-9_]* joined by "::". */
static int k2s_constant_path(const uint8_t *s, size_t n) {
#ifdef __SSE2__
    if (n && n <= 64) {
        uint8_t copy[64];
        const uint8_t *p = k2s_name_bytes(s, n, copy);
        uint64_t upper = 0, word = 0, colon = 0, all = k2s_low_bits(n);
        for (size_t i = 0; i < n; i += 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)(p + i));
            __m128i up = k2s_between(v, 'A', 'Z');
            __m128i w = _mm_or_si128(_mm_or_si128(up, k2s_between(v, 'a', 'z')),
                                     _mm_or_si128(k2s_between(v, '0', '9'), _mm_cmpeq_epi8(v, _mm_set1_epi8('_'))));
            upper |= (uint64_t)(unsigned)_mm_movemask_epi8(up) << i;
            word |= (uint64_t)(unsigned)_mm_movemask_epi8(w) << i;
            colon |= (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(':'))) << i;
        }
        upper &= all, word &= all, colon &= all;
        uint64_t first = colon & ~(colon << 1), last = colon & ~(colon >> 1);  /* of each run of ':' */
        return (word | colon) == all      /* no other byte */
            && (upper & 1)                 /* a capital first */
            && last == first << 1          /* every run of ':' is "::" */
            && !(colon >> (n - 1))         /* not at the end */
            && ((last << 1) & ~upper) == 0;  /* and a capital after each */
    }
#endif
    size_t i = 0;
    for (;;) {
        if (i >= n || !(k2s_name_class[s[i]] & K2S_UPPER)) return 0;
        i++;
        while (i < n && (k2s_name_class[s[i]] & K2S_WORD)) i++;
        if (i == n) return 1;
        if (n - i < 2 || s[i] != ':' || s[i + 1] != ':') return 0;
        i += 2;
    }
}

static int k2s_all_of(const uint8_t *s, size_t n, uint8_t cls) {
    for (size_t i = 0; i < n; i++)
        if (!(k2s_name_class[s[i]] & cls)) return 0;
    return 1;
}

static int k2s_queue_name(const uint8_t *s, size_t n) {
#ifdef __SSE2__
    if (n && n <= 64) {
        uint8_t copy[64];
        const uint8_t *p = k2s_name_bytes(s, n, copy);
        uint64_t good = 0;
        for (size_t i = 0; i < n; i += 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)(p + i));
            __m128i bad = _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
                                       _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8(',')),
                                                    _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))));
            good |= (uint64_t)(unsigned)_mm_movemask_epi8(_mm_andnot_si128(bad, k2s_between(v, '!', '~'))) << i;
        }
        return (good & k2s_low_bits(n)) == k2s_low_bits(n);
    }
#endif
    return n && k2s_all_of(s, n, K2S_QUEUE);
}

static int k2s_jid_valid(const uint8_t *s, size_t n) { return n == 24 && k2s_all_of(s, n, K2S_HEX); }

static inline int k2s_space_byte(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static void k2s_strip(const uint8_t **s, size_t *n) {
    while (*n && k2s_space_byte((*s)[0])) { (*s)++; (*n)--; }
    while (*n && k2s_space_byte((*s)[*n - 1])) (*n)--;
}

/* --- splitmix64: the jid stream (_encoder_py.mix64 / jid_from) --- */

#define K2S_GAMMA 0x9E3779B97F4A7C15ULL

static inline uint64_t k2s_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static inline uint64_t k2s_fnv1a64(const uint8_t *s, size_t n) {
    uint64_t h = 0xCBF29CE484222325ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001B3ULL;
    return h;
}

/* The 32 bits of v as 8 lowercase hex digits at out, in one 8-byte store. */
static inline void k2s_hex32(uint32_t v, char *out) {
    uint64_t x = v;  /* spread the nibbles into bytes, the most significant one last */
    x = (x | (x << 16)) & 0x0000FFFF0000FFFFULL;
    x = (x | (x << 8)) & 0x00FF00FF00FF00FFULL;
    x = (x | (x << 4)) & 0x0F0F0F0F0F0F0F0FULL;
    x = __builtin_bswap64(x);  /* the most significant first, as text reads */
    uint64_t letters = ((x + 0x0606060606060606ULL) >> 4) & 0x0101010101010101ULL;  /* 1 where > 9 */
    x += 0x3030303030303030ULL + letters * ('a' - '0' - 10);
    memcpy(out, &x, 8);
}

/* 24 lowercase hex digits at out: 64 bits of one output, the top 32 of the next. */
static inline void k2s_jid_at(uint64_t state, char *out) {
    uint64_t hi = k2s_mix64(state + K2S_GAMMA), lo = k2s_mix64(state + 2 * K2S_GAMMA) >> 32;
    k2s_hex32((uint32_t)(hi >> 32), out);
    k2s_hex32((uint32_t)hi, out + 8);
    k2s_hex32((uint32_t)lo, out + 16);
}

/* --- numbers --- */

static inline size_t k2s_write_u64(char *out, uint64_t v) {
    char tmp[20];
    size_t n = 0;
    do { tmp[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    for (size_t i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
    return n;
}

/* How many digits k2s_write_u64 writes for v. */
static inline size_t k2s_decimal_width(uint64_t v) {
    size_t n = 1;
    for (; v >= 10; v /= 10) n++;
    return n;
}

static inline size_t k2s_write_i64(char *out, int64_t v) {
    if (v < 0) { out[0] = '-'; return 1 + k2s_write_u64(out + 1, (uint64_t)0 - (uint64_t)v); }
    return k2s_write_u64(out, (uint64_t)v);
}

/* Milliseconds as float seconds, as repr(ms / 1000) writes them: for 0 <= ms < 2**43
 * the double nearest ms/1000 has a shortest repr of the integer seconds, a dot and the
 * millisecond digits without trailing zeros ("0" when none). Returns 0 outside that
 * range: the caller then formats the double itself. */
static inline size_t k2s_write_ms_as_seconds(char *out, int64_t ms) {
    if (ms < 0 || ms >= (1LL << 43)) return 0;
    size_t n = k2s_write_u64(out, (uint64_t)(ms / 1000));
    int frac = (int)(ms % 1000);
    out[n++] = '.';
    if (frac == 0) { out[n++] = '0'; return n; }
    char d[3] = {(char)('0' + frac / 100), (char)('0' + frac / 10 % 10), (char)('0' + frac % 10)};
    int keep = d[2] != '0' ? 3 : d[1] != '0' ? 2 : 1;
    memcpy(out + n, d, (size_t)keep);
    return n + (size_t)keep;
}

/* --- the payload, in the order Sidekiq::Client.push writes its keys (_encoder_py.Encoder.encode_one) --- */

/* For the steps of the encoder's loop: inlined there even where gcc judges them too big. */
#define K2S_INLINE static inline __attribute__((always_inline))

#define K2S_PUT(w, lit) (memcpy((w), (lit), sizeof(lit) - 1), (w) += sizeof(lit) - 1)

static inline char *k2s_put(char *w, const void *s, size_t n) {
    memcpy(w, s, n);
    return w + n;
}

/* What a payload holds beside the message's own bytes: the job's part, set for each job,
 * and the batch's, set once. */
typedef struct {
    const char *jid;          /* the producer's 24 characters, or NULL: k2s_jid_at(jid_state) */
    uint64_t jid_state;
    const char *created;      /* created_at's text, created_len bytes */
    size_t created_len;
    int64_t partition, offset;
    const char *trace;        /* the trace members (,"traceparent":"…"), trace_len bytes */
    size_t trace_len;
    /* the batch's */
    const char *topic;
    size_t topic_len;
    int origin;               /* write k2s_origin */
    const char *tail;         /* the end of an immediate job: ,"enqueued_at":…} */
    size_t tail_len;
    int seeded;               /* seed is the origin seed of seed_partition */
    int64_t seed_partition;
    uint64_t seed;
} k2s_envelope;

/* _encoder_py.origin_seed: FNV-1a of "<topic>/<partition>". */
static uint64_t k2s_origin_seed(const char *topic, size_t topic_len, int64_t partition) {
    char key[24] = "/";
    size_t n = 1 + k2s_write_i64(key + 1, partition);
    uint64_t h = k2s_fnv1a64((const uint8_t *)topic, topic_len);
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)key[i]) * 0x100000001B3ULL;
    return h;
}

/* The job's jid: the producer's when it is one, else derived from its origin (from_origin),
 * else the next of the random stream at *state. */
K2S_INLINE void k2s_pick_jid(k2s_envelope *env, const k2s_job *job, int from_origin, uint64_t *state) {
    env->jid = NULL;
    if (k2s_jid_valid(job->jid, job->jid_len)) {
        env->jid = (const char *)job->jid;
    } else if (from_origin) {
        if (!env->seeded || env->partition != env->seed_partition) {
            env->seed = k2s_origin_seed(env->topic, env->topic_len, env->partition);
            env->seed_partition = env->partition, env->seeded = 1;
        }
        env->jid_state = env->seed + 2 * (uint64_t)env->offset * K2S_GAMMA;
    } else {
        env->jid_state = *state;
        *state += 2 * K2S_GAMMA;
    }
}

/* No payload of a message of n bytes is longer. */
K2S_INLINE size_t k2s_payload_bound(const k2s_envelope *env, size_t n, size_t fixed_room) {
    return n + env->topic_len + fixed_room + env->trace_len;
}

/* Everything from '{' to the trace members: all but the closing brace of a scheduled job,
 * all but ,"enqueued_at":…} of an immediate one. A call of its own: inlined into the loop,
 * it costs ~20 instructions a job more. */
__attribute__((noinline)) static char *k2s_write_job(char *w, const k2s_job *job, const k2s_envelope *env) {
    K2S_PUT(w, "{\"retry\":");
    if (job->retry_kind == 0 || (job->retry_kind == 1 && job->retry_value)) K2S_PUT(w, "true");
    else if (job->retry_kind == 1) K2S_PUT(w, "false");
    else w += k2s_write_u64(w, job->retry_value);
    K2S_PUT(w, ",\"queue\":\"");
    w = k2s_put(w, job->queue, job->queue_len);
    K2S_PUT(w, "\"");
    if (env->origin) {
        K2S_PUT(w, ",\"k2s_origin\":\"");
        w = k2s_put(w, env->topic, env->topic_len);
        K2S_PUT(w, "/");
        w += k2s_write_i64(w, env->partition);
        K2S_PUT(w, "/");
        w += k2s_write_i64(w, env->offset);
        K2S_PUT(w, "\"");
    }
    K2S_PUT(w, ",\"class\":\"");
    w = k2s_put(w, job->job_class, job->job_class_len);
    K2S_PUT(w, "\"");
    if (job->wrapped_len) {
        K2S_PUT(w, ",\"wrapped\":\"");
        w = k2s_put(w, job->wrapped, job->wrapped_len);
        K2S_PUT(w, "\"");
    }
    K2S_PUT(w, ",\"args\":");
    w = k2s_put(w, job->args, job->args_len);
    if (job->extra_len) {
        K2S_PUT(w, ",");
        w = k2s_put(w, job->extra, job->extra_len);
    }
    K2S_PUT(w, ",\"jid\":\"");
    if (env->jid) memcpy(w, env->jid, 24);
    else k2s_jid_at(env->jid_state, w);
    w += 24;
    K2S_PUT(w, "\",\"created_at\":");
    w = k2s_put(w, env->created, env->created_len);
    if (env->trace_len) w = k2s_put(w, env->trace, env->trace_len);
    return w;
}

/* An immediate job as the sink sends it, the RESP bulk string $<length>\r\n<payload>\r\n,
 * at frame, which has room for bound + 32 bytes (bound: k2s_payload_bound). The payload is
 * written where a header as long as the bound's leaves it, and moved up if its own is
 * shorter. Returns the frame's end; the payload's length in *payload_len. */
K2S_INLINE char *k2s_write_frame(char *frame, size_t bound, const k2s_job *job, const k2s_envelope *env,
                                 size_t *payload_len) {
    size_t header_n = k2s_decimal_width(bound), body_n;
    char *body = frame + header_n + 3;
    char *w = k2s_put(k2s_write_job(body, job, env), env->tail, env->tail_len);
    body_n = (size_t)(w - body);
    if (k2s_decimal_width(body_n) != header_n) {
        header_n = k2s_decimal_width(body_n);
        memmove(frame + header_n + 3, body, body_n);
        w = frame + header_n + 3 + body_n;
    }
    frame[0] = '$';
    k2s_write_u64(frame + 1, body_n);
    frame[header_n + 1] = '\r', frame[header_n + 2] = '\n';
    w[0] = '\r', w[1] = '\n';
    *payload_len = body_n;
    return w + 2;
}

#endif
