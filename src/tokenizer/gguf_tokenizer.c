/* The SentencePiece tokenizer inside a GGUF file, as llama.cpp stores one
 * (tokenizer.ggml.model = "llama"): pieces, scores and piece types (the
 * SentencePiece type numbers, which llama.cpp's token types share), the
 * special ids, and the normaliser flags. Settings llama.cpp has no key for
 * are under tokenizer.rgemma.*. Loading goes through the tokenizer's own
 * builder, so an embedded model is checked exactly like a tokenizer.model. */
#include <stdlib.h>
#include "formats/gguf.h"
#include "tokenizer/tokenizer.h"

#define T_MODEL "tokenizer.ggml.model"
#define T_TOKENS "tokenizer.ggml.tokens"
#define T_SCORES "tokenizer.ggml.scores"
#define T_TYPES "tokenizer.ggml.token_type"
#define T_UNK "tokenizer.ggml.unknown_token_id"
#define T_SPACE_PREFIX "tokenizer.ggml.add_space_prefix"
#define T_EXTRA_WS "tokenizer.ggml.remove_extra_whitespaces"
#define T_ESCAPE "tokenizer.rgemma.escape_whitespaces"
#define T_SUFFIX "tokenizer.rgemma.treat_whitespace_as_suffix"
#define T_UNK_SURFACE "tokenizer.rgemma.unk_surface"

/* bos/eos/pad ids are written with the config (rg_gguf_w_config) */
static const char *const special_keys[4] = {T_UNK, "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                                            "tokenizer.ggml.padding_token_id"};

void rg_gguf_w_tokenizer(rg_gguf_writer *w, const rg_tokenizer *t) {
    const char **pieces = rg_xmalloc(sizeof *pieces * (size_t)t->n);
    uint64_t *lens = rg_xmalloc(sizeof *lens * (size_t)t->n);
    int32_t *types = rg_xmalloc(sizeof *types * (size_t)t->n);
    for (int32_t i = 0; i < t->n; i++) {
        pieces[i] = rg_tok_text(t, i);
        lens[i] = rg_tok_len(t, i);
        types[i] = t->type[i];
    }
    rg_gguf_w_str(w, T_MODEL, "llama");
    rg_gguf_w_arr_strn(w, T_TOKENS, pieces, lens, (uint64_t)t->n);
    rg_gguf_w_arr_f32(w, T_SCORES, t->score, (uint64_t)t->n);
    rg_gguf_w_arr_i32(w, T_TYPES, types, (uint64_t)t->n);
    rg_gguf_w_u32(w, T_UNK, (uint32_t)t->unk_id);
    rg_gguf_w_bool(w, "tokenizer.ggml.add_bos_token", 1);
    rg_gguf_w_bool(w, "tokenizer.ggml.add_eos_token", 0);
    rg_gguf_w_bool(w, T_SPACE_PREFIX, t->add_dummy_prefix);
    rg_gguf_w_bool(w, T_EXTRA_WS, t->remove_extra_whitespaces);
    rg_gguf_w_bool(w, T_ESCAPE, t->escape_whitespaces);
    rg_gguf_w_bool(w, T_SUFFIX, t->treat_whitespace_as_suffix);
    if (t->unk_surface) rg_gguf_w_str(w, T_UNK_SURFACE, t->unk_surface);
    free(pieces);
    free(lens);
    free(types);
}

static int read_tokenizer(const rg_gguf *g, rg_tokenizer *t) {
    rg_gguf_str model;
    if (!rg_gguf_find(g, T_TOKENS)) {
        rg_error("%s: the file holds no tokenizer (no %s)", g->path, T_TOKENS);
        return -2;
    }
    if (rg_gguf_get_str(g, T_MODEL, &model)) return -1;
    if (model.len != 5 || memcmp(model.s, "llama", 5))
        return rg_error("%s: %s = \"%.*s\" is not supported (only SentencePiece, \"llama\")", g->path, T_MODEL,
                        (int)(model.len < 32 ? model.len : 32), model.s);
    const rg_gguf_kv *tokens, *scores, *types;
    if (rg_gguf_get_array(g, T_TOKENS, RG_GGUF_STRING, &tokens) ||
        rg_gguf_get_array(g, T_SCORES, RG_GGUF_FLOAT32, &scores) ||
        rg_gguf_get_array(g, T_TYPES, RG_GGUF_INT32, &types))
        return -1;
    uint64_t n = tokens->count;
    if (n < 1 || n > (1u << 24))
        return rg_error("%s: %s has %llu pieces (expected 1 .. %u)", g->path, T_TOKENS, (unsigned long long)n,
                        1u << 24);
    if (scores->count != n || types->count != n)
        return rg_error("%s: %s has %llu pieces but %s has %llu and %s %llu", g->path, T_TOKENS,
                        (unsigned long long)n, T_SCORES, (unsigned long long)scores->count, T_TYPES,
                        (unsigned long long)types->count);
    rg_gguf_str *pieces = rg_gguf_arr_strs(tokens);
    for (uint64_t i = 0; i < n; i++) {
        int64_t ty = rg_gguf_arr_int(types, i);
        if (ty == RG_PIECE_BYTE) t->byte_fallback = 1;
        rg_tok_add_piece(t, pieces[i].s, (size_t)pieces[i].len, (float)rg_gguf_arr_float(scores, i),
                         ty >= 0 && ty <= 255 ? (int)ty : 0); /* bad types are refused by rg_tok_finish */
    }
    free(pieces);
    for (int k = 0; k < 4; k++) {
        int64_t id, none = -1;
        if (rg_gguf_get_int(g, special_keys[k], -1, (int64_t)n - 1, &none, &id)) return -1;
        if (id >= 0) t->special_piece[k] = strdup(rg_tok_text(t, (int32_t)id));
    }
    const int yes = 1, no = 0;
    if (rg_gguf_get_bool(g, T_SPACE_PREFIX, &yes, &t->add_dummy_prefix) ||
        rg_gguf_get_bool(g, T_EXTRA_WS, &yes, &t->remove_extra_whitespaces) ||
        rg_gguf_get_bool(g, T_ESCAPE, &yes, &t->escape_whitespaces) ||
        rg_gguf_get_bool(g, T_SUFFIX, &no, &t->treat_whitespace_as_suffix))
        return -1;
    if (rg_gguf_find(g, T_UNK_SURFACE)) {
        rg_gguf_str s;
        if (rg_gguf_get_str(g, T_UNK_SURFACE, &s)) return -1;
        t->unk_surface = strndup(s.s, (size_t)s.len);
    }
    return rg_tok_finish(t, g->path);
}

int rg_tokenizer_load_gguf(const char *path, rg_tokenizer **out) {
    *out = NULL;
    rg_gguf *g;
    if (rg_gguf_open(&g, path)) return -1;
    rg_tokenizer *t = rg_xmalloc(sizeof *t);
    rg_tok_init(t);
    int rc = read_tokenizer(g, t);
    rg_gguf_close(g);
    if (rc) {
        rg_tok_release(t);
        free(t);
        return rc == -2 ? -2 : -1; /* -2: no tokenizer in the file (not an error in it) */
    }
    *out = t;
    return 0;
}
