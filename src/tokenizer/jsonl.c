#include <stdlib.h>
#include <string.h>
#include "tokenizer/jsonl.h"
#include "util/util.h"

typedef struct {
    const char *p, *end;
} cursor;

static void skip_ws(cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static int hex4(const char *p, uint32_t *v) {
    *v = 0;
    for (int i = 0; i < 4; i++) {
        char h = p[i];
        int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
        if (d < 0) return -1;
        *v = *v << 4 | (uint32_t)d;
    }
    return 0;
}

static size_t put_utf8(char *o, uint32_t cp) {
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | cp >> 12);
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | cp >> 18);
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Parse the string at c->p (opening quote). out: NULL to skip, else room for
 * its raw length (decoding never grows it). An unpaired surrogate escape
 * becomes its 3-byte (invalid UTF-8) form, as a lossless reading would. */
static int parse_string(cursor *c, char *out, size_t *n) {
    if (c->p >= c->end || *c->p != '"') return rg_error("JSON: expected a string");
    c->p++;
    size_t o = 0;
    while (c->p < c->end && *c->p != '"') {
        char ch = *c->p++;
        if (ch != '\\') {
            if (out) out[o] = ch;
            o++;
            continue;
        }
        if (c->p >= c->end) break;
        char e = *c->p++;
        char tmp[8];
        size_t k = 1;
        switch (e) {
        case '"': case '\\': case '/': tmp[0] = e; break;
        case 'b': tmp[0] = '\b'; break;
        case 'f': tmp[0] = '\f'; break;
        case 'n': tmp[0] = '\n'; break;
        case 'r': tmp[0] = '\r'; break;
        case 't': tmp[0] = '\t'; break;
        case 'u': {
            uint32_t cp, lo;
            if (c->end - c->p < 4 || hex4(c->p, &cp)) return rg_error("JSON: bad \\u escape");
            c->p += 4;
            if (cp >= 0xd800 && cp < 0xdc00 && c->end - c->p >= 6 && c->p[0] == '\\' && c->p[1] == 'u' &&
                !hex4(c->p + 2, &lo) && lo >= 0xdc00 && lo < 0xe000) {
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                c->p += 6;
            }
            k = put_utf8(tmp, cp);
            break;
        }
        default: return rg_error("JSON: bad escape \\%c", e);
        }
        if (out) memcpy(out + o, tmp, k);
        o += k;
    }
    if (c->p >= c->end) return rg_error("JSON: unterminated string");
    c->p++;
    if (n) *n = o;
    return 0;
}

static int skip_value(cursor *c, int depth) {
    skip_ws(c);
    if (c->p >= c->end) return rg_error("JSON: value expected");
    if (depth > 64) return rg_error("JSON: nested too deeply");
    char ch = *c->p;
    if (ch == '"') return parse_string(c, NULL, NULL);
    if (ch == '[' || ch == '{') {
        char close = ch == '[' ? ']' : '}';
        c->p++;
        skip_ws(c);
        if (c->p < c->end && *c->p == close) {
            c->p++;
            return 0;
        }
        for (;;) {
            if (ch == '{') {
                skip_ws(c);
                if (parse_string(c, NULL, NULL)) return -1;
                skip_ws(c);
                if (c->p >= c->end || *c->p++ != ':') return rg_error("JSON: ':' expected");
            }
            if (skip_value(c, depth + 1)) return -1;
            skip_ws(c);
            if (c->p < c->end && *c->p == ',') {
                c->p++;
                continue;
            }
            if (c->p < c->end && *c->p == close) {
                c->p++;
                return 0;
            }
            return rg_error("JSON: ',' or '%c' expected", close);
        }
    }
    const char *start = c->p; /* number or literal */
    while (c->p < c->end && !strchr(",]} \t\r\n", *c->p)) c->p++;
    return c->p > start ? 0 : rg_error("JSON: value expected");
}

/* Position c at the value of key in the top-level object; 1 found, 0 absent. */
static int find_key(cursor *c, const char *key) {
    skip_ws(c);
    if (c->p >= c->end || *c->p++ != '{') return rg_error("JSON: object expected");
    size_t klen = strlen(key);
    skip_ws(c);
    if (c->p < c->end && *c->p == '}') return 0;
    for (;;) {
        skip_ws(c);
        const char *kstart = c->p + 1;
        size_t n;
        if (parse_string(c, NULL, &n)) return -1;
        /* keys we look for have no escapes: compare the raw text */
        int match = n == klen && (size_t)(c->p - 1 - kstart) == klen && !memcmp(kstart, key, klen);
        skip_ws(c);
        if (c->p >= c->end || *c->p++ != ':') return rg_error("JSON: ':' expected");
        skip_ws(c);
        if (match) return 1;
        if (skip_value(c, 1)) return -1;
        skip_ws(c);
        if (c->p < c->end && *c->p == ',') {
            c->p++;
            continue;
        }
        if (c->p < c->end && *c->p == '}') return 0;
        return rg_error("JSON: ',' or '}' expected");
    }
}

int rg_jsonl_string(const char *line, size_t len, const char *key, char **out, size_t *n) {
    cursor c = {line, line + len};
    int rc = find_key(&c, key);
    if (rc <= 0) return rc;
    if (c.p >= c.end || *c.p != '"') return rg_error("JSON: \"%s\" is not a string", key);
    cursor probe = c;
    size_t raw = 0;
    if (parse_string(&probe, NULL, &raw)) return -1;
    *out = rg_xmalloc(raw + 1);
    parse_string(&c, *out, n);
    (*out)[*n] = 0;
    return 1;
}

int rg_jsonl_ints(const char *line, size_t len, const char *key, int32_t **out, size_t *n) {
    cursor c = {line, line + len};
    int rc = find_key(&c, key);
    if (rc <= 0) return rc;
    if (c.p >= c.end || *c.p != '[') return rg_error("JSON: \"%s\" is not an array", key);
    c.p++;
    size_t cap = 16, k = 0;
    int32_t *v = rg_xmalloc(cap * sizeof *v);
    skip_ws(&c);
    if (c.p < c.end && *c.p == ']') {
        *out = v;
        *n = 0;
        return 1;
    }
    for (;;) {
        skip_ws(&c);
        char *endp;
        char num[24];
        size_t m = 0;
        while (c.p + m < c.end && m < sizeof num - 1 && strchr("-0123456789", c.p[m])) m++;
        memcpy(num, c.p, m);
        num[m] = 0;
        long long x = strtoll(num, &endp, 10);
        if (m == 0 || *endp || x < INT32_MIN || x > INT32_MAX) {
            free(v);
            return rg_error("JSON: \"%s\" holds something other than 32-bit integers", key);
        }
        c.p += m;
        if (k == cap) {
            cap *= 2;
            v = rg_xrealloc(v, cap * sizeof *v);
        }
        v[k++] = (int32_t)x;
        skip_ws(&c);
        if (c.p < c.end && *c.p == ',') {
            c.p++;
            continue;
        }
        if (c.p < c.end && *c.p == ']') break;
        free(v);
        return rg_error("JSON: \"%s\": ',' or ']' expected", key);
    }
    *out = v;
    *n = k;
    return 1;
}

void rg_json_write_string(FILE *f, const char *s, size_t n) {
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        const char *esc = ch == '"' ? "\\\"" : ch == '\\' ? "\\\\" : ch == '\n' ? "\\n" : ch == '\t' ? "\\t"
                          : ch == '\r' ? "\\r" : ch == '\b' ? "\\b" : ch == '\f' ? "\\f" : NULL;
        if (esc) {
            fputs(esc, f);
        } else if (ch < 0x20) {
            fprintf(f, "\\u%04x", ch);
        } else if (ch == 0xc2 && i + 1 < n && (unsigned char)s[i + 1] == 0x85) { /* U+0085 */
            fputs("\\u0085", f);
            i += 1;
        } else if (ch == 0xe2 && i + 2 < n && (unsigned char)s[i + 1] == 0x80 &&
                   ((unsigned char)s[i + 2] == 0xa8 || (unsigned char)s[i + 2] == 0xa9)) { /* U+2028, U+2029 */
            fprintf(f, "\\u%04x", (unsigned char)s[i + 2] == 0xa8 ? 0x2028 : 0x2029);
            i += 2;
        } else if (ch == 0xef && i + 2 < n && (unsigned char)s[i + 1] == 0xbb && (unsigned char)s[i + 2] == 0xbf) {
            fputs("\\ufeff", f); /* BOM */
            i += 2;
        } else {
            fputc(ch, f);
        }
    }
    fputc('"', f);
}
