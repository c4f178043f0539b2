#include <string.h>
#include "ops/kv_window.h"
#include "util/util.h"

static void store_row(rg_dtype type, void *dst, const float *src, int hd) {
    if (type == RG_DT_F32) {
        memcpy(dst, src, sizeof(float) * (size_t)hd);
        return;
    }
    uint16_t *half = dst;
    for (int i = 0; i < hd; i++) half[i] = rg_f32_to_f16(src[i]);
}

void rg_kv_window_round(const rg_kv_window *kv, float *k, float *v, int n) {
    if (kv->type == RG_DT_F32) return;
    for (size_t i = 0; i < (size_t)n * kv->hd; i++) {
        k[i] = rg_f16_to_f32(rg_f32_to_f16(k[i]));
        v[i] = rg_f16_to_f32(rg_f32_to_f16(v[i]));
    }
}

void rg_kv_window_write(const rg_kv_window *kv, int64_t pos0, const float *k, const float *v, int n) {
    size_t row = rg_kv_row_bytes(kv->type, kv->hd);
    for (int t = n > kv->window ? n - kv->window : 0; t < n; t++) {
        size_t slot = (size_t)((pos0 + t) % kv->window);
        store_row(kv->type, (char *)kv->k + slot * row, k + (size_t)t * kv->hd, kv->hd);
        store_row(kv->type, (char *)kv->v + slot * row, v + (size_t)t * kv->hd, kv->hd);
    }
}

rg_kv_span rg_kv_window_span(const rg_kv_window *kv, int64_t s, int64_t end) {
    int64_t slot = s % kv->window;
    int64_t len = end - s < kv->window - slot ? end - s : kv->window - slot;
    size_t row = rg_kv_row_bytes(kv->type, kv->hd);
    return (rg_kv_span){(const char *)kv->k + (size_t)slot * row, (const char *)kv->v + (size_t)slot * row, kv->type,
                        row, (int)len};
}

/* While pos < W only slots [0, pos) have ever been written, and no other slot
 * is read before it is written again, so only those are copied (a short
 * context's snapshot costs little). */
void rg_kv_window_copy(const rg_kv_window *dst, const rg_kv_window *src, int64_t pos) {
    size_t used = pos < src->window ? (size_t)pos : (size_t)src->window;
    size_t bytes = used * rg_kv_row_bytes(src->type, src->hd);
    memcpy(dst->k, src->k, bytes);
    memcpy(dst->v, src->v, bytes);
}
