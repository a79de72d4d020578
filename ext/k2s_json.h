/* JSON checking for the envelope encoder: is this byte string a UTF-8 JSON array
 * (args) or object (extra keys)? It never builds a value; it walks the bytes once.
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

enum { K2S_JSON_OK = 0, K2S_JSON_BAD = 1, K2S_JSON_DEFER = 2, K2S_JSON_RESERVED = 3 };

#define K2S_JSON_MAX_DEPTH 64
#define K2S_JSON_MAX_PLAIN_DIGITS 18

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
    int defer;               /* a part only the reference may judge */
    int reserved;            /* a top-level key is one the bridge writes itself */
    const char *const *keys; /* reserved keys (NULL-terminated) or NULL */
} k2s_json_cursor;

static inline int k2s_is_space(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static inline void k2s_skip_space(k2s_json_cursor *c) {
    while (c->p < c->end && k2s_is_space(*c->p)) c->p++;
}

/* One UTF-8 sequence starting at c->p (a byte >= 0x80), strictly as Python decodes:
 * no overlong forms, no surrogates, nothing above U+10FFFF. */
static int k2s_utf8(k2s_json_cursor *c) {
    const uint8_t *p = c->p;
    size_t left = (size_t)(c->end - p);
    uint8_t b0 = p[0];
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        if (left < 2 || (p[1] & 0xC0) != 0x80) return -1;
        c->p += 2;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        if (left < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80) return -1;
        if (b0 == 0xE0 && p[1] < 0xA0) return -1;  /* overlong */
        if (b0 == 0xED && p[1] > 0x9F) return -1;  /* surrogate */
        c->p += 3;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        if (left < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80)
            return -1;
        if (b0 == 0xF0 && p[1] < 0x90) return -1;  /* overlong */
        if (b0 == 0xF4 && p[1] > 0x8F) return -1;  /* above U+10FFFF */
        c->p += 4;
    } else {
        return -1;
    }
    return 0;
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

/* A string; c->p is on the opening quote. Sets *escaped when it holds a backslash. */
static int k2s_string(k2s_json_cursor *c, int *escaped) {
    c->p++;
    while (c->p < c->end) {
        uint8_t ch = *c->p;
        if (ch == '"') { c->p++; return 0; }
        if (ch < 0x20) return -1;
        if (ch < 0x80 && ch != '\\') { c->p++; continue; }
        if (ch >= 0x80) { if (k2s_utf8(c) < 0) return -1; continue; }
        /* an escape */
        *escaped = 1;
        if (c->end - c->p < 2) return -1;
        ch = c->p[1];
        if (ch == 'u') {
            unsigned u, lo;
            if (c->end - c->p < 6 || k2s_hex4(c->p + 2, &u) < 0) return -1;
            c->p += 6;
            if (u >= 0xDC00 && u <= 0xDFFF) return -1;  /* a lone low surrogate */
            if (u >= 0xD800 && u <= 0xDBFF) {            /* must pair with a low one */
                if (c->end - c->p < 6 || c->p[0] != '\\' || c->p[1] != 'u' ||
                    k2s_hex4(c->p + 2, &lo) < 0 || lo < 0xDC00 || lo > 0xDFFF)
                    return -1;
                c->p += 6;
            }
        } else if (ch == '"' || ch == '\\' || ch == '/' || ch == 'b' || ch == 'f' ||
                   ch == 'n' || ch == 'r' || ch == 't') {
            c->p += 2;
        } else {
            return -1;
        }
    }
    return -1;  /* unterminated */
}

static int k2s_digits(k2s_json_cursor *c) {
    const uint8_t *start = c->p;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') c->p++;
    return (int)(c->p - start);
}

static int k2s_number(k2s_json_cursor *c) {
    if (*c->p == '-') c->p++;
    if (c->p >= c->end) return -1;
    if (*c->p == '0') {
        c->p++;
    } else {
        int n = k2s_digits(c);
        if (n == 0) return -1;
        if (n > K2S_JSON_MAX_PLAIN_DIGITS) c->defer = 1;
    }
    if (c->p < c->end && *c->p == '.') {
        c->p++;
        if (k2s_digits(c) == 0) return -1;
    }
    if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
        c->p++;
        if (c->p < c->end && (*c->p == '+' || *c->p == '-')) c->p++;
        if (k2s_digits(c) == 0) return -1;
        c->defer = 1;  /* may be out of range: msgspec decides */
    }
    return 0;
}

static int k2s_literal(k2s_json_cursor *c, const char *word, size_t n) {
    if ((size_t)(c->end - c->p) < n) return -1;
    for (size_t i = 0; i < n; i++)
        if (c->p[i] != (uint8_t)word[i]) return -1;
    c->p += n;
    return 0;
}

static int k2s_key_reserved(const k2s_json_cursor *c, const uint8_t *s, size_t n) {
    for (const char *const *k = c->keys; *k; k++) {
        size_t i = 0;
        while (i < n && (*k)[i] && (uint8_t)(*k)[i] == s[i]) i++;
        if (i == n && (*k)[i] == '\0') return 1;
    }
    return 0;
}

/* A value nested `depth` deep (the outermost array or object is depth 1). */
static int k2s_value(k2s_json_cursor *c, int depth) {
    k2s_skip_space(c);
    if (c->p >= c->end) return -1;
    uint8_t ch = *c->p;
    int escaped = 0;
    if (ch == '[' || ch == '{') {
        uint8_t close = ch == '[' ? ']' : '}';
        if (depth + 1 > K2S_JSON_MAX_DEPTH) return -1;
        c->p++;
        k2s_skip_space(c);
        if (c->p < c->end && *c->p == close) { c->p++; return 0; }
        for (;;) {
            if (close == '}') {
                k2s_skip_space(c);
                if (c->p >= c->end || *c->p != '"') return -1;
                const uint8_t *key = c->p + 1;
                escaped = 0;
                if (k2s_string(c, &escaped) < 0) return -1;
                if (depth == 0 && c->keys) {
                    if (escaped) c->defer = 1;  /* the key's text needs unescaping */
                    else if (k2s_key_reserved(c, key, (size_t)(c->p - 1 - key))) c->reserved = 1;
                }
                k2s_skip_space(c);
                if (c->p >= c->end || *c->p != ':') return -1;
                c->p++;
            }
            if (k2s_value(c, depth + 1) < 0) return -1;
            k2s_skip_space(c);
            if (c->p >= c->end) return -1;
            if (*c->p == ',') { c->p++; continue; }
            if (*c->p == close) { c->p++; return 0; }
            return -1;
        }
    }
    if (ch == '"') return k2s_string(c, &escaped);
    if (ch == '-' || (ch >= '0' && ch <= '9')) return k2s_number(c);
    if (ch == 't') return k2s_literal(c, "true", 4);
    if (ch == 'f') return k2s_literal(c, "false", 5);
    if (ch == 'n') return k2s_literal(c, "null", 4);
    return -1;
}

/* Check that s[0:n] (no surrounding white space) is one JSON value opening with
 * `open` ('[' or '{'). With `keys`, also flag a reserved top-level key. */
static int k2s_json_check(const uint8_t *s, size_t n, uint8_t open, const char *const *keys) {
    k2s_json_cursor c = {s, s + n, 0, 0, keys};
    if (n == 0 || s[0] != open) return K2S_JSON_BAD;
    if (k2s_value(&c, 0) < 0) return K2S_JSON_BAD;
    k2s_skip_space(&c);
    if (c.p != c.end) return K2S_JSON_BAD;
    if (c.defer) return K2S_JSON_DEFER;
    return c.reserved ? K2S_JSON_RESERVED : K2S_JSON_OK;
}

#endif
