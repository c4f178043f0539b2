/* Checks of a tokenizer against the golden JSON Lines files in
 * tests/data/tokenizer (shared by test_tokenizer.c and test_tokenizer_gemma.c).
 * Each returns the number of lines that did not match, after printing them. */
#ifndef RG_TOKENIZER_GOLDEN_H
#define RG_TOKENIZER_GOLDEN_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "rgemma.h"
#include "tokenizer/jsonl.h"
#include "tokenizer/tokenizer.h"
#include "util/util.h"

#define TOKDATA "tests/data/tokenizer/"

typedef struct {
    char **line;
    size_t *len;
    int n;
} golden_lines;

static golden_lines golden_read(const char *path) {
    golden_lines g = {0};
    char *data;
    size_t len;
    if (rg_read_file(path, (size_t)1 << 28, &data, &len)) {
        fprintf(stderr, "%s\n", rg_last_error());
        return g;
    }
    for (char *p = data, *end = data + len; p < end;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (n) {
            g.line = realloc(g.line, sizeof *g.line * (size_t)(g.n + 1));
            g.len = realloc(g.len, sizeof *g.len * (size_t)(g.n + 1));
            g.line[g.n] = rg_xmalloc(n + 1);
            memcpy(g.line[g.n], p, n);
            g.line[g.n][n] = 0;
            g.len[g.n++] = n;
        }
        p += n + 1;
    }
    free(data);
    return g;
}

static void golden_free(golden_lines *g) {
    for (int i = 0; i < g->n; i++) free(g->line[i]);
    free(g->line);
    free(g->len);
    memset(g, 0, sizeof *g);
}

static int ids_equal(const char *what, const char *name, const int32_t *got, size_t n_got, const int32_t *want,
                     size_t n_want) {
    if (n_got == n_want && (!n_got || !memcmp(got, want, n_got * sizeof *got))) return 1;
    size_t i = 0;
    while (i < n_got && i < n_want && got[i] == want[i]) i++;
    printf("%s %s: %zu ids, expected %zu; first difference at %zu: got %d, expected %d\n", what, name, n_got,
           n_want, i, i < n_got ? got[i] : -1, i < n_want ? want[i] : -1);
    return 0;
}

/* Stream-decode ids one at a time: the pieces must join to want, and no
 * piece may end inside a UTF-8 character. */
static int stream_ok(const rg_tokenizer *t, const int32_t *ids, size_t n, const char *want, size_t want_len,
                     const char *name) {
    rg_detok_stream *s = rg_detok_stream_new(t);
    char *acc = rg_xmalloc(want_len * 2 + 64);
    size_t al = 0, cap = want_len * 2 + 64;
    int ok = 1;
    for (size_t i = 0; i <= n && ok; i++) {
        size_t l;
        const char *p = i < n ? rg_detok_stream_push(s, ids[i], &l) : rg_detok_stream_flush(s, &l);
        if (!p || al + l > cap) {
            ok = 0;
            break;
        }
        for (size_t k = 0; k < l;) { /* whole, valid characters only */
            int cl = rg_utf8_char((const uint8_t *)p + k, l - k);
            if (cl <= 0) {
                printf("stream %s: chunk after id %zu is not whole UTF-8\n", name, i);
                ok = 0;
                break;
            }
            k += (size_t)cl;
        }
        memcpy(acc + al, p, l);
        al += l;
    }
    if (ok && (al != want_len || memcmp(acc, want, al))) {
        printf("stream %s: joined text differs from the decoded text\n", name);
        ok = 0;
    }
    free(acc);
    rg_detok_stream_free(s);
    return ok;
}

/* Lines {"name","text",ids_key: [...], "decoded"}: encode(text) == ids, and
 * decode(ids) == decoded, also when streamed. */
static int golden_check_encode(const rg_tokenizer *t, const char *path, const char *ids_key, int *lines) {
    golden_lines g = golden_read(path);
    int bad = g.n ? 0 : 1;
    for (int i = 0; i < g.n; i++) {
        char *name = NULL, *text = NULL, *decoded = NULL;
        size_t name_len, text_len, dec_len, n_want = 0, n_got = 0, out_len = 0;
        int32_t *want = NULL, *got = NULL;
        char *out = NULL;
        int ok = rg_jsonl_string(g.line[i], g.len[i], "name", &name, &name_len) == 1 &&
                 rg_jsonl_string(g.line[i], g.len[i], "text", &text, &text_len) == 1 &&
                 rg_jsonl_string(g.line[i], g.len[i], "decoded", &decoded, &dec_len) == 1 &&
                 rg_jsonl_ints(g.line[i], g.len[i], ids_key, &want, &n_want) == 1;
        if (!ok) printf("%s:%d: unreadable line: %s\n", path, i + 1, rg_last_error());
        if (ok && rg_tokenize(t, text, text_len, 0, 0, &got, &n_got)) {
            printf("%s: %s\n", name, rg_last_error());
            ok = 0;
        }
        if (ok) ok = ids_equal("encode", name, got, n_got, want, n_want);
        if (ok && rg_detokenize(t, want, n_want, &out, &out_len)) {
            printf("%s: %s\n", name, rg_last_error());
            ok = 0;
        }
        if (ok && (out_len != dec_len || memcmp(out, decoded, dec_len))) {
            printf("decode %s: text differs from \"decoded\"\n", name);
            ok = 0;
        }
        if (ok) ok = stream_ok(t, want, n_want, out, out_len, name);
        bad += !ok;
        free(name), free(text), free(decoded), free(want), free(got), free(out);
    }
    if (lines) *lines = g.n;
    golden_free(&g);
    return bad;
}

/* Lines {"ids","text"}: decode(ids) == text, also when streamed. */
static int golden_check_decode(const rg_tokenizer *t, const char *path, int *lines) {
    golden_lines g = golden_read(path);
    int bad = g.n ? 0 : 1;
    for (int i = 0; i < g.n; i++) {
        char *text = NULL, *out = NULL, name[32];
        size_t text_len, n = 0, out_len = 0;
        int32_t *ids = NULL;
        snprintf(name, sizeof name, "line %d", i + 1);
        int ok = rg_jsonl_string(g.line[i], g.len[i], "text", &text, &text_len) == 1 &&
                 rg_jsonl_ints(g.line[i], g.len[i], "ids", &ids, &n) == 1;
        if (!ok) printf("%s:%d: unreadable line: %s\n", path, i + 1, rg_last_error());
        if (ok && rg_detokenize(t, ids, n, &out, &out_len)) {
            printf("%s:%d: %s\n", path, i + 1, rg_last_error());
            ok = 0;
        }
        if (ok && (out_len != text_len || memcmp(out, text, text_len))) {
            printf("%s:%d: decoded text differs\n", path, i + 1);
            ok = 0;
        }
        if (ok) ok = stream_ok(t, ids, n, text, text_len, name);
        bad += !ok;
        free(text), free(out), free(ids);
    }
    if (lines) *lines = g.n;
    golden_free(&g);
    return bad;
}

/* invalid_utf8.jsonl: encode(bytes of "hex") == ids_key. */
static int golden_check_invalid_utf8(const rg_tokenizer *t, const char *ids_key, int *lines) {
    golden_lines g = golden_read(TOKDATA "invalid_utf8.jsonl");
    int bad = g.n ? 0 : 1;
    for (int i = 0; i < g.n; i++) {
        char *name = NULL, *hex = NULL;
        size_t name_len, hex_len, n_want = 0, n_got = 0;
        int32_t *want = NULL, *got = NULL;
        int ok = rg_jsonl_string(g.line[i], g.len[i], "name", &name, &name_len) == 1 &&
                 rg_jsonl_string(g.line[i], g.len[i], "hex", &hex, &hex_len) == 1 &&
                 rg_jsonl_ints(g.line[i], g.len[i], ids_key, &want, &n_want) == 1;
        if (ok) {
            char bytes[256];
            size_t nb = hex_len / 2;
            for (size_t k = 0; k < nb && k < sizeof bytes; k++) {
                unsigned v;
                sscanf(hex + 2 * k, "%2x", &v);
                bytes[k] = (char)v;
            }
            ok = !rg_tokenize(t, bytes, nb, 0, 0, &got, &n_got) &&
                 ids_equal("encode", name, got, n_got, want, n_want);
        }
        bad += !ok;
        free(name), free(hex), free(want), free(got);
    }
    if (lines) *lines = g.n;
    golden_free(&g);
    return bad;
}

#endif
