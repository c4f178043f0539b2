/* The encoder on arbitrary bytes, with the small test tokenizer and, when
 * RGEMMA_FUZZ_GEMMA names a folder holding it, Gemma's: ids in range, and
 * for valid UTF-8 decode(encode(x)) == x, special pieces parsed or not. */
#include "fuzz_util.h"
#include "tokenizer/tokenizer.h"

static rg_tokenizer *toks[2];
static int n_toks;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    if (rg_tokenizer_load("tests/data/tokenizer/small_bpe.model", &toks[n_toks++])) {
        fprintf(stderr, "fuzz_tokenize: %s (run from the repository root)\n", rg_last_error());
        abort();
    }
    const char *g = getenv("RGEMMA_FUZZ_GEMMA");
    if (g && *g) {
        if (rg_tokenizer_load(g, &toks[n_toks])) {
            fprintf(stderr, "fuzz_tokenize: %s\n", rg_last_error());
            abort();
        }
        n_toks++;
    }
    return 0;
}

static int valid_utf8(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n;) {
        int l = rg_utf8_char(p + i, n - i);
        if (l <= 0) return 0;
        i += (size_t)l;
    }
    return 1;
}

/* What decoding gives back for valid UTF-8: the text itself, except that a
 * U+2581 written in the text comes back as a space (SentencePiece's escaped
 * space is that character). */
static size_t expected(const uint8_t *in, size_t n, uint8_t *out) {
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (i + 2 < n && in[i] == 0xe2 && in[i + 1] == 0x96 && in[i + 2] == 0x81) {
            out[o++] = ' ';
            i += 3;
        } else {
            out[o++] = in[i++];
        }
    }
    return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int utf8 = valid_utf8(data, size);
    uint8_t *want = malloc(size + 1);
    size_t want_len = expected(data, size, want);
    for (int k = 0; k < n_toks; k++) {
        const rg_tokenizer *t = toks[k];
        for (int special = 0; special < 2; special++) {
            int32_t *ids;
            size_t n;
            if (rg_tokenize_ex(t, (const char *)data, size, 0, 0, special, &ids, &n)) abort();
            for (size_t i = 0; i < n; i++) {
                if (ids[i] < 0 || ids[i] >= t->n) abort();
                if (!special && rg_tok_is_special(t, ids[i])) abort(); /* user text forged a control piece */
            }
            char *text;
            size_t len;
            if (rg_detokenize(t, ids, n, &text, &len)) abort();
            /* the tokenizers here keep every byte (identity normaliser, no
             * dummy prefix, no whitespace removal, byte fallback) */
            if (utf8 && !t->add_dummy_prefix && !t->remove_extra_whitespaces &&
                (len != want_len || memcmp(text, want, want_len))) {
                fprintf(stderr, "round trip failed (special %d): %zu bytes in, %zu out\n", special, size, len);
                abort();
            }
            free(text);
            free(ids);
        }
    }
    free(want);
    return 0;
}
