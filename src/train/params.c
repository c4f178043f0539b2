/* The parameter layout of a config: every tensor of model.safetensors under
 * its Hugging Face name and shape, one after another in a flat buffer, and
 * the public rg_grad_* calls over it (the math is in backward.inc). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "model/model.h"
#include "train/train.h"
#include "util/util.h"

/* Append tensor `name` of the given shape; returns its offset. */
static size_t add(rg_grad *g, int64_t d0, int64_t d1, int64_t d2, const char *fmt, int layer, const char *what) {
    char name[160];
    if (layer < 0) snprintf(name, sizeof name, "%s", fmt);
    else snprintf(name, sizeof name, fmt, layer, what);
    rg_grad_tensor *t = &g->tensors[g->n_tensors++];
    int64_t d[3] = {d0, d1, d2};
    t->name = strdup(name);
    t->ndim = d2 ? 3 : d1 ? 2 : 1;
    t->count = 1;
    for (int i = 0; i < 3; i++) {
        t->shape[i] = i < t->ndim ? d[i] : 0;
        if (i < t->ndim) t->count *= (size_t)d[i];
    }
    t->offset = g->total;
    g->total += t->count;
    return t->offset;
}

rg_grad *rg_grad_new(const rg_config *cfg) {
    if (!cfg) {
        rg_error("rg_grad_new: no config");
        return NULL;
    }
    if (rg_config_check(cfg, "rg_grad_new")) return NULL;
    rg_grad *g = rg_xcalloc(1, sizeof *g);
    g->cfg = *cfg;
    g->pool = rg_pool_new();
    const rg_config *c = &g->cfg;
    int64_t V = c->vocab_size, D = c->hidden_size, R = c->lru_width, F = c->mlp_width, H = c->num_heads;
    int64_t hd = c->head_dim, K = c->conv_width, bw = R / H;
    g->tensors = rg_xcalloc(2 + (size_t)c->num_layers * 21, sizeof *g->tensors);
    g->layers = rg_xcalloc((size_t)c->num_layers, sizeof *g->layers);
    g->embed = add(g, V, D, 0, "model.embed_tokens.weight", -1, NULL);
    g->final_norm = add(g, D, 0, 0, "model.final_norm.weight", -1, NULL);
    const char *L = "model.layers.%d.%s", *T = "model.layers.%d.temporal_block.%s";
    for (int i = 0; i < c->num_layers; i++) {
        rg_layer_offsets *o = &g->layers[i];
        o->type = rg_config_layer_type(c, i);
        o->temporal_norm = add(g, D, 0, 0, L, i, "temporal_pre_norm.weight");
        o->channel_norm = add(g, D, 0, 0, L, i, "channel_pre_norm.weight");
        o->gate_w = add(g, F, D, 0, L, i, "mlp_block.gate_proj.weight");
        o->gate_b = add(g, F, 0, 0, L, i, "mlp_block.gate_proj.bias");
        o->up_w = add(g, F, D, 0, L, i, "mlp_block.up_proj.weight");
        o->up_b = add(g, F, 0, 0, L, i, "mlp_block.up_proj.bias");
        o->down_w = add(g, D, F, 0, L, i, "mlp_block.down_proj.weight");
        o->down_b = add(g, D, 0, 0, L, i, "mlp_block.down_proj.bias");
        if (o->type == RG_LAYER_RECURRENT) {
            o->x_w = add(g, R, D, 0, T, i, "linear_x.weight");
            o->x_b = add(g, R, 0, 0, T, i, "linear_x.bias");
            o->y_w = add(g, R, D, 0, T, i, "linear_y.weight");
            o->y_b = add(g, R, 0, 0, T, i, "linear_y.bias");
            o->out_w = add(g, D, R, 0, T, i, "linear_out.weight");
            o->out_b = add(g, D, 0, 0, T, i, "linear_out.bias");
            o->conv_w = add(g, R, 1, K, T, i, "conv_1d.weight");
            o->conv_b = add(g, R, 0, 0, T, i, "conv_1d.bias");
            o->a_param = add(g, R, 0, 0, T, i, "rg_lru.recurrent_param");
            o->in_gate_w = add(g, H, bw, bw, T, i, "rg_lru.input_gate_weight");
            o->in_gate_b = add(g, H, bw, 0, T, i, "rg_lru.input_gate_bias");
            o->a_gate_w = add(g, H, bw, bw, T, i, "rg_lru.recurrent_gate_weight");
            o->a_gate_b = add(g, H, bw, 0, T, i, "rg_lru.recurrent_gate_bias");
        } else {
            o->q_w = add(g, H * hd, D, 0, T, i, "q_proj.weight");
            o->k_w = add(g, hd, D, 0, T, i, "k_proj.weight");
            o->v_w = add(g, hd, D, 0, T, i, "v_proj.weight");
            o->o_w = add(g, D, H * hd, 0, T, i, "o_proj.weight");
            o->o_b = add(g, D, 0, 0, T, i, "o_proj.bias");
        }
    }
    return g;
}

void rg_grad_free(rg_grad *g) {
    if (!g) return;
    for (int i = 0; i < g->n_tensors; i++) free((char *)g->tensors[i].name);
    free(g->tensors);
    free(g->layers);
    rg_pool_free(g->pool);
    free(g);
}

size_t rg_grad_size(const rg_grad *g) { return g->total; }
int rg_grad_n_tensors(const rg_grad *g) { return g->n_tensors; }

const rg_grad_tensor *rg_grad_tensor_at(const rg_grad *g, int i) {
    return i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}

int rg_grad_find(const rg_grad *g, const char *name) {
    for (int i = 0; i < g->n_tensors; i++)
        if (!strcmp(g->tensors[i].name, name)) return i;
    return -1;
}

int rg_grad_params_from_model(const rg_grad *g, const rg_model *m, float *params) {
    return rg_train_params_from_model(g, m, params, NULL);
}

int rg_train_params_from_model(const rg_grad *g, const rg_model *m, float *params, const uint8_t *skip) {
    if (rg_config_fingerprint(&m->cfg) != rg_config_fingerprint(&g->cfg))
        return rg_error("rg_grad_params_from_model: the model has another configuration than the layout");
    for (int i = 0; i < g->n_tensors; i++) {
        const rg_grad_tensor *t = &g->tensors[i];
        const rg_tensor *w = rg_model_tensor(m, t->name);
        if (!w) return rg_error("rg_grad_params_from_model: the model has no tensor \"%s\"", t->name);
        size_t count = 1;
        for (int d = 0; d < w->ndim; d++) count *= (size_t)w->shape[d];
        int64_t cols = w->shape[w->ndim - 1];
        if (count != t->count || cols <= 0)
            return rg_error("rg_grad_params_from_model: tensor \"%s\" has %zu elements, expected %zu", t->name,
                            count, t->count);
        if (skip && skip[i]) continue;
        /* the last dimension is the stored row (quantised blocks run along it) */
        for (size_t r = 0; r < count / (size_t)cols; r++) rg_dequant_row(w, (int64_t)r, params + t->offset + r * cols);
        /* the file's pages go back as each tensor is read: the float32 copy
         * takes their place (a 2B model's mapped bf16 would add 5 GB) */
        rg_drop_file_pages(w->data, w->nbytes);
    }
    return 0;
}

int rg_grad_compute(const rg_grad *g, const float *params, const int32_t *tokens, int n, const uint8_t *mask,
                    double grad_scale, float *grad, double *nll_sum, int64_t *n_targets) {
    return rg_train_grad_f32(g, params, NULL, tokens, n, mask, grad_scale, grad, nll_sum, n_targets);
}
