/* Per-sequence state layout (internal). One block of 4-byte words:
 *   recurrent layer: conv [K-1 x R] (last K-1 conv inputs), h [R] (RG-LRU),
 *     float32
 *   attention layer: its attention window (ops/kv_window.h), of kv_type
 * Its size depends on the config and kv_type only. */
#ifndef RG_STATE_H
#define RG_STATE_H

#include "ops/kv_window.h"
#include "rgemma.h"

struct rg_state {
    rg_config cfg;
    int64_t pos;    /* next position = tokens processed so far */
    rg_dtype kv_type; /* the windows' element type: RG_DT_F32, RG_DT_F16 or RG_DT_Q8_0 */
    float *data;    /* all layers' state */
    size_t floats;  /* length of data in 4-byte words */
    size_t *offset; /* per layer: start of its state in data */
};

static inline float *rg_state_conv(rg_state *s, int layer) { return s->data + s->offset[layer]; }
static inline float *rg_state_h(rg_state *s, int layer) {
    return s->data + s->offset[layer] + (size_t)(s->cfg.conv_width - 1) * s->cfg.lru_width;
}
static inline rg_kv_window rg_state_window(const rg_state *s, int layer) {
    return rg_kv_window_at(s->data + s->offset[layer], s->cfg.window, s->cfg.head_dim, s->kv_type);
}
/* 4-byte words of a state of config c with windows of kv_type. */
size_t rg_state_floats(const rg_config *c, rg_dtype kv_type);

/* State blobs: a state in memory as the state file's header (version 2, 4)
 * and only the attention rows in use (state_io.c); the server's shared state
 * store keeps these. Writing and checking are split so that the checksum (a
 * pass over up to the whole state) runs where the bytes travel, not on the
 * thread that advances the slots:
 *   blob_bytes: the size write fills; write: everything but the checksum;
 *   seal: the checksum;
 *   check: every check of a state file (magic, version, size, checksum, the
 *     model configuration, the window type kv_type), for bytes from outside;
 *   read: the same checks but the checksum (check passed on these bytes),
 *     then s takes the state; s changes only when they pass.
 * what names the blob in errors. */
size_t rg_state_blob_bytes(const rg_state *s);
void rg_state_blob_write(const rg_state *s, uint8_t *out);
void rg_state_blob_seal(uint8_t *blob, size_t n);
int rg_state_blob_check(const rg_config *c, rg_dtype kv_type, const uint8_t *p, size_t n, const char *what);
int rg_state_blob_read(rg_state *s, const uint8_t *p, size_t n, const char *what);

#endif
