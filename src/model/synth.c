/* Random weights with the statistics of the golden test models (see
 * tests/data/golden/README.md), so a synthetic model behaves like a real
 * one numerically (no overflow, no collapse to one token):
 *   linear [out, in]: N(0, 1/in); output projections N(0, 4/in)
 *   embedding: N(0, 16/D) (after the sqrt(D) scale, logits have std ~4)
 *   norms: N(0, 0.3^2), final norm N(-1, 1) (so 1+w has mean 0)
 *   biases: N(0, 0.2^2); gate biases N(0, 0.5^2); conv taps N(0, 1/K)
 *   RG-LRU: a = r^(8 gate) with r^2 uniform in [0.7^2, 0.999^2] (REF init):
 *           softplus(L) = -ln r  =>  L = ln(1/r - 1).
 * A training run from scratch starts instead from the usual initialisation
 * (rg_synth_training_values): biases and norms 0 (the final norm too, so
 * 1+w = 1), embedding N(0, 1/D) (logits of std ~1: the loss starts near
 * ln V), linear N(0, 1/in), output projections N(0, 1/(3 in)) (the released
 * configs' final_w_init_variance_scale), conv taps N(0, 1/K), the RG-LRU's
 * as above.
 * Every value is a pure function of (seed, tensor name, element index), so
 * the output does not depend on chunking or threads. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include "model/synth.h"
#include "util/util.h"

int rg_synth_preset(const char *name, rg_config *c) {
    memset(c, 0, sizeof *c);
    c->vocab_size = 256000;
    c->num_kv_heads = 1;
    c->window = 2048;
    c->conv_width = 4;
    c->logits_soft_cap = 30.0f;
    c->rms_norm_eps = 1e-6f;
    c->rope_theta = 10000.0f;
    c->partial_rotary_factor = 0.5f;
    c->bos_id = 2;
    c->eos_id = 1;
    c->pad_id = 0;
    c->pattern_len = 3;
    c->pattern[0] = c->pattern[1] = RG_LAYER_RECURRENT;
    c->pattern[2] = RG_LAYER_ATTENTION;
    if (!strcmp(name, "2b")) {
        c->hidden_size = c->lru_width = 2560;
        c->num_heads = 10;
        c->mlp_width = 7680;
        c->num_layers = 26;
    } else if (!strcmp(name, "9b")) {
        c->hidden_size = c->lru_width = 4096;
        c->num_heads = 16;
        c->mlp_width = 12288;
        c->num_layers = 38;
    } else if (!strcmp(name, "tiny")) {
        c->hidden_size = c->lru_width = 128;
        c->num_heads = 2;
        c->mlp_width = 384;
        c->num_layers = 3;
    } else {
        return rg_error("unknown preset \"%s\" (expected 2b, 9b or tiny)", name);
    }
    c->head_dim = c->hidden_size / c->num_heads;
    c->embed_scale = rg_bf16_to_f32(rg_f32_to_bf16((float)sqrt((double)c->hidden_size)));
    return 0;
}

int rg_config_write_json(const rg_config *c, const char *torch_dtype, const char *path) {
    cJSON *r = cJSON_CreateObject();
    cJSON *bt = cJSON_AddArrayToObject(r, "_block_types");
    for (int i = 0; i < c->pattern_len; i++)
        cJSON_AddItemToArray(bt, cJSON_CreateString(c->pattern[i] == RG_LAYER_ATTENTION ? "attention" : "recurrent"));
    cJSON *arch = cJSON_AddArrayToObject(r, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString("RecurrentGemmaForCausalLM"));
    cJSON_AddFalseToObject(r, "attention_bias");
    cJSON_AddNumberToObject(r, "attention_dropout", 0.0);
    cJSON_AddNumberToObject(r, "attention_window_size", c->window);
    cJSON_AddNumberToObject(r, "bos_token_id", c->bos_id);
    cJSON_AddNumberToObject(r, "conv1d_width", c->conv_width);
    cJSON_AddBoolToObject(r, "embeddings_scale_by_sqrt_dim", c->embed_scale != 1.0f || c->hidden_size == 1);
    cJSON_AddNumberToObject(r, "eos_token_id", c->eos_id);
    cJSON_AddNumberToObject(r, "final_w_init_variance_scale", 2.0 / c->num_layers);
    cJSON_AddNumberToObject(r, "head_dim", c->head_dim);
    cJSON_AddStringToObject(r, "hidden_activation", "gelu_pytorch_tanh");
    cJSON_AddNumberToObject(r, "hidden_size", c->hidden_size);
    cJSON_AddNumberToObject(r, "intermediate_size", 2.0 * c->mlp_width);
    cJSON_AddNumberToObject(r, "logits_soft_cap", c->logits_soft_cap);
    cJSON_AddNumberToObject(r, "lru_width", c->lru_width);
    cJSON_AddStringToObject(r, "model_type", "recurrent_gemma");
    cJSON_AddNumberToObject(r, "num_attention_heads", c->num_heads);
    cJSON_AddNumberToObject(r, "num_hidden_layers", c->num_layers);
    cJSON_AddNumberToObject(r, "num_key_value_heads", c->num_kv_heads);
    cJSON_AddNumberToObject(r, "pad_token_id", c->pad_id);
    cJSON_AddNumberToObject(r, "partial_rotary_factor", c->partial_rotary_factor);
    /* float32 fields printed from their float value, not the double
     * nearest to the float (1e-06 rather than 9.99999997e-07) */
    char buf[32];
    snprintf(buf, sizeof buf, "%.7g", c->rms_norm_eps);
    cJSON_AddItemToObject(r, "rms_norm_eps", cJSON_CreateNumber(strtod(buf, NULL)));
    cJSON_AddNumberToObject(r, "rope_theta", c->rope_theta);
    cJSON_AddStringToObject(r, "torch_dtype", torch_dtype);
    cJSON_AddStringToObject(r, "transformers_version", "4.40.0.dev0");
    cJSON_AddTrueToObject(r, "use_cache");
    cJSON_AddNumberToObject(r, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(r, "w_init_variance_scale", 0.01);
    char *json = cJSON_Print(r);
    cJSON_Delete(r);
    FILE *f = fopen(path, "w");
    int rc = 0;
    if (!f || fputs(json, f) < 0 || fputc('\n', f) < 0) rc = rg_error("%s: cannot write: %s", path, strerror(errno));
    if (f && fclose(f) && !rc) rc = rg_error("%s: cannot write: %s", path, strerror(errno));
    free(json);
    return rc;
}

/* ---- tensors and their distributions ------------------------------------ */

typedef enum { DIST_NORMAL, DIST_LRU } dist_kind;

typedef struct {
    dist_kind kind;
    float mean, std;
    uint64_t key; /* hash of (seed, name) */
} dist;

typedef struct {
    rg_st_spec *specs;
    dist *dists;
    int n, cap;
    rg_dtype dtype;
} tensor_list;

static void add(tensor_list *l, const char *name, int ndim, int64_t d0, int64_t d1, int64_t d2, dist_kind kind,
                float mean, float std) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->specs = rg_xrealloc(l->specs, sizeof *l->specs * (size_t)l->cap);
        l->dists = rg_xrealloc(l->dists, sizeof *l->dists * (size_t)l->cap);
    }
    rg_st_spec *s = &l->specs[l->n];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    s->dtype = l->dtype;
    s->ndim = ndim;
    int64_t d[3] = {d0, d1, d2};
    for (int i = 0; i < ndim; i++) s->shape[i] = d[i];
    l->dists[l->n++] = (dist){kind, mean, std, 0};
}

/* train: the training initialisation instead of the test models' statistics */
static void build(const rg_config *c, tensor_list *l, int train) {
    int64_t D = c->hidden_size, R = c->lru_width, F = c->mlp_width, H = c->num_heads, hd = c->head_dim;
    int64_t bw = R / H, K = c->conv_width;
    char n[128];
#define N(...) (snprintf(n, sizeof n, __VA_ARGS__), n)
#define LIN(name, out, in) add(l, name, 2, out, in, 0, DIST_NORMAL, 0, 1.0f / sqrtf((float)(in)))
#define OUT(name, out, in) \
    add(l, name, 2, out, in, 0, DIST_NORMAL, 0, (train ? sqrtf(1.0f / 3.0f) : 2.0f) / sqrtf((float)(in)))
#define VEC(name, len, mean, std) add(l, name, 1, len, 0, 0, DIST_NORMAL, train ? 0 : (mean), train ? 0 : (std))
    add(l, "model.embed_tokens.weight", 2, c->vocab_size, D, 0, DIST_NORMAL, 0, (train ? 1.0f : 4.0f) / sqrtf((float)D));
    for (int i = 0; i < c->num_layers; i++) {
        const char *p = "model.layers";
        VEC(N("%s.%d.temporal_pre_norm.weight", p, i), D, 0, 0.3f);
        if (rg_config_layer_type(c, i) == RG_LAYER_RECURRENT) {
            const char *t = "temporal_block";
            LIN(N("%s.%d.%s.linear_y.weight", p, i, t), R, D);
            VEC(N("%s.%d.%s.linear_y.bias", p, i, t), R, 0, 0.2f);
            LIN(N("%s.%d.%s.linear_x.weight", p, i, t), R, D);
            VEC(N("%s.%d.%s.linear_x.bias", p, i, t), R, 0, 0.2f);
            OUT(N("%s.%d.%s.linear_out.weight", p, i, t), D, R);
            VEC(N("%s.%d.%s.linear_out.bias", p, i, t), D, 0, 0.2f);
            add(l, N("%s.%d.%s.conv_1d.weight", p, i, t), 3, R, 1, K, DIST_NORMAL, 0, 1.0f / sqrtf((float)K));
            VEC(N("%s.%d.%s.conv_1d.bias", p, i, t), R, 0, 0.2f);
            add(l, N("%s.%d.%s.rg_lru.recurrent_param", p, i, t), 1, R, 0, 0, DIST_LRU, 0, 0);
            add(l, N("%s.%d.%s.rg_lru.input_gate_weight", p, i, t), 3, H, bw, bw, DIST_NORMAL, 0,
                1.0f / sqrtf((float)bw));
            add(l, N("%s.%d.%s.rg_lru.input_gate_bias", p, i, t), 2, H, bw, 0, DIST_NORMAL, 0, train ? 0 : 0.5f);
            add(l, N("%s.%d.%s.rg_lru.recurrent_gate_weight", p, i, t), 3, H, bw, bw, DIST_NORMAL, 0,
                1.0f / sqrtf((float)bw));
            add(l, N("%s.%d.%s.rg_lru.recurrent_gate_bias", p, i, t), 2, H, bw, 0, DIST_NORMAL, 0, train ? 0 : 0.5f);
        } else {
            const char *t = "temporal_block";
            LIN(N("%s.%d.%s.q_proj.weight", p, i, t), H * hd, D);
            LIN(N("%s.%d.%s.k_proj.weight", p, i, t), hd, D);
            LIN(N("%s.%d.%s.v_proj.weight", p, i, t), hd, D);
            OUT(N("%s.%d.%s.o_proj.weight", p, i, t), D, H * hd);
            VEC(N("%s.%d.%s.o_proj.bias", p, i, t), D, 0, 0.2f);
        }
        VEC(N("%s.%d.channel_pre_norm.weight", p, i), D, 0, 0.3f);
        LIN(N("%s.%d.mlp_block.gate_proj.weight", p, i), F, D);
        VEC(N("%s.%d.mlp_block.gate_proj.bias", p, i), F, 0, 0.2f);
        LIN(N("%s.%d.mlp_block.up_proj.weight", p, i), F, D);
        VEC(N("%s.%d.mlp_block.up_proj.bias", p, i), F, 0, 0.2f);
        OUT(N("%s.%d.mlp_block.down_proj.weight", p, i), D, F);
        VEC(N("%s.%d.mlp_block.down_proj.bias", p, i), D, 0, 0.2f);
    }
    VEC("model.final_norm.weight", D, -1.0f, 1.0f);
#undef N
#undef LIN
#undef OUT
#undef VEC
}

int rg_synth_specs(const rg_config *cfg, rg_dtype dtype, rg_st_spec **specs) {
    tensor_list l = {.dtype = dtype};
    build(cfg, &l, 0);
    free(l.dists);
    *specs = l.specs;
    return l.n;
}

/* ---- counter-based random numbers --------------------------------------- */


/* Standard normal quantiles at the midpoints of 65536 equal-probability
 * bins: a 16-bit uniform index picks one, giving a normal sample (tails
 * cut at |z| ~ 4.3) for the cost of a table lookup. */
static float normal_table[65536];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void build_table(void) {
    for (int i = 0; i < 32768; i++) {
        double p = (i + 0.5) / 65536.0; /* solve Phi(z) = p, z < 0, by bisection */
        double lo = -10, hi = 0;
        for (int it = 0; it < 60; it++) {
            double mid = 0.5 * (lo + hi);
            if (0.5 * erfc(-mid / sqrt(2.0)) < p) lo = mid;
            else hi = mid;
        }
        normal_table[i] = (float)(0.5 * (lo + hi));
        normal_table[65535 - i] = -normal_table[i];
    }
}

static void fill(void *ctx, int index, int64_t first, int64_t count, float *out) {
    const dist *d = &((const dist *)ctx)[index];
    if (d->kind == DIST_LRU) {
        for (int64_t j = 0; j < count; j++) {
            double u = (double)(rg_mix64(d->key + (uint64_t)(first + j) * RG_GOLDEN64) >> 11) * 0x1p-53;
            double r = sqrt(0.49 + u * (0.998001 - 0.49));
            out[j] = (float)log(1.0 / r - 1.0);
        }
        return;
    }
    /* element e uses 16 bits (e % 4) of the word for e / 4 */
    for (int64_t j = 0; j < count;) {
        int64_t e = first + j;
        uint64_t w = rg_mix64(d->key + (uint64_t)(e >> 2) * RG_GOLDEN64) >> (16 * (e & 3));
        for (int b = (int)(e & 3); b < 4 && j < count; b++, j++, w >>= 16)
            out[j] = d->mean + d->std * normal_table[w & 0xffff];
    }
}

static uint64_t tensor_key(uint64_t seed, const char *name) {
    return rg_mix64(rg_fnv1a(name, strlen(name), seed));
}

static int tensor_values(const rg_config *cfg, uint64_t seed, const char *name, float *out, int64_t count, int train) {
    pthread_once(&table_once, build_table);
    tensor_list l = {.dtype = RG_DT_F32};
    build(cfg, &l, train);
    int rc = -1;
    for (int i = 0; i < l.n; i++) {
        if (strcmp(l.specs[i].name, name)) continue;
        if (rg_st_spec_elements(&l.specs[i]) == count) {
            l.dists[i].key = tensor_key(seed, name);
            fill(l.dists, i, 0, count, out);
            rc = 0;
        }
        break;
    }
    free(l.specs);
    free(l.dists);
    return rc ? rg_error("synth: no tensor \"%s\" of %lld elements in this config", name, (long long)count) : 0;
}

int rg_synth_tensor_values(const rg_config *cfg, uint64_t seed, const char *name, float *out, int64_t count) {
    return tensor_values(cfg, seed, name, out, count, 0);
}

int rg_synth_training_values(const rg_config *cfg, uint64_t seed, const char *name, float *out, int64_t count) {
    return tensor_values(cfg, seed, name, out, count, 1);
}

static int write_readme(const char *dir, const rg_config *c, const rg_synth_options *o) {
    char *path = rg_path_join(dir, "README.md");
    FILE *f = fopen(path, "w");
    if (!f) {
        rg_error("%s: cannot write: %s", path, strerror(errno));
        free(path);
        return -1;
    }
    fprintf(f,
            "# Synthetic RecurrentGemma checkpoint (RANDOM weights)\n\n"
            "Written by `rgemma synth` with seed %llu, dtype %s. The weights are random\n"
            "normals with realistic scales, in exactly the tensor names and shapes of the\n"
            "released checkpoints (hidden %d, %d layers, vocabulary %d). It is for speed\n"
            "tests and end-to-end runs only: it was never trained, so its text is meaningless.\n",
            (unsigned long long)o->seed, rg_dtype_name(o->dtype), c->hidden_size, c->num_layers, c->vocab_size);
    int rc = fclose(f) ? rg_error("%s: cannot write: %s", path, strerror(errno)) : 0;
    free(path);
    return rc;
}

int rg_synth_write(const rg_config *cfg, const char *dir, const rg_synth_options *o, int *n_shards) {
    if (o->dtype != RG_DT_F32 && o->dtype != RG_DT_BF16 && o->dtype != RG_DT_F16)
        return rg_error("synth: dtype %s is not supported (F32, BF16, F16)", rg_dtype_name(o->dtype));
    if (cfg->lru_width % cfg->num_heads) return rg_error("synth: lru_width must be a multiple of the heads");
    if (rg_make_dirs(dir)) return -1;
    char *cfg_path = rg_path_join(dir, "config.json");
    const char *tdt = o->dtype == RG_DT_F32 ? "float32" : o->dtype == RG_DT_BF16 ? "bfloat16" : "float16";
    int rc = rg_config_write_json(cfg, tdt, cfg_path);
    free(cfg_path);
    if (rc || write_readme(dir, cfg, o)) return -1;
    pthread_once(&table_once, build_table);
    tensor_list l = {.dtype = o->dtype};
    build(cfg, &l, 0);
    for (int i = 0; i < l.n; i++) l.dists[i].key = tensor_key(o->seed, l.specs[i].name);
    char note[96];
    snprintf(note, sizeof note, "RANDOM weights (rgemma synth, seed %llu)", (unsigned long long)o->seed);
    rg_st_source src = {fill, l.dists, o->progress, o->progress_ctx, note};
    rc = rg_st_write_checkpoint(dir, l.specs, l.n, o->max_shard_bytes ? o->max_shard_bytes : (2ull << 30), &src,
                                n_shards);
    free(l.specs);
    free(l.dists);
    return rc;
}

/* ------------------------------------------------------ the public interface */

void rg_synth_params_default(rg_synth_params *p) {
    memset(p, 0, sizeof *p);
    p->dtype = "bf16";
    p->seed = 1;
}

static int synth_dtype(const char *name, rg_dtype *dt) {
    if (!name || !strcasecmp(name, "bf16") || !strcasecmp(name, "bfloat16")) *dt = RG_DT_BF16;
    else if (!strcasecmp(name, "f32") || !strcasecmp(name, "float32")) *dt = RG_DT_F32;
    else if (!strcasecmp(name, "f16") || !strcasecmp(name, "float16")) *dt = RG_DT_F16;
    else return rg_error("synth: dtype must be f32, bf16 or f16 (got \"%s\")", name);
    return 0;
}

int rg_synth_size(const rg_config *cfg, const char *dtype, int *n_tensors, uint64_t *n_params, uint64_t *bytes) {
    rg_dtype dt;
    if (synth_dtype(dtype, &dt)) return -1;
    rg_st_spec *specs;
    int n = rg_synth_specs(cfg, dt, &specs);
    uint64_t b = 0, e = 0;
    for (int i = 0; i < n; i++) {
        b += rg_st_spec_bytes(&specs[i]);
        e += (uint64_t)rg_st_spec_elements(&specs[i]);
    }
    free(specs);
    if (n_tensors) *n_tensors = n;
    if (n_params) *n_params = e;
    if (bytes) *bytes = b;
    return 0;
}

int rg_synth(const rg_config *cfg, const char *dir, const rg_synth_params *p, int *n_shards) {
    rg_synth_options o = {.seed = p->seed, .max_shard_bytes = p->max_shard_bytes, .progress = p->progress,
                          .progress_ctx = p->progress_ctx};
    if (synth_dtype(p->dtype, &o.dtype)) return -1;
    return rg_synth_write(cfg, dir, &o, n_shards);
}
