/* Model loading: find the files, bind tensor views by their Hugging Face
 * names (model.embed_tokens.weight, model.layers.N.temporal_block.*, ...:
 * those tests/reference/griffin_ref.py reads), check every shape. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "model/model.h"
#include "ops/ops.h"
#include "util/util.h"

void *rg_model_own(rg_model *m, size_t bytes) {
    void *p = rg_aligned_alloc(bytes);
    m->owned = rg_xrealloc(m->owned, sizeof *m->owned * (size_t)(m->n_owned + 1));
    m->owned[m->n_owned++] = p;
    return p;
}

typedef struct {
    rg_model *m;
    rg_tensor_lookup lookup;
    void *ctx;
    const char *source;
} binder;

static const rg_tensor *need(binder *b, const char *name, int ndim, int64_t d0, int64_t d1, int64_t d2) {
    const rg_tensor *t = b->lookup(b->ctx, name);
    if (!t) {
        rg_error("%s: missing tensor \"%s\"", b->source, name);
        return NULL;
    }
    int64_t want[3] = {d0, d1, d2};
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == want[i];
    if (!ok) {
        char got[96] = "", exp[96] = "";
        for (int i = 0; i < t->ndim; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? ", " : "", (long long)t->shape[i]);
        for (int i = 0; i < ndim; i++)
            snprintf(exp + strlen(exp), sizeof exp - strlen(exp), "%s%lld", i ? ", " : "", (long long)want[i]);
        rg_error("%s: tensor \"%s\" has shape [%s], expected [%s]", b->source, name, got, exp);
        return NULL;
    }
    return t;
}

/* A float32 view of a small tensor: the mapped bytes themselves when stored
 * as aligned F32, otherwise a converted copy. */
static const float *vec(binder *b, const rg_tensor *t) {
    int64_t count = 1;
    for (int i = 0; i < t->ndim; i++) count *= t->shape[i];
    if (t->dtype == RG_DT_F32 && ((uintptr_t)t->data & 3) == 0) return t->data;
    if (rg_dtype_is_quantised(t->dtype)) {
        rg_error("%s: a %lld-element tensor must not be quantised", b->source, (long long)count);
        return NULL;
    }
    float *out = rg_model_own(b->m, sizeof(float) * (size_t)count);
    rg_tensor flat = *t;
    flat.ndim = 1;
    flat.shape[0] = count;
    rg_dequant_row(&flat, 0, out);
    return out;
}

/* The conv taps [R, 1, K] as [K][R] (an owned copy, K x R floats a layer),
 * so that rg_conv1d's inner loop runs over contiguous channels. */
static const float *taps_by_position(binder *b, const rg_tensor *taps, int64_t r, int k) {
    const float *w = vec(b, taps);
    if (!w) return NULL;
    float *t = rg_model_own(b->m, sizeof(float) * (size_t)r * (size_t)k);
    for (int64_t c = 0; c < r; c++)
        for (int j = 0; j < k; j++) t[(size_t)j * (size_t)r + (size_t)c] = w[(size_t)c * (size_t)k + (size_t)j];
    return t;
}

static int get_vec(binder *b, const float **out, const char *name, int64_t d0) {
    const rg_tensor *t = need(b, name, 1, d0, 0, 0);
    return t && (*out = vec(b, t)) ? 0 : -1;
}

static int get_mat(binder *b, rg_tensor *out, const char *name, int64_t rows, int64_t cols) {
    const rg_tensor *t = need(b, name, 2, rows, cols, 0);
    if (!t) return -1;
    if (cols % rg_dtype_block(t->dtype))
        return rg_error("%s: tensor \"%s\": %s rows must be a multiple of %d", b->source, name,
                        rg_dtype_name(t->dtype), rg_dtype_block(t->dtype));
    *out = *t;
    return 0;
}

/* RG-LRU gate weights are stored [H][in][out] and used without a transpose
 * (y_h = x_h . W[h]); store them as [H*out][in] so the row-major matmul
 * applies, in the same dtype (F16 becomes F32). */
static int get_block_diag(binder *b, rg_tensor *out, const char *name, int h, int bw) {
    const rg_tensor *t = need(b, name, 3, h, bw, bw);
    if (!t) return -1;
    if (rg_dtype_is_quantised(t->dtype))
        return rg_error("%s: tensor \"%s\" must not be quantised", b->source, name);
    rg_dtype dt = t->dtype == RG_DT_BF16 ? RG_DT_BF16 : RG_DT_F32;
    size_t es = rg_dtype_row_bytes(dt, 1);
    uint8_t *dst = rg_model_own(b->m, (size_t)h * bw * bw * es);
    const uint8_t *src = t->data;
    size_t ses = rg_dtype_row_bytes(t->dtype, 1);
    for (int hh = 0; hh < h; hh++)
        for (int i = 0; i < bw; i++)
            for (int j = 0; j < bw; j++) {
                size_t s = ((size_t)hh * bw + i) * bw + j, d = ((size_t)hh * bw + j) * bw + i;
                if (t->dtype == RG_DT_F16) {
                    uint16_t v;
                    memcpy(&v, src + s * 2, 2);
                    float f = rg_f16_to_f32(v);
                    memcpy(dst + d * 4, &f, 4);
                } else {
                    memcpy(dst + d * es, src + s * ses, es);
                }
            }
    *out = (rg_tensor){.dtype = dt, .ndim = 2, .shape = {(int64_t)h * bw, bw}, .data = dst, .nbytes = (size_t)h * bw * bw * es};
    return 0;
}

/* The quantised matrices in the active kernel set's own layout, where it
 * has one (ops: rg_pack_weights): a step then reads them as its kernels
 * want them instead of rearranging them every time. Each file tensor is
 * read once here and its pages given back, so the packed copy takes its
 * place in memory rather than doubling it. Without the memory for a copy,
 * or with RGEMMA_PACK=0 (to measure the difference), the weights are used
 * as stored. */
static void pack_one(rg_model *m, rg_tensor *t) {
    size_t bytes = rg_packed_bytes(t);
    void *dst = bytes ? aligned_alloc(64, (bytes + 63) & ~(size_t)63) : NULL;
    if (!dst) return;
    m->owned = rg_xrealloc(m->owned, sizeof *m->owned * (size_t)(m->n_owned + 1));
    m->owned[m->n_owned++] = dst;
    rg_pack_weights(t, dst);
    rg_drop_file_pages(t->data, t->nbytes);
}

static void pack_weights(rg_model *m) {
    const char *env = getenv("RGEMMA_PACK");
    if (env && !strcmp(env, "0")) return;
    pack_one(m, &m->embed);
    for (int i = 0; i < m->cfg.num_layers; i++) {
        rg_layer *L = &m->layers[i];
        rg_tensor *mlp[] = {&L->gate, &L->up, &L->down}, *rec[] = {&L->linear_x, &L->linear_y, &L->linear_out},
                  *att[] = {&L->q, &L->k, &L->v, &L->o};
        for (int j = 0; j < 3; j++) pack_one(m, mlp[j]);
        if (L->type == RG_LAYER_RECURRENT)
            for (int j = 0; j < 3; j++) pack_one(m, rec[j]);
        else
            for (int j = 0; j < 4; j++) pack_one(m, att[j]);
    }
}

int rg_model_bind(rg_model *m, rg_tensor_lookup lookup, void *ctx, const char *source) {
    binder b = {m, lookup, ctx, source};
    const rg_config *c = &m->cfg;
    int64_t D = c->hidden_size, R = c->lru_width, F = c->mlp_width, H = c->num_heads, hd = c->head_dim;
    char n[160];
#define NAME(...) (snprintf(n, sizeof n, __VA_ARGS__), n)
    const rg_tensor *head = lookup(ctx, "lm_head.weight");
    if (head && (head->ndim != 2 || head->shape[0] != c->vocab_size || head->shape[1] != D))
        return rg_error("%s: tensor \"lm_head.weight\" must have shape [%d, %lld] (it is tied to the embedding)",
                        source, c->vocab_size, (long long)D);
    if (get_mat(&b, &m->embed, "model.embed_tokens.weight", c->vocab_size, D)) return -1;
    if (get_vec(&b, &m->final_norm, "model.final_norm.weight", D)) return -1;
    m->layers = rg_xcalloc((size_t)c->num_layers, sizeof *m->layers);
    for (int i = 0; i < c->num_layers; i++) {
        rg_layer *L = &m->layers[i];
        L->type = rg_config_layer_type(c, i);
        const char *p = "model.layers";
        if (get_vec(&b, &L->temporal_norm, NAME("%s.%d.temporal_pre_norm.weight", p, i), D) ||
            get_vec(&b, &L->channel_norm, NAME("%s.%d.channel_pre_norm.weight", p, i), D) ||
            get_mat(&b, &L->gate, NAME("%s.%d.mlp_block.gate_proj.weight", p, i), F, D) ||
            get_vec(&b, &L->gate_b, NAME("%s.%d.mlp_block.gate_proj.bias", p, i), F) ||
            get_mat(&b, &L->up, NAME("%s.%d.mlp_block.up_proj.weight", p, i), F, D) ||
            get_vec(&b, &L->up_b, NAME("%s.%d.mlp_block.up_proj.bias", p, i), F) ||
            get_mat(&b, &L->down, NAME("%s.%d.mlp_block.down_proj.weight", p, i), D, F) ||
            get_vec(&b, &L->down_b, NAME("%s.%d.mlp_block.down_proj.bias", p, i), D))
            return -1;
        const char *tb = "temporal_block";
        if (L->type == RG_LAYER_RECURRENT) {
            const rg_tensor *conv;
            const float *a_param;
            if (get_mat(&b, &L->linear_x, NAME("%s.%d.%s.linear_x.weight", p, i, tb), R, D) ||
                get_vec(&b, &L->linear_x_b, NAME("%s.%d.%s.linear_x.bias", p, i, tb), R) ||
                get_mat(&b, &L->linear_y, NAME("%s.%d.%s.linear_y.weight", p, i, tb), R, D) ||
                get_vec(&b, &L->linear_y_b, NAME("%s.%d.%s.linear_y.bias", p, i, tb), R) ||
                get_mat(&b, &L->linear_out, NAME("%s.%d.%s.linear_out.weight", p, i, tb), D, R) ||
                get_vec(&b, &L->linear_out_b, NAME("%s.%d.%s.linear_out.bias", p, i, tb), D) ||
                !(conv = need(&b, NAME("%s.%d.%s.conv_1d.weight", p, i, tb), 3, R, 1, c->conv_width)) ||
                !(L->conv_w = taps_by_position(&b, conv, R, c->conv_width)) ||
                get_vec(&b, &L->conv_b, NAME("%s.%d.%s.conv_1d.bias", p, i, tb), R) ||
                get_vec(&b, &a_param, NAME("%s.%d.%s.rg_lru.recurrent_param", p, i, tb), R) ||
                get_block_diag(&b, &L->input_gate, NAME("%s.%d.%s.rg_lru.input_gate_weight", p, i, tb), (int)H,
                               (int)(R / H)) ||
                get_block_diag(&b, &L->a_gate, NAME("%s.%d.%s.rg_lru.recurrent_gate_weight", p, i, tb), (int)H,
                               (int)(R / H)))
                return -1;
            const rg_tensor *gb;
            if (!(gb = need(&b, NAME("%s.%d.%s.rg_lru.input_gate_bias", p, i, tb), 2, H, R / H, 0)) ||
                !(L->input_gate_b = vec(&b, gb)) ||
                !(gb = need(&b, NAME("%s.%d.%s.rg_lru.recurrent_gate_bias", p, i, tb), 2, H, R / H, 0)) ||
                !(L->a_gate_b = vec(&b, gb)))
                return -1;
            /* softplus(x) = log(1 + exp(x)), = x above 20 as torch does */
            float *sp = rg_model_own(m, sizeof(float) * (size_t)R);
            for (int64_t j = 0; j < R; j++) sp[j] = a_param[j] > 20.0f ? a_param[j] : log1pf(expf(a_param[j]));
            L->softplus_a = sp;
        } else {
            if (get_mat(&b, &L->q, NAME("%s.%d.%s.q_proj.weight", p, i, tb), H * hd, D) ||
                get_mat(&b, &L->k, NAME("%s.%d.%s.k_proj.weight", p, i, tb), hd, D) ||
                get_mat(&b, &L->v, NAME("%s.%d.%s.v_proj.weight", p, i, tb), hd, D) ||
                get_mat(&b, &L->o, NAME("%s.%d.%s.o_proj.weight", p, i, tb), D, H * hd) ||
                get_vec(&b, &L->o_b, NAME("%s.%d.%s.o_proj.bias", p, i, tb), D))
                return -1;
        }
    }
#undef NAME
    /* RoPE on the first rot = hd * partial_rotary_factor dims, pairs (i, i+m),
     * m = rot/2, inv_freq_i = 1 / theta^(2i / rot), in float32 as REF. */
    int rot = (int)(hd * c->partial_rotary_factor);
    m->rope_pairs = rot / 2;
    m->rope_inv_freq = rg_model_own(m, sizeof(float) * (size_t)(m->rope_pairs + 1));
    for (int i = 0; i < m->rope_pairs; i++)
        m->rope_inv_freq[i] = 1.0f / powf(c->rope_theta, (float)(2 * i) / (float)rot);
    pack_weights(m);
    return 0;
}

static const rg_tensor *st_lookup(void *ctx, const char *name) {
    const rg_st_entry *e = rg_st_find(ctx, name);
    return e ? &e->t : NULL;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

int rg_model_load(const char *path, rg_model **out) {
    *out = NULL;
    rg_model *m = rg_xcalloc(1, sizeof *m);
    int rc = -1;
    char *cfg_path = NULL;
    if (ends_with(path, ".gguf")) {
        rc = rg_model_load_gguf(m, path);
        goto done;
    }
    if (rg_is_dir(path)) {
        cfg_path = rg_path_join(path, "config.json");
    } else if (rg_file_exists(path)) {
        if (!ends_with(path, ".safetensors")) {
            rg_error("%s: not a model: give a model folder (config.json + safetensors), a .safetensors file or a "
                     ".gguf file", path);
            goto done;
        }
        const char *slash = strrchr(path, '/');
        char *dir = slash ? strndup(path, (size_t)(slash - path)) : strdup(".");
        cfg_path = rg_path_join(dir, "config.json");
        free(dir);
    } else {
        rg_error("%s: no such model folder or file", path);
        goto done;
    }
    if (!rg_file_exists(cfg_path)) {
        rg_error("%s: missing (a model folder needs config.json)", cfg_path);
        goto done;
    }
    if (rg_config_load(cfg_path, &m->cfg)) goto done;
    if (rg_st_open(&m->st, path)) goto done;
    rc = rg_model_bind(m, st_lookup, &m->st, path);
done:
    free(cfg_path);
    if (rc) {
        rg_model_free(m);
        return -1;
    }
    *out = m;
    return 0;
}

void rg_model_free(rg_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->layers);
    rg_st_close(&m->st);
    if (m->gguf && m->gguf_close) m->gguf_close(m->gguf);
    free(m);
}

const rg_tensor *rg_model_tensor(const rg_model *m, const char *name) {
    if (m->gguf) {
        const rg_gguf_tensor *t = rg_gguf_find_tensor(m->gguf, name);
        return t ? &t->t : NULL;
    }
    const rg_st_entry *e = rg_st_find(&m->st, name);
    return e ? &e->t : NULL;
}

const rg_config *rg_model_config(const rg_model *m) { return &m->cfg; }

size_t rg_model_weight_bytes(const rg_model *m) {
    size_t total = m->embed.nbytes; /* read once per token for the logits */
    for (int i = 0; i < m->cfg.num_layers; i++) {
        const rg_layer *L = &m->layers[i];
        total += L->gate.nbytes + L->up.nbytes + L->down.nbytes;
        if (L->type == RG_LAYER_RECURRENT)
            total += L->linear_x.nbytes + L->linear_y.nbytes + L->linear_out.nbytes + L->input_gate.nbytes +
                     L->a_gate.nbytes;
        else
            total += L->q.nbytes + L->k.nbytes + L->v.nbytes + L->o.nbytes;
    }
    return total;
}

/* The projections' type is the MLP gate's (every projection of a model has
 * one type; rg_quantize keeps a tensor in another only when it must). */
const char *rg_model_weight_type(const rg_model *m) { return rg_dtype_name(m->layers[0].gate.dtype); }
const char *rg_model_embed_type(const rg_model *m) { return rg_dtype_name(m->embed.dtype); }

/* prefill runs on int8 dot products where the set rounds the activations to
 * int8 for the projections' type (avx512: vpdpbusd; avx2: vpmaddubsw +
 * vpaddw; neon-dotprod: sdot; neon: smlal) */
int rg_model_prefill_int8(const rg_model *m) { return (int)((rg_active_kernels()->int8_act >> m->layers[0].gate.dtype) & 1); }

/* A sample, not the whole file: hashing gigabytes of weights would delay
 * the start by seconds, and any fine-tune or requantisation changes the
 * embedding's first and last rows and the norm vectors sampled here. */
uint64_t rg_model_fingerprint(const rg_model *m) {
    uint64_t h = rg_config_fingerprint(&m->cfg);
    size_t n = m->embed.nbytes < 65536 ? m->embed.nbytes : 65536;
    h = rg_fnv1a(&m->embed.dtype, sizeof m->embed.dtype, h);
    h = rg_fnv1a(m->embed.data, n, h);
    h = rg_fnv1a((const uint8_t *)m->embed.data + m->embed.nbytes - n, n, h);
    size_t d = (size_t)m->cfg.hidden_size * sizeof(float);
    for (int i = 0; i < m->cfg.num_layers; i++) {
        h = rg_fnv1a(m->layers[i].temporal_norm, d, h);
        h = rg_fnv1a(m->layers[i].channel_norm, d, h);
        h = rg_fnv1a(&m->layers[i].gate.dtype, sizeof m->layers[i].gate.dtype, h);
    }
    h = rg_fnv1a(m->final_norm, d, h);
    return m->adapters ? rg_fnv1a(&m->adapters, sizeof m->adapters, h) : h;
}
