#include <stdlib.h>
#include "model/model.h"
#include "model/state.h"
#include "util/util.h"

static size_t layer_floats(const rg_config *c, int layer, rg_dtype kv_type) {
    if (rg_config_layer_type(c, layer) == RG_LAYER_RECURRENT) return (size_t)c->conv_width * c->lru_width;
    return rg_kv_window_floats(c->window, c->head_dim, kv_type);
}

size_t rg_state_floats(const rg_config *c, rg_dtype kv_type) {
    size_t n = 0;
    for (int i = 0; i < c->num_layers; i++) n += layer_floats(c, i, kv_type);
    return n;
}

size_t rg_state_bytes(const rg_config *c) { return rg_state_floats(c, RG_DT_F32) * sizeof(float); }

size_t rg_model_state_bytes(const rg_model *m) { return rg_state_floats(&m->cfg, m->kv_type) * sizeof(float); }

int rg_model_set_kv_type(rg_model *m, const char *type) {
    if (type && !strcmp(type, "f32")) m->kv_type = RG_DT_F32;
    else if (type && !strcmp(type, "f16")) m->kv_type = RG_DT_F16;
    else if (type && !strcmp(type, "q8_0")) {
        if (m->cfg.head_dim % RG_QBLOCK)
            return rg_error("attention window type q8_0 needs a head dimension that is a multiple of %d (this "
                            "model's is %d)",
                            RG_QBLOCK, m->cfg.head_dim);
        m->kv_type = RG_DT_Q8_0;
    } else
        return rg_error("attention window type \"%s\" is not supported (expected f32, f16 or q8_0)", type ? type : "");
    return 0;
}

const char *rg_model_kv_type(const rg_model *m) { return rg_kv_type_name(m->kv_type); }

rg_state *rg_state_new(const rg_model *m) {
    rg_state *s = rg_xcalloc(1, sizeof *s);
    s->cfg = m->cfg;
    s->kv_type = m->kv_type;
    s->offset = rg_xcalloc((size_t)m->cfg.num_layers, sizeof *s->offset);
    for (int i = 0; i < m->cfg.num_layers; i++) {
        s->offset[i] = s->floats;
        s->floats += layer_floats(&m->cfg, i, s->kv_type);
    }
    s->data = rg_aligned_alloc(s->floats * sizeof(float));
    return s;
}

void rg_state_free(rg_state *s) {
    if (!s) return;
    free(s->data);
    free(s->offset);
    free(s);
}

void rg_state_reset(rg_state *s) {
    memset(s->data, 0, s->floats * sizeof(float));
    s->pos = 0;
}

int rg_state_copy(rg_state *dst, const rg_state *src) {
    if (dst->kv_type != src->kv_type)
        return rg_error("state copy: the source's attention window is %s, the destination's %s",
                        rg_kv_type_name(src->kv_type), rg_kv_type_name(dst->kv_type));
    if (dst->floats != src->floats || rg_config_fingerprint(&dst->cfg) != rg_config_fingerprint(&src->cfg))
        return rg_error("state copy: the two states belong to different model configurations");
    const rg_config *c = &src->cfg;
    for (int i = 0; i < c->num_layers; i++) {
        size_t off = src->offset[i];
        if (rg_config_layer_type(c, i) == RG_LAYER_RECURRENT) {
            memcpy(dst->data + off, src->data + off, layer_floats(c, i, src->kv_type) * sizeof(float));
        } else {
            rg_kv_window to = rg_state_window(dst, i), from = rg_state_window(src, i);
            rg_kv_window_copy(&to, &from, src->pos);
        }
    }
    dst->pos = src->pos;
    return 0;
}

int64_t rg_state_pos(const rg_state *s) { return s->pos; }
