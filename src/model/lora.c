/* LoRA adapters applied at load time (rg_model_apply_lora): W + s B A with
 * s = lora_alpha / r, merged in memory in W's own type. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "model/model.h"
#include "ops/ops.h"
#include "util/util.h"

void rg_lora_merge_range(const float *A, const float *B, int64_t in, int r, float s, int64_t first, int64_t count,
                         const float *base, float *out) {
    for (int64_t j = 0; j < count; j++) {
        int64_t e = first + j, o = e / in, i = e % in;
        float acc = 0;
        for (int k = 0; k < r; k++) acc += B[o * r + k] * A[(int64_t)k * in + i];
        out[j] = base[j] + s * acc;
    }
}

/* The layer matrix of a Hugging Face name ("model.layers.3.mlp_block.up_proj.weight"), or NULL. */
static rg_tensor *layer_matrix(rg_model *m, const char *name) {
    static const struct {
        const char *suffix;
        size_t field;
        int type; /* the layer type it belongs to, -1: both */
    } map[] = {
        {"mlp_block.gate_proj.weight", offsetof(rg_layer, gate), -1},
        {"mlp_block.up_proj.weight", offsetof(rg_layer, up), -1},
        {"mlp_block.down_proj.weight", offsetof(rg_layer, down), -1},
        {"temporal_block.linear_x.weight", offsetof(rg_layer, linear_x), RG_LAYER_RECURRENT},
        {"temporal_block.linear_y.weight", offsetof(rg_layer, linear_y), RG_LAYER_RECURRENT},
        {"temporal_block.linear_out.weight", offsetof(rg_layer, linear_out), RG_LAYER_RECURRENT},
        {"temporal_block.q_proj.weight", offsetof(rg_layer, q), RG_LAYER_ATTENTION},
        {"temporal_block.k_proj.weight", offsetof(rg_layer, k), RG_LAYER_ATTENTION},
        {"temporal_block.v_proj.weight", offsetof(rg_layer, v), RG_LAYER_ATTENTION},
        {"temporal_block.o_proj.weight", offsetof(rg_layer, o), RG_LAYER_ATTENTION},
    };
    int layer, used = 0;
    if (sscanf(name, "model.layers.%d.%n", &layer, &used) != 1 || !used || layer < 0 || layer >= m->cfg.num_layers)
        return NULL;
    rg_layer *L = &m->layers[layer];
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(name + used, map[i].suffix) && (map[i].type < 0 || map[i].type == (int)L->type))
            return (rg_tensor *)((char *)L + map[i].field);
    return NULL;
}

/* rank and scale from adapter_config.json beside the adapter file:
 * s = lora_alpha / r, or lora_alpha / sqrt(r) with PEFT's use_rslora */
static int read_adapter_config(const char *path, int *rank, double *scale) {
    char *text;
    size_t len;
    if (!rg_file_exists(path))
        return rg_error("%s: missing (a LoRA adapter's rank and alpha: is this what rgemma train --lora wrote?)", path);
    if (rg_read_file(path, 1 << 20, &text, &len)) return -1;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(root, "r");
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, "lora_alpha");
    int ok = cJSON_IsNumber(r) && r->valuedouble >= 1 && r->valuedouble <= 4096 && r->valuedouble == (int)r->valuedouble &&
             cJSON_IsNumber(a) && a->valuedouble > 0;
    if (ok) {
        *rank = (int)r->valuedouble;
        *scale = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "use_rslora")) ? a->valuedouble / sqrt(*rank)
                                                                                     : a->valuedouble / *rank;
    }
    cJSON_Delete(root);
    return ok ? 0 : rg_error("%s: needs \"r\" (an integer 1..4096) and \"lora_alpha\" (> 0)", path);
}

/* One adapted matrix: W, and its A and B in the adapter file. */
typedef struct {
    rg_tensor *W;
    const rg_tensor *A, *B;
} adapted;

static float *to_f32(const rg_tensor *t) {
    float *out = rg_xmalloc(sizeof(float) * (size_t)(t->shape[0] * t->shape[1]));
    for (int64_t row = 0; row < t->shape[0]; row++) rg_dequant_row(t, row, out + row * t->shape[1]);
    return out;
}

/* W := W + s B A, row by row in W's type (a new buffer: the mapped file stays as it is). */
static int merge_into(rg_model *m, const adapted *a, int r, float s) {
    rg_tensor *W = a->W;
    int64_t out = W->shape[0], in = W->shape[1];
    size_t rb = rg_tensor_row_bytes(W);
    uint8_t *dst = rg_model_own(m, rb * (size_t)out);
    float *A = to_f32(a->A), *B = to_f32(a->B);
    int bad = 0;
#pragma omp parallel
    {
        float *row = rg_xmalloc(sizeof(float) * (size_t)in), *merged = rg_xmalloc(sizeof(float) * (size_t)in);
#pragma omp for schedule(static) reduction(| : bad)
        for (int64_t o = 0; o < out; o++) {
            rg_dequant_row(W, o, row);
            rg_lora_merge_range(A, B, in, r, s, o * in, in, row, merged);
            bad |= rg_quantize_row(W->dtype, merged, in, dst + (size_t)o * rb) != 0;
        }
        free(row);
        free(merged);
    }
    free(A);
    free(B);
    /* W viewed the mapped file: its pages go back, the merged copy takes
     * their place in memory instead of adding to it (not so for a buffer
     * of an adapter applied before: a page's rest may be another's) */
    int mapped = 1;
    for (int i = 0; i < m->n_owned; i++) mapped &= m->owned[i] != W->data;
    if (mapped) rg_drop_file_pages(W->data, W->nbytes);
    W->data = dst;
    W->packed = W->packed_for = NULL;
    if (rg_packed_bytes(W)) rg_pack_weights(W, rg_model_own(m, rg_packed_bytes(W)));
    return bad ? -1 : 0;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

int rg_model_apply_lora(rg_model *m, const char *path) {
    char *file = rg_is_dir(path) ? rg_path_join(path, "adapter_model.safetensors") : strdup(path);
    const char *slash = strrchr(file, '/');
    char *dir = slash ? strndup(file, (size_t)(slash - file)) : strdup(".");
    char *cfg = rg_path_join(dir, "adapter_config.json");
    rg_safetensors st = {0};
    adapted *list = NULL;
    int n = 0, rank = 0, rc = -1;
    double scale = 0;
    if (read_adapter_config(cfg, &rank, &scale) || rg_st_add_file(&st, file)) goto done;
    list = rg_xcalloc((size_t)st.n_entries + 1, sizeof *list);
    for (int i = 0; i < st.n_entries; i++) {
        const char *name = st.entries[i].name, *core = name;
        const rg_tensor *t = &st.entries[i].t;
        if (!strncmp(core, "base_model.model.", 17)) core += 17;
        if (ends_with(core, ".lora_B.weight")) continue; /* found through its A */
        if (!ends_with(core, ".lora_A.weight")) {
            rg_error("%s: tensor \"%s\" is not a LoRA matrix (NAME.lora_A.weight or NAME.lora_B.weight)", file, name);
            goto done;
        }
        size_t k = strlen(core) - strlen(".lora_A.weight");
        char target[256], bname[300];
        snprintf(target, sizeof target, "%.*s.weight", (int)k, core);
        snprintf(bname, sizeof bname, "%.*s.lora_B.weight", (int)(strlen(name) - strlen(".lora_A.weight")), name);
        const rg_st_entry *b = rg_st_find(&st, bname);
        adapted a = {layer_matrix(m, target), t, b ? &b->t : NULL};
        if (!a.W) {
            rg_error("%s: tensor \"%s\": the model has no matrix \"%s\" (an adapter of another model?)", file, name,
                     target);
            goto done;
        }
        if (!a.B) {
            rg_error("%s: tensor \"%s\" has no \"%s\"", file, name, bname);
            goto done;
        }
        int64_t out = a.W->shape[0], in = a.W->shape[1];
        if (a.A->ndim != 2 || a.A->shape[0] != rank || a.A->shape[1] != in || a.B->ndim != 2 ||
            a.B->shape[0] != out || a.B->shape[1] != rank) {
            rg_error("%s: tensor \"%s\": A [%lld, %lld] and B [%lld, %lld] do not fit the model's \"%s\" [%lld, %lld] "
                     "at rank %d (an adapter of another model?)",
                     file, name, (long long)a.A->shape[0], (long long)(a.A->ndim > 1 ? a.A->shape[1] : 0),
                     (long long)a.B->shape[0], (long long)(a.B->ndim > 1 ? a.B->shape[1] : 0), target, (long long)out,
                     (long long)in, rank);
            goto done;
        }
        if (rg_dtype_is_quantised(a.W->dtype)) {
            rg_error("%s: tensor \"%s\": the model's \"%s\" is %s: LoRA applies to float weights only (merge the "
                     "adapter into the float checkpoint with rgemma train --lora-merge, then quantise that)",
                     file, name, target, rg_dtype_name(a.W->dtype));
            goto done;
        }
        list[n++] = a;
    }
    for (int i = 0; i < st.n_entries; i++) { /* every B has its A */
        const char *name = st.entries[i].name;
        if (!ends_with(name, ".lora_B.weight")) continue;
        char aname[300];
        snprintf(aname, sizeof aname, "%.*s.lora_A.weight", (int)(strlen(name) - strlen(".lora_B.weight")), name);
        if (!rg_st_find(&st, aname)) {
            rg_error("%s: tensor \"%s\" has no \"%s\"", file, name, aname);
            goto done;
        }
    }
    if (!n) {
        rg_error("%s: no LoRA matrices", file);
        goto done;
    }
    rc = 0;
    for (int i = 0; i < n && !rc; i++) rc = merge_into(m, &list[i], rank, (float)scale);
    if (rc) rg_error_prefix("%s: merging", file);
    /* the merged weights are another model's: its fingerprint (the state
     * store's keys) must change with every adapter's values and scale */
    uint64_t h = rg_fnv1a(&scale, sizeof scale, m->adapters ? m->adapters : 0xcbf29ce484222325ull);
    for (int i = 0; i < n && !rc; i++) h = rg_fnv1a(list[i].B->data, list[i].B->nbytes, rg_fnv1a(list[i].A->data, list[i].A->nbytes, h));
    if (!rc) m->adapters = h;
done:
    rg_st_close(&st);
    free(list);
    free(file);
    free(dir);
    free(cfg);
    return rc;
}
