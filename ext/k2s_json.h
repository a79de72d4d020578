/* JSON checking for the envelope encoder: is this byte string a UTF-8 JSON array
 * (args) or object (extra keys)? It never builds a value; it walks the bytes once, in one
 * loop with an explicit bracket stack, and every answer is final: no input is handed to
 * the reference, so no input costs more than a walk of its bytes (plus, for an object with
 * many top-level keys, a sort of them).
 *
 * The verdicts must equal the reference encoder's (msgspec plus a depth limit,
 * _encoder_py.check_args / check_extra): a number is bad when msgspec cannot represent it,
 * that is a float (a fraction or an exponent) whose value rounds past DBL_MAX, or an
 * integer longer than Python's int parsing limit (sign included).
 */
#ifndef K2S_JSON_H
#define K2S_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Verdicts, in order of precedence when an object has several faults. */
enum {
    K2S_JSON_OK = 0, K2S_JSON_BAD = 1, K2S_JSON_RESERVED = 2, K2S_JSON_DUPLICATE = 3,
    K2S_JSON_BAD_TAGS = 4, K2S_JSON_BAD_RETRY_FOR = 5, K2S_JSON_NOMEM = 6,
};

#define K2S_JSON_MAX_DEPTH 100
#define K2S_ARGS_MAX_DEPTH 99    /* _encoder_py.MAX_ARGS_DEPTH */
#define K2S_EXTRA_MAX_DEPTH 100  /* _encoder_py.MAX_EXTRA_DEPTH */
#define K2S_RETRY_FOR_MAX 1000000000LL

/* AddressSanitizer, as gcc (__SANITIZE_ADDRESS__) and clang (__has_feature) announce it. */
#if defined(__SANITIZE_ADDRESS__)
#define K2S_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define K2S_ASAN 1
#endif
#endif

/* 1 for the bytes that may stand in a string as they are: printable ASCII but '"', '\\'. */
static const uint8_t k2s_plain[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,  1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,  1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,  1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
};

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "k2s_special8 reads words little-endian: port it before building on this machine"
#endif

#define K2S_ONES 0x0101010101010101ULL
#define K2S_HIGHS 0x8080808080808080ULL

/* A mask with the high bit set in the bytes of v (little-endian) that are not plain: a
 * control character (< 0x20), '"', '\\' or a byte of a UTF-8 sequence (>= 0x80). Borrows
 * only run upwards, so the lowest set bit always marks the first such byte exactly. */
static inline uint64_t k2s_special8(uint64_t v) {
    uint64_t control = (v - 0x20 * K2S_ONES) & ~v;
    uint64_t quote = v ^ (0x22 * K2S_ONES), backslash = v ^ (0x5C * K2S_ONES);
    quote = (quote - K2S_ONES) & ~quote;
    backslash = (backslash - K2S_ONES) & ~backslash;
    return (control | quote | backslash | v) & K2S_HIGHS;
}

static inline const uint8_t *k2s_space(const uint8_t *p, const uint8_t *end) {
    if (p < end && *p > ' ') return p;  /* the common case: no white space at all */
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
    return p;
}

/* One UTF-8 sequence at p (a byte >= 0x80), strictly as Python decodes: no overlong
 * forms, no surrogates, nothing above U+10FFFF. The byte after it, or NULL. */
static const uint8_t *k2s_utf8(const uint8_t *p, const uint8_t *end) {
    size_t left = (size_t)(end - p);
    uint8_t b0 = p[0];
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        if (left < 2 || (p[1] & 0xC0) != 0x80) return NULL;
        return p + 2;
    }
    if (b0 >= 0xE0 && b0 <= 0xEF) {
        if (left < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80) return NULL;
        if (b0 == 0xE0 && p[1] < 0xA0) return NULL;  /* overlong */
        if (b0 == 0xED && p[1] > 0x9F) return NULL;  /* surrogate */
        return p + 3;
    }
    if (b0 >= 0xF0 && b0 <= 0xF4) {
        if (left < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80)
            return NULL;
        if (b0 == 0xF0 && p[1] < 0x90) return NULL;  /* overlong */
        if (b0 == 0xF4 && p[1] > 0x8F) return NULL;  /* above U+10FFFF */
        return p + 4;
    }
    return NULL;
}

static int k2s_hex4(const uint8_t *p, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        uint8_t h = p[i];
        v <<= 4;
        if (h >= '0' && h <= '9') v |= (unsigned)(h - '0');
        else if (h >= 'a' && h <= 'f') v |= (unsigned)(h - 'a' + 10);
        else if (h >= 'A' && h <= 'F') v |= (unsigned)(h - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

#ifdef __SSE2__
#include <emmintrin.h>

/* A bit per byte of p[0:16] that is not plain (see k2s_special8): a signed compare
 * below 0x20 catches control characters and UTF-8 bytes alike. */
static inline unsigned k2s_special16(const uint8_t *p) {
    __m128i v = _mm_loadu_si128((const __m128i *)p);
    __m128i hit = _mm_or_si128(_mm_cmplt_epi8(v, _mm_set1_epi8(0x20)),
                               _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
                                            _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))));
    return (unsigned)_mm_movemask_epi8(hit);
}
#endif

/* The first byte at or after p that is not plain, or end. */
static inline const uint8_t *k2s_plain_run(const uint8_t *p, const uint8_t *end) {
#ifdef __SSE2__
    for (; end - p >= 16; p += 16) {  /* sixteen bytes at a time */
        unsigned special = k2s_special16(p);
        if (special) return p + __builtin_ctz(special);
    }
#endif
    for (; end - p >= 8; p += 8) {  /* eight at a time */
        uint64_t word, special;
        memcpy(&word, p, 8);
        if ((special = k2s_special8(word))) return p + (__builtin_ctzll(special) >> 3);
    }
    while (p < end && k2s_plain[*p]) p++;
    return p;
}

/* The rest of a string, p just after its opening quote: the byte after the closing
 * quote, or NULL. Sets *escaped when the string holds a backslash. */
static const uint8_t *k2s_string(const uint8_t *p, const uint8_t *end, int *escaped) {
    for (;;) {
        p = k2s_plain_run(p, end);
        if (p >= end) return NULL;  /* unterminated */
        uint8_t ch = *p;
        if (ch == '"') return p + 1;
        if (ch < 0x20) return NULL;
        if (ch >= 0x80) {
            if (!(p = k2s_utf8(p, end))) return NULL;
            continue;
        }
        /* a backslash */
        *escaped = 1;
        if (end - p < 2) return NULL;
        ch = p[1];
        if (ch == 'u') {
            unsigned u, lo;
            if (end - p < 6 || k2s_hex4(p + 2, &u) < 0) return NULL;
            p += 6;
            if (u >= 0xDC00 && u <= 0xDFFF) return NULL;  /* a lone low surrogate */
            if (u >= 0xD800 && u <= 0xDBFF) {             /* must pair with a low one */
                if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || k2s_hex4(p + 2, &lo) < 0 ||
                    lo < 0xDC00 || lo > 0xDFFF)
                    return NULL;
                p += 6;
            }
        } else if (ch == '"' || ch == '\\' || ch == '/' || ch == 'b' || ch == 'f' || ch == 'n' ||
                   ch == 'r' || ch == 't') {
            p += 2;
        } else {
            return NULL;
        }
    }
}

/* Whether the n bytes from p may be read even where they run past the data p points
 * into: they stay in p's page, which is readable since p is (bytes past the data are
 * then ignored). Never under AddressSanitizer, which would rightly report the read. */
static inline int k2s_page_holds(const void *p, size_t n) {
#if defined(K2S_ASAN)
    (void)p, (void)n;
    return 0;
#else
    return ((uintptr_t)p & 4095) <= 4096 - n;
#endif
}

/* The rest of a short string, p just after its opening quote, when its closing quote
 * comes within 16 bytes with nothing before it to check (the common key or value): the
 * byte after the quote, else NULL and k2s_string decides. Inline, because calling
 * k2s_string cost more than scanning such a string (0.93-0.97x per job on the bench's
 * string-heavy job, separate-process A/Bs). Reads past the end of the text where
 * k2s_page_holds allows, so that a string near the end takes this way too. */
static inline __attribute__((always_inline)) const uint8_t *k2s_short_string(const uint8_t *p,
                                                                             const uint8_t *end) {
#ifdef __SSE2__
    size_t left = (size_t)(end - p);
    if (left >= 16 || k2s_page_holds(p, 16)) {
        unsigned special = k2s_special16(p), at = (unsigned)__builtin_ctz(special | 0x10000);
        if (at < left && p[at] == '"') return p + at + 1;
    }
#endif
    (void)p, (void)end;
    return NULL;
}

static inline const uint8_t *k2s_digits(const uint8_t *p, const uint8_t *end) {
    while (p < end && *p >= '0' && *p <= '9') p++;
    return p;
}

/* Whether a float literal (a fraction or an exponent) rounds past DBL_MAX: its value lies
 * in [10**e10, 10**(e10 + 1)), decided without converting it unless e10 is 308. `digits`
 * runs over the integer and fraction digits (a '.' between them), `exp` is the exponent's
 * value, saturated. */
static int k2s_float_overflows(const uint8_t *number, const uint8_t *digits, const uint8_t *digits_end,
                               int64_t exp) {
    int64_t place = -1;  /* the power of ten of the digit at p */
    const uint8_t *p = digits;
    while (p < digits_end && *p >= '0' && *p <= '9') p++;
    place = (int64_t)(p - digits) - 1;
    for (p = digits; p < digits_end; p++) {
        if (*p == '.') continue;
        if (*p != '0') break;
        place--;
    }
    if (p >= digits_end) return 0;  /* zero */
    int64_t e10 = place + exp;
    if (e10 < 308) return 0;
    if (e10 > 308) return 1;
    /* strtod rounds correctly, as msgspec does; the text ends before the buffer does
     * (a closing bracket follows every number the checker accepts) */
    double value = strtod((const char *)number, NULL);
    return value > 1.7976931348623157e308 || value < -1.7976931348623157e308;
}

/* The rest of k2s_number, for a number that is not a short plain integer. */
static const uint8_t *k2s_number_slow(const uint8_t *p, const uint8_t *end, size_t max_int_chars) {
    const uint8_t *start = p, *q, *digits, *digits_end;
    int64_t exp = 0, top;  /* top: the power of ten of the integer part's first digit (-1: it is 0) */
    int negative_exp = 0, is_float = 0;
    if (*p == '-') p++;
    if (p >= end) return NULL;
    digits = p;
    if (*p == '0') {
        p++;
        top = -1;
    } else {
        q = k2s_digits(p, end);
        if (q == p) return NULL;
        top = (int64_t)(q - p) - 1;
        p = q;
    }
    if (p < end && *p == '.') {
        q = k2s_digits(p + 1, end);
        if (q == p + 1) return NULL;
        p = q;
        is_float = 1;
    }
    digits_end = p;
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-')) negative_exp = *p++ == '-';
        q = k2s_digits(p, end);
        if (q == p) return NULL;
        for (; p < q; p++)
            if (exp < 100000000) exp = exp * 10 + (*p - '0');  /* saturated: far past any double */
        if (negative_exp) exp = -exp;
        is_float = 1;
    }
    if (!is_float) return (size_t)(p - start) > max_int_chars ? NULL : p;
    /* the value is below 10**(top + exp + 1): only near 10**308 is there more to see */
    if (top + exp >= 308 && k2s_float_overflows(start, digits, digits_end, exp)) return NULL;
    return p;
}

/* A number at p: the byte after it, or NULL when it is malformed or msgspec cannot read it
 * (an integer of more than max_int_chars bytes, a float that overflows). Inline, the
 * common cases: an integer no longer than max_int_chars, and a number with a fraction but
 * no exponent whose integer part has at most 308 digits (below 1e308: no overflow). A
 * leading 0 ends the integer part, as JSON wants (what follows it fails the walk). */
static inline __attribute__((always_inline)) const uint8_t *k2s_number(const uint8_t *p, const uint8_t *end,
                                                                       size_t max_int_chars) {
    const uint8_t *digits = p + (*p == '-'), *q, *f;
    if (digits < end && *digits >= '0' && *digits <= '9') {
        q = *digits == '0' ? digits + 1 : k2s_digits(digits + 1, end);
        if (q >= end || (*q != '.' && *q != 'e' && *q != 'E')) {
            if ((size_t)(q - p) <= max_int_chars) return q;
        } else if (*q == '.' && q - digits <= 308) {
            f = k2s_digits(q + 1, end);
            if (f > q + 1 && (f >= end || (*f != 'e' && *f != 'E'))) return f;
        }
    }
    return k2s_number_slow(p, end, max_int_chars);
}

static inline const uint8_t *k2s_literal(const uint8_t *p, const uint8_t *end, const char *word,
                                         size_t n) {
    if ((size_t)(end - p) < n || memcmp(p, word, n) != 0) return NULL;
    return p + n;
}

/* Top-level keys k2s_json_object flags, with a filter that turns most keys away at one
 * load: bit n of lengths[c] is set when a key of n bytes starts with c (n >= 63 all
 * share bit 63). The keys are not empty. */
typedef struct {
    const char *const *list;  /* NULL-terminated */
    uint64_t lengths[256];
} k2s_keys;

static inline unsigned k2s_length_bit(size_t n) { return n < 63 ? (unsigned)n : 63; }

static void k2s_keys_init(k2s_keys *keys, const char *const *list) {
    memset(keys->lengths, 0, sizeof keys->lengths);
    keys->list = list;
    for (; *list; list++) keys->lengths[(uint8_t)(*list)[0]] |= 1ULL << k2s_length_bit(strlen(*list));
}

static int k2s_key_reserved(const k2s_keys *keys, const uint8_t *s, size_t n) {
    if (n == 0 || !((keys->lengths[s[0]] >> k2s_length_bit(n)) & 1)) return 0;
    for (const char *const *key = keys->list; *key; key++)
        if (strlen(*key) == n && memcmp(*key, s, n) == 0) return 1;
    return 0;
}

/* The top-level keys of an object, as text without escapes, for the duplicate check. */
typedef struct {
    const uint8_t *p;
    size_t n;
} k2s_span;

#define K2S_INLINE_KEYS 16

typedef struct {
    k2s_span inline_keys[K2S_INLINE_KEYS], *keys;
    size_t count, cap;  /* cap: set once keys leave inline_keys */
    uint8_t *text;  /* unescaped keys, when any key has an escape: at most as long as the object */
    size_t used;  /* set when text is */
} k2s_members;

static inline void k2s_members_init(k2s_members *m) {
    m->keys = m->inline_keys;
    m->count = 0;
    m->text = NULL;
}

static inline void k2s_members_free(k2s_members *m) {
    if (m->keys != m->inline_keys) free(m->keys);
    if (m->text) free(m->text);
}

/* Room for one more key, once the inline ones are taken: twice as many when full. Out of
 * line: the common object has a few keys. */
static __attribute__((noinline)) int k2s_members_room(k2s_members *m) {
    if (m->keys != m->inline_keys && m->count < m->cap) return 0;
    size_t cap = m->count * 2;
    k2s_span *keys = (k2s_span *)malloc(cap * sizeof *keys);
    if (!keys) return -1;
    memcpy(keys, m->keys, m->count * sizeof *keys);
    if (m->keys != m->inline_keys) free(m->keys);
    m->keys = keys, m->cap = cap;
    return 0;
}

static inline int k2s_members_add(k2s_members *m, const uint8_t *p, size_t n) {
    if (__builtin_expect(m->count >= K2S_INLINE_KEYS, 0) && k2s_members_room(m) < 0) return -1;
    m->keys[m->count].p = p, m->keys[m->count].n = n;
    m->count++;
    return 0;
}

static size_t k2s_put_utf8(uint8_t *out, unsigned u) {
    if (u < 0x80) { out[0] = (uint8_t)u; return 1; }
    if (u < 0x800) { out[0] = (uint8_t)(0xC0 | u >> 6); out[1] = (uint8_t)(0x80 | (u & 0x3F)); return 2; }
    if (u < 0x10000) {
        out[0] = (uint8_t)(0xE0 | u >> 12); out[1] = (uint8_t)(0x80 | (u >> 6 & 0x3F));
        out[2] = (uint8_t)(0x80 | (u & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | u >> 18); out[1] = (uint8_t)(0x80 | (u >> 12 & 0x3F));
    out[2] = (uint8_t)(0x80 | (u >> 6 & 0x3F)); out[3] = (uint8_t)(0x80 | (u & 0x3F));
    return 4;
}

/* The text of the string s[0:n] (between its quotes, already checked by k2s_string) at
 * out, escapes resolved; its length, never more than n. */
static size_t k2s_unescape(const uint8_t *s, size_t n, uint8_t *out) {
    const uint8_t *end = s + n;
    uint8_t *w = out;
    while (s < end) {
        if (*s != '\\') { *w++ = *s++; continue; }
        uint8_t ch = s[1];
        s += 2;
        switch (ch) {
        case 'b': *w++ = '\b'; break;
        case 'f': *w++ = '\f'; break;
        case 'n': *w++ = '\n'; break;
        case 'r': *w++ = '\r'; break;
        case 't': *w++ = '\t'; break;
        case 'u': {
            unsigned u = 0, lo = 0;  /* k2s_string checked the digits */
            k2s_hex4(s, &u);
            s += 4;
            if (u >= 0xD800 && u <= 0xDBFF) {  /* a pair, as k2s_string made sure */
                k2s_hex4(s + 2, &lo);
                s += 6;
                u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
            }
            w += k2s_put_utf8(w, u);
            break;
        }
        default: *w++ = ch;  /* '"', '\\', '/' */
        }
    }
    return (size_t)(w - out);
}

static int k2s_span_order(const void *a, const void *b) {
    const k2s_span *x = (const k2s_span *)a, *y = (const k2s_span *)b;
    if (x->n != y->n) return x->n < y->n ? -1 : 1;
    return memcmp(x->p, y->p, x->n);
}

/* Whether two keys are the same: pairwise for a few, else sorted (no input makes this
 * worse than n log n comparisons of keys that are as long as they look). */
static int k2s_members_repeat(k2s_members *m) {
    if (m->count <= K2S_INLINE_KEYS) {
        for (size_t i = 1; i < m->count; i++)
            for (size_t j = 0; j < i; j++)
                if (m->keys[i].n == m->keys[j].n && memcmp(m->keys[i].p, m->keys[j].p, m->keys[i].n) == 0)
                    return 1;
        return 0;
    }
    qsort(m->keys, m->count, sizeof *m->keys, k2s_span_order);
    for (size_t i = 1; i < m->count; i++)
        if (k2s_span_order(&m->keys[i - 1], &m->keys[i]) == 0) return 1;
    return 0;
}

/* Sidekiq's client refuses a truthy `tags` that is not an Array, and (7.1.3+) a
 * `retry_for` above 1,000,000,000, which it also cuts to an integer: the bridge, which
 * copies values as they are, wants an integer. `p` is the value's first byte; a value
 * that is no JSON at all fails the walk anyway. */
static int k2s_tags_fault(const uint8_t *p, const uint8_t *end) {
    return p < end && *p != '[' && *p != 'n' && *p != 'f';
}

static int k2s_retry_for_fault(const uint8_t *p, const uint8_t *end) {
    if (p >= end || *p == 'n' || *p == 'f') return 0;
    int negative = *p == '-';
    const uint8_t *digits = p + negative, *q = k2s_digits(digits, end);
    if (q == digits || (q < end && (*q == '.' || *q == 'e' || *q == 'E'))) return 1;  /* not an integer */
    if (negative) return 0;
    if (q - digits > 10) return 1;
    int64_t v = 0;
    for (; digits < q; digits++) v = v * 10 + (*digits - '0');
    return v > K2S_RETRY_FOR_MAX;
}

/* One JSON value at p (its first byte: no white space before it), nested at most
 * max_depth deep (<= K2S_JSON_MAX_DEPTH), its integers at most max_int_chars long: the
 * byte after it, or NULL when it is malformed or msgspec cannot read it. Inline in both
 * callers, so that each gets its constants folded in. */
static inline __attribute__((always_inline)) const uint8_t *k2s_json_value(const uint8_t *p, const uint8_t *end,
                                                                          int max_depth, size_t max_int_chars) {
    const uint8_t *q;
    uint8_t closers[K2S_JSON_MAX_DEPTH];
    int depth = 0, escaped;

value:
    p = k2s_space(p, end);
    if (p >= end) return NULL;
    switch (*p) {
    case '[':
    case '{':
        if (depth == max_depth) return NULL;
        closers[depth++] = *p == '[' ? ']' : '}';
        p = k2s_space(p + 1, end);
        if (p < end && *p == closers[depth - 1]) {
            p++;
            depth--;
            goto after;
        }
        if (closers[depth - 1] == '}') goto member;
        goto value;
    case '"':
        q = p + 1;
        if (!(p = k2s_short_string(q, end)) && !(p = k2s_string(q, end, &escaped))) return NULL;
        goto after;
    case 't':
        if (!(p = k2s_literal(p, end, "true", 4))) return NULL;
        goto after;
    case 'f':
        if (!(p = k2s_literal(p, end, "false", 5))) return NULL;
        goto after;
    case 'n':
        if (!(p = k2s_literal(p, end, "null", 4))) return NULL;
        goto after;
    default:
        if (*p != '-' && (*p < '0' || *p > '9')) return NULL;
        if (!(p = k2s_number(p, end, max_int_chars))) return NULL;
        goto after;
    }

member: /* "key": value, inside an object */
    p = k2s_space(p, end);
    if (p >= end || *p != '"') return NULL;
    q = p + 1;
    if (!(p = k2s_short_string(q, end)) && !(p = k2s_string(q, end, &escaped))) return NULL;
    p = k2s_space(p, end);
    if (p >= end || *p != ':') return NULL;
    p++;
    goto value;

after: /* a value ended: a comma, a closing bracket, or the value we were asked for */
    if (depth == 0) return p;
    p = k2s_space(p, end);
    if (p >= end) return NULL;
    if (*p == ',') {
        p++;
        if (closers[depth - 1] == '}') goto member;
        goto value;
    }
    if (*p == closers[depth - 1]) {
        p++;
        depth--;
        goto after;
    }
    return NULL;
}

/* A JSON array of arguments, s[0:n] with no white space around it: K2S_JSON_OK or
 * K2S_JSON_BAD. */
static int k2s_json_array(const uint8_t *s, size_t n, size_t max_int_chars) {
    const uint8_t *p;
    if (n == 0 || s[0] != '[' || !(p = k2s_json_value(s, s + n, K2S_ARGS_MAX_DEPTH, max_int_chars)))
        return K2S_JSON_BAD;
    return k2s_space(p, s + n) == s + n ? K2S_JSON_OK : K2S_JSON_BAD;
}

/* A JSON object of extra keys, s[0:n] with no white space around it: its values walked
 * as the args are, and its members judged as Sidekiq's client would: none of `keys`,
 * none twice, `tags` and `retry_for` as the client wants them. The verdict is the first
 * of K2S_JSON_* that applies. The top level has a loop of its own, so that the walk of
 * the values has no key handling in it. */
static int k2s_json_object(const uint8_t *s, size_t n, size_t max_int_chars, const k2s_keys *keys) {
    const uint8_t *p, *end = s + n, *key;
    size_t key_n;
    int verdict = K2S_JSON_BAD, reserved = 0, tags = 0, retry_for = 0, escaped;
    k2s_members members;
    if (n < 2 || s[0] != '{') return K2S_JSON_BAD;
    p = k2s_space(s + 1, end);
    if (p < end && *p == '}') return k2s_space(p + 1, end) == end ? K2S_JSON_OK : K2S_JSON_BAD;
    k2s_members_init(&members);
    for (;;) {
        if (p >= end || *p != '"') goto done;
        key = p + 1;
        escaped = 0;
        if (!(p = k2s_short_string(key, end)) && !(p = k2s_string(key, end, &escaped))) goto done;
        key_n = (size_t)(p - 1 - key);
        p = k2s_space(p, end);
        if (p >= end || *p != ':') goto done;
        p = k2s_space(p + 1, end);
        if (escaped) {  /* compare the key's text, as the reference's decoder gives it */
            if (!members.text) {
                if (!(members.text = (uint8_t *)malloc(n))) {
                    verdict = K2S_JSON_NOMEM;
                    goto done;
                }
                members.used = 0;
            }
            uint8_t *text = members.text + members.used;
            key_n = k2s_unescape(key, key_n, text);
            members.used += key_n;
            key = text;
        }
        reserved |= k2s_key_reserved(keys, key, key_n);
        if (k2s_members_add(&members, key, key_n) < 0) {
            verdict = K2S_JSON_NOMEM;
            goto done;
        }
        if (key_n == 4 && memcmp(key, "tags", 4) == 0)
            tags |= k2s_tags_fault(p, end);
        else if (key_n == 9 && memcmp(key, "retry_for", 9) == 0)
            retry_for |= k2s_retry_for_fault(p, end);
        if (!(p = k2s_json_value(p, end, K2S_EXTRA_MAX_DEPTH - 1, max_int_chars))) goto done;
        p = k2s_space(p, end);
        if (p < end && *p == ',') {
            p = k2s_space(p + 1, end);
            continue;
        }
        if (p < end && *p == '}' && k2s_space(p + 1, end) == end) break;
        goto done;
    }
    verdict = reserved ? K2S_JSON_RESERVED
              : k2s_members_repeat(&members) ? K2S_JSON_DUPLICATE
              : tags ? K2S_JSON_BAD_TAGS
              : retry_for ? K2S_JSON_BAD_RETRY_FOR : K2S_JSON_OK;
done:
    k2s_members_free(&members);
    return verdict;
}

#endif
