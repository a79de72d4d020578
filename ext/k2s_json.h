/* JSON checking for the envelope encoder: is this byte string a UTF-8 JSON array
 * (args) or object (extra keys)? It never builds a value; it walks the bytes once, in one
 * loop with an explicit bracket stack.
 *
 * The verdicts must equal the reference encoder's (msgspec plus a depth limit,
 * encoder_py.check_args / check_extra). Where agreeing would mean re-implementing
 * msgspec's number parsing (an exponent, or more than 18 integer digits: out-of-range
 * floats and huge integers) the checker answers K2S_JSON_DEFER and the caller asks the
 * reference. Every other answer is final.
 */
#ifndef K2S_JSON_H
#define K2S_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum { K2S_JSON_OK = 0, K2S_JSON_BAD = 1, K2S_JSON_DEFER = 2, K2S_JSON_RESERVED = 3 };

#define K2S_JSON_MAX_DEPTH 64
#define K2S_JSON_MAX_PLAIN_DIGITS 18

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
#if defined(__SANITIZE_ADDRESS__)
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

/* A number at p: the byte after it, or NULL. Sets *defer when msgspec must judge it. */
static const uint8_t *k2s_number(const uint8_t *p, const uint8_t *end, int *defer) {
    const uint8_t *q;
    if (*p == '-') p++;
    if (p >= end) return NULL;
    if (*p == '0') {
        p++;
    } else {
        q = k2s_digits(p, end);
        if (q == p) return NULL;
        if (q - p > K2S_JSON_MAX_PLAIN_DIGITS) *defer = 1;
        p = q;
    }
    if (p < end && *p == '.') {
        q = k2s_digits(p + 1, end);
        if (q == p + 1) return NULL;
        p = q;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        q = k2s_digits(p, end);
        if (q == p) return NULL;
        p = q;
        *defer = 1;  /* may be out of range */
    }
    return p;
}

static inline const uint8_t *k2s_literal(const uint8_t *p, const uint8_t *end, const char *word,
                                         size_t n) {
    if ((size_t)(end - p) < n || memcmp(p, word, n) != 0) return NULL;
    return p + n;
}

/* Top-level keys k2s_json_check flags, with a filter that turns most keys away at one
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

/* Check that s[0:n] (no surrounding white space) is one JSON value opening with
 * `open` ('[' or '{'). With `keys`, also flag a top-level key that is one of them. */
static int k2s_json_check(const uint8_t *s, size_t n, uint8_t open, const k2s_keys *keys) {
    const uint8_t *p = s, *end = s + n, *key, *q;
    uint8_t closers[K2S_JSON_MAX_DEPTH];
    int depth = 0, defer = 0, reserved = 0, escaped;
    if (n == 0 || s[0] != open) return K2S_JSON_BAD;

value:
    p = k2s_space(p, end);
    if (p >= end) return K2S_JSON_BAD;
    switch (*p) {
    case '[':
    case '{':
        if (depth == K2S_JSON_MAX_DEPTH) return K2S_JSON_BAD;
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
        if (!(p = k2s_short_string(q, end)) && !(p = k2s_string(q, end, &escaped))) return K2S_JSON_BAD;
        goto after;
    case 't':
        if (!(p = k2s_literal(p, end, "true", 4))) return K2S_JSON_BAD;
        goto after;
    case 'f':
        if (!(p = k2s_literal(p, end, "false", 5))) return K2S_JSON_BAD;
        goto after;
    case 'n':
        if (!(p = k2s_literal(p, end, "null", 4))) return K2S_JSON_BAD;
        goto after;
    default:
        if (*p != '-' && (*p < '0' || *p > '9')) return K2S_JSON_BAD;
        if (!(p = k2s_number(p, end, &defer))) return K2S_JSON_BAD;
        goto after;
    }

member: /* "key": value, inside an object */
    p = k2s_space(p, end);
    if (p >= end || *p != '"') return K2S_JSON_BAD;
    key = p + 1;
    escaped = 0;
    if (!(p = k2s_short_string(key, end)) && !(p = k2s_string(key, end, &escaped))) return K2S_JSON_BAD;
    if (depth == 1 && keys) {
        if (escaped) defer = 1;  /* the key's text needs unescaping: the reference judges */
        else if (k2s_key_reserved(keys, key, (size_t)(p - 1 - key))) reserved = 1;
    }
    p = k2s_space(p, end);
    if (p >= end || *p != ':') return K2S_JSON_BAD;
    p++;
    goto value;

after: /* a value ended: a comma, a closing bracket, or the end of the text */
    p = k2s_space(p, end);
    if (depth == 0) {
        if (p != end) return K2S_JSON_BAD;
        return defer ? K2S_JSON_DEFER : reserved ? K2S_JSON_RESERVED : K2S_JSON_OK;
    }
    if (p >= end) return K2S_JSON_BAD;
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
    return K2S_JSON_BAD;
}

#endif
