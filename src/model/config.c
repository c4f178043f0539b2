/* config.json (a Hugging Face RecurrentGemma config) -> rg_config. Every
 * architectural key is checked;
 * unknown keys are ignored. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "model/model.h"
#include "util/util.h"

#define MAX_DIM (1 << 20)

typedef struct {
    const cJSON *root;
    const char *name;
} cfg_reader;

/* Integer key; `dflt` < 0 means the key is required. */
static int get_int(cfg_reader *r, const char *key, int dflt, int lo, int hi, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->root, key);
    if (!v || cJSON_IsNull(v)) {
        if (dflt < 0) return rg_error("%s: missing key \"%s\"", r->name, key);
        *out = dflt;
        return 0;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
        return rg_error("%s: key \"%s\" must be an integer", r->name, key);
    if (v->valuedouble < lo || v->valuedouble > hi)
        return rg_error("%s: key \"%s\" = %.0f is out of range [%d, %d]", r->name, key, v->valuedouble, lo, hi);
    *out = (int)v->valuedouble;
    return 0;
}

static int get_float(cfg_reader *r, const char *key, double dflt, double lo, double hi, float *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->root, key);
    if (!v || cJSON_IsNull(v)) {
        if (isnan(dflt)) return rg_error("%s: missing key \"%s\"", r->name, key);
        *out = (float)dflt;
        return 0;
    }
    if (!cJSON_IsNumber(v)) return rg_error("%s: key \"%s\" must be a number", r->name, key);
    if (!(v->valuedouble >= lo && v->valuedouble <= hi))
        return rg_error("%s: key \"%s\" = %g is out of range [%g, %g]", r->name, key, v->valuedouble, lo, hi);
    *out = (float)v->valuedouble;
    return 0;
}

static int parse_pattern(cfg_reader *r, rg_config *cfg) {
    const char *key = "_block_types";
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->root, key);
    const cJSON *v2 = cJSON_GetObjectItemCaseSensitive(r->root, "block_types");
    if (!v || cJSON_IsNull(v)) {
        v = v2;
        key = "block_types";
    } else if (v2 && !cJSON_IsNull(v2) && !cJSON_Compare(v, v2, 1)) {
        return rg_error("%s: keys \"_block_types\" and \"block_types\" disagree", r->name);
    }
    if (!v || cJSON_IsNull(v)) return rg_error("%s: missing key \"block_types\" (or \"_block_types\")", r->name);
    if (!cJSON_IsArray(v)) return rg_error("%s: key \"%s\" must be a list of strings", r->name, key);
    int n = cJSON_GetArraySize(v);
    if (n < 1 || n > RG_MAX_PATTERN)
        return rg_error("%s: key \"%s\" must have 1..%d entries (has %d)", r->name, key, RG_MAX_PATTERN, n);
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, v) {
        if (!cJSON_IsString(e)) return rg_error("%s: key \"%s\"[%d] must be a string", r->name, key, i);
        if (!strcmp(e->valuestring, "recurrent"))
            cfg->pattern[i] = RG_LAYER_RECURRENT;
        else if (!strcmp(e->valuestring, "attention"))
            cfg->pattern[i] = RG_LAYER_ATTENTION;
        else
            return rg_error("%s: key \"%s\"[%d] = \"%s\" (expected \"recurrent\" or \"attention\")", r->name, key,
                            i, e->valuestring);
        i++;
    }
    cfg->pattern_len = n;
    return 0;
}

static int check_string(cfg_reader *r, const char *key, const char *const *allowed) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->root, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsString(v)) return rg_error("%s: key \"%s\" must be a string", r->name, key);
    for (int i = 0; allowed[i]; i++)
        if (!strcmp(v->valuestring, allowed[i])) return 0;
    return rg_error("%s: key \"%s\" = \"%s\" is not supported (expected \"%s\")", r->name, key, v->valuestring,
                    allowed[0]);
}

/* The embedding scale: sqrt(D) computed in float64, stored as float32,
 * rounded to bfloat16 (bf16(f32(sqrt(D))), as tests/reference/griffin_ref.py). */
static float embed_scale_for(int d) { return rg_bf16_to_f32(rg_f32_to_bf16((float)sqrt((double)d))); }

/* Checks shared by every source of a config (config.json, GGUF metadata):
 * sizes in range and the constraints between them. */
int rg_config_check(const rg_config *cfg, const char *name) {
    const struct {
        const char *what;
        int v, lo, hi;
    } sizes[] = {
        {"vocab_size", cfg->vocab_size, 1, 1 << 24},     {"hidden_size", cfg->hidden_size, 1, MAX_DIM},
        {"lru_width", cfg->lru_width, 1, MAX_DIM},       {"num_attention_heads", cfg->num_heads, 1, 4096},
        {"head_dim", cfg->head_dim, 1, MAX_DIM},         {"mlp width", cfg->mlp_width, 1, MAX_DIM},
        {"num_hidden_layers", cfg->num_layers, 1, 4096}, {"attention_window_size", cfg->window, 1, 1 << 24},
        {"conv1d_width", cfg->conv_width, 1, 64},        {"bos_token_id", cfg->bos_id, 0, 1 << 24},
        {"eos_token_id", cfg->eos_id, 0, 1 << 24},       {"pad_token_id", cfg->pad_id, 0, 1 << 24},
        {"block pattern length", cfg->pattern_len, 1, RG_MAX_PATTERN},
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        if (sizes[i].v < sizes[i].lo || sizes[i].v > sizes[i].hi)
            return rg_error("%s: %s = %d is out of range [%d, %d]", name, sizes[i].what, sizes[i].v, sizes[i].lo,
                            sizes[i].hi);
    if (!(cfg->logits_soft_cap >= 0 && cfg->logits_soft_cap <= 1e6f) ||
        !(cfg->rms_norm_eps >= 0 && cfg->rms_norm_eps <= 1) ||
        !(cfg->rope_theta >= 1e-3f && cfg->rope_theta <= 1e12f) ||
        !(cfg->partial_rotary_factor >= 0 && cfg->partial_rotary_factor <= 1) ||
        !(cfg->embed_scale > 0 && cfg->embed_scale < 1e6f))
        return rg_error("%s: logits_soft_cap, rms_norm_eps, rope_theta, partial_rotary_factor or the embedding "
                        "scale is out of range", name);
    if (cfg->num_kv_heads != 1)
        return rg_error("%s: num_key_value_heads = %d is not supported (RecurrentGemma uses 1)", name,
                        cfg->num_kv_heads);
    if (cfg->lru_width % cfg->num_heads)
        return rg_error("%s: lru_width = %d is not a multiple of num_attention_heads = %d", name, cfg->lru_width,
                        cfg->num_heads);
    int rot = (int)(cfg->head_dim * cfg->partial_rotary_factor);
    if (rot % 2) return rg_error("%s: head_dim x partial_rotary_factor = %d rotated dims must be even", name, rot);
    if ((int64_t)cfg->num_heads * cfg->head_dim > MAX_DIM)
        return rg_error("%s: num_attention_heads x head_dim is too large", name);
    return 0;
}

int rg_config_parse(const char *json, size_t len, const char *name, rg_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        long off = at && at >= json && at <= json + len ? (long)(at - json) : -1;
        return rg_error("%s: invalid JSON near byte %ld", name, off);
    }
    int rc = -1;
    cfg_reader r = {root, name};
    if (!cJSON_IsObject(root)) {
        rg_error("%s: expected a JSON object", name);
        goto done;
    }
    static const char *const model_types[] = {"recurrent_gemma", NULL};
    static const char *const activations[] = {"gelu_pytorch_tanh", "gelu_tanh", "gelu_new", NULL};
    if (check_string(&r, "model_type", model_types) || check_string(&r, "hidden_activation", activations)) goto done;

    int intermediate = 0, lru = 0;
    if (get_int(&r, "vocab_size", -1, 1, 1 << 24, &cfg->vocab_size) ||
        get_int(&r, "hidden_size", -1, 1, MAX_DIM, &cfg->hidden_size) ||
        get_int(&r, "num_attention_heads", -1, 1, 4096, &cfg->num_heads) ||
        get_int(&r, "intermediate_size", -1, 2, MAX_DIM, &intermediate) ||
        get_int(&r, "num_hidden_layers", -1, 1, 4096, &cfg->num_layers) ||
        get_int(&r, "attention_window_size", -1, 1, 1 << 24, &cfg->window) ||
        get_int(&r, "conv1d_width", 4, 1, 64, &cfg->conv_width) ||
        get_int(&r, "num_key_value_heads", 1, 1, 4096, &cfg->num_kv_heads) ||
        get_int(&r, "bos_token_id", 2, 0, 1 << 24, &cfg->bos_id) ||
        get_int(&r, "eos_token_id", 1, 0, 1 << 24, &cfg->eos_id) ||
        get_int(&r, "pad_token_id", 0, 0, 1 << 24, &cfg->pad_id))
        goto done;
    if (get_int(&r, "lru_width", cfg->hidden_size, 1, MAX_DIM, &lru)) goto done;
    cfg->lru_width = lru;
    if (get_int(&r, "head_dim", cfg->hidden_size / cfg->num_heads, 1, MAX_DIM, &cfg->head_dim)) goto done;
    if (get_float(&r, "logits_soft_cap", NAN, 0, 1e6, &cfg->logits_soft_cap) ||
        get_float(&r, "rms_norm_eps", 1e-6, 0, 1, &cfg->rms_norm_eps) ||
        get_float(&r, "rope_theta", 10000.0, 1e-3, 1e12, &cfg->rope_theta) ||
        get_float(&r, "partial_rotary_factor", 0.5, 0, 1, &cfg->partial_rotary_factor))
        goto done;
    if (parse_pattern(&r, cfg)) goto done;

    if (intermediate % 2) {
        rg_error("%s: key \"intermediate_size\" = %d must be even (it is twice the MLP branch width)", name,
                 intermediate);
        goto done;
    }
    cfg->mlp_width = intermediate / 2;
    const cJSON *scale = cJSON_GetObjectItemCaseSensitive(root, "embeddings_scale_by_sqrt_dim");
    if (scale && !cJSON_IsNull(scale) && !cJSON_IsBool(scale)) {
        rg_error("%s: key \"embeddings_scale_by_sqrt_dim\" must be true or false", name);
        goto done;
    }
    cfg->embed_scale = (scale && cJSON_IsFalse(scale)) ? 1.0f : embed_scale_for(cfg->hidden_size);
    if (rg_config_check(cfg, name)) goto done;
    rc = 0;
done:
    cJSON_Delete(root);
    return rc;
}

int rg_config_load(const char *path, rg_config *cfg) {
    char *text;
    size_t len;
    if (rg_read_file(path, 1 << 20, &text, &len)) return -1;
    int rc = rg_config_parse(text, len, path, cfg);
    free(text);
    return rc;
}

rg_layer_type rg_config_layer_type(const rg_config *cfg, int layer) {
    return cfg->pattern[layer % cfg->pattern_len];
}

uint64_t rg_config_fingerprint(const rg_config *cfg) {
    int64_t f[16] = {cfg->vocab_size, cfg->hidden_size, cfg->lru_width, cfg->num_heads,  cfg->head_dim,
                     cfg->mlp_width,  cfg->num_layers,  cfg->window,    cfg->conv_width, cfg->pattern_len};
    uint64_t h = rg_fnv1a(f, sizeof f, 0);
    for (int i = 0; i < cfg->pattern_len; i++) h = rg_fnv1a(&cfg->pattern[i], sizeof(int), h);
    return h;
}
