/* The model in a GGUF file: the config as "recurrentgemma." metadata (read
 * and written) and the loader that binds the tensors. */
#include <stdlib.h>
#include "formats/gguf.h"
#include "model/model.h"

/* a metadata string in a message (at most 64 bytes of it) */
#define NAMEARG(k) (int)((k).len < 64 ? (k).len : 64), (k).s

static int str_is(rg_gguf_str a, const char *b) { return a.len == strlen(b) && !memcmp(a.s, b, a.len); }

#define K(name) RG_GGUF_ARCH "." name

static const struct {
    const char *key;
    size_t field; /* offset of an int in rg_config */
} int_keys[] = {
    {K("vocab_size"), offsetof(rg_config, vocab_size)},
    {K("embedding_length"), offsetof(rg_config, hidden_size)},
    {K("lru_width"), offsetof(rg_config, lru_width)},
    {K("feed_forward_length"), offsetof(rg_config, mlp_width)},
    {K("block_count"), offsetof(rg_config, num_layers)},
    {K("attention.head_count"), offsetof(rg_config, num_heads)},
    {K("attention.head_count_kv"), offsetof(rg_config, num_kv_heads)},
    {K("attention.key_length"), offsetof(rg_config, head_dim)},
    {K("attention.sliding_window"), offsetof(rg_config, window)},
    {K("conv1d_width"), offsetof(rg_config, conv_width)},
    {"tokenizer.ggml.bos_token_id", offsetof(rg_config, bos_id)},
    {"tokenizer.ggml.eos_token_id", offsetof(rg_config, eos_id)},
    {"tokenizer.ggml.padding_token_id", offsetof(rg_config, pad_id)},
};

static const struct {
    const char *key;
    size_t field; /* offset of a float in rg_config */
} float_keys[] = {
    {K("final_logit_softcapping"), offsetof(rg_config, logits_soft_cap)},
    {K("attention.layer_norm_rms_epsilon"), offsetof(rg_config, rms_norm_eps)},
    {K("rope.freq_base"), offsetof(rg_config, rope_theta)},
    {K("embedding_scale"), offsetof(rg_config, embed_scale)},
};

#define ROPE_DIMS K("rope.dimension_count")
#define BLOCK_TYPES K("block_types")

void rg_gguf_w_config(rg_gguf_writer *w, const rg_config *cfg) {
    for (size_t i = 0; i < sizeof int_keys / sizeof int_keys[0]; i++)
        rg_gguf_w_u32(w, int_keys[i].key, (uint32_t) * (const int *)((const char *)cfg + int_keys[i].field));
    for (size_t i = 0; i < sizeof float_keys / sizeof float_keys[0]; i++)
        rg_gguf_w_f32(w, float_keys[i].key, *(const float *)((const char *)cfg + float_keys[i].field));
    rg_gguf_w_u32(w, ROPE_DIMS, (uint32_t)(cfg->head_dim * cfg->partial_rotary_factor));
    const char *names[RG_MAX_PATTERN];
    for (int i = 0; i < cfg->pattern_len; i++)
        names[i] = cfg->pattern[i] == RG_LAYER_ATTENTION ? "attention" : "recurrent";
    rg_gguf_w_arr_str(w, BLOCK_TYPES, names, (uint64_t)cfg->pattern_len);
}

int rg_gguf_read_config(const rg_gguf *g, rg_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    rg_gguf_str arch;
    if (rg_gguf_get_str(g, "general.architecture", &arch)) return -1;
    if (arch.len != strlen(RG_GGUF_ARCH) || memcmp(arch.s, RG_GGUF_ARCH, arch.len))
        return rg_error("%s: general.architecture is \"%.*s\", expected \"%s\"", g->path, NAMEARG(arch), RG_GGUF_ARCH);
    for (size_t i = 0; i < sizeof int_keys / sizeof int_keys[0]; i++) {
        int64_t v;
        if (rg_gguf_get_int(g, int_keys[i].key, 0, INT32_MAX, NULL, &v)) return -1;
        *(int *)((char *)cfg + int_keys[i].field) = (int)v;
    }
    for (size_t i = 0; i < sizeof float_keys / sizeof float_keys[0]; i++) {
        double v;
        if (rg_gguf_get_float(g, float_keys[i].key, -1e30, 1e30, NULL, &v)) return -1;
        *(float *)((char *)cfg + float_keys[i].field) = (float)v;
    }
    int64_t rot;
    if (rg_gguf_get_int(g, ROPE_DIMS, 0, cfg->head_dim, NULL, &rot)) return -1;
    cfg->partial_rotary_factor = cfg->head_dim ? (float)rot / (float)cfg->head_dim : 0;
    if ((int64_t)(cfg->head_dim * cfg->partial_rotary_factor) != rot)
        return rg_error("%s: %s = %lld cannot be expressed as a fraction of the head size", g->path, ROPE_DIMS,
                        (long long)rot);
    const rg_gguf_kv *bt;
    if (rg_gguf_get_array(g, BLOCK_TYPES, RG_GGUF_STRING, &bt)) return -1;
    if (bt->count < 1 || bt->count > RG_MAX_PATTERN)
        return rg_error("%s: %s must have 1..%d entries (has %llu)", g->path, BLOCK_TYPES, RG_MAX_PATTERN,
                        (unsigned long long)bt->count);
    rg_gguf_str *types = rg_gguf_arr_strs(bt);
    for (uint64_t i = 0; i < bt->count; i++) {
        if (str_is(types[i], "attention")) cfg->pattern[i] = RG_LAYER_ATTENTION;
        else if (str_is(types[i], "recurrent")) cfg->pattern[i] = RG_LAYER_RECURRENT;
        else {
            rg_error("%s: %s[%llu] = \"%.*s\" (expected \"recurrent\" or \"attention\")", g->path, BLOCK_TYPES,
                     (unsigned long long)i, NAMEARG(types[i]));
            free(types);
            return -1;
        }
    }
    free(types);
    cfg->pattern_len = (int)bt->count;
    return rg_config_check(cfg, g->path);
}

static const rg_tensor *gguf_lookup(void *ctx, const char *name) {
    const rg_gguf_tensor *t = rg_gguf_find_tensor(ctx, name);
    return t ? &t->t : NULL;
}

static void gguf_close(void *g) { rg_gguf_close(g); }

int rg_model_load_gguf(rg_model *m, const char *path) {
    rg_gguf *g;
    if (rg_gguf_open(&g, path)) return -1;
    m->gguf = g;
    m->gguf_close = gguf_close;
    if (rg_gguf_read_config(g, &m->cfg)) return -1;
    return rg_model_bind(m, gguf_lookup, g, path);
}
